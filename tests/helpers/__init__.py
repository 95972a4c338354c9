"""Test helpers. ``SMALL_DEFAULT`` lives here (not in ``small_engine``) because importing
``small_engine`` lowers ``MeshConfig``'s default for the whole process: only a test server's
worker may import it."""

#: the lowered default ``MeshConfig.max_triangles`` of ``tests/helpers/small_engine.py``
SMALL_DEFAULT = 100
