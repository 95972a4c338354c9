"""The real engine with a smaller *default* mesh limit, for the worker of a test server.

Importing this module (the worker does, to resolve the runner; never import it in the test
process) lowers ``MeshConfig``'s
default ``max_triangles`` to ``SMALL_DEFAULT`` in that process. A server whose limit is
above it still textures a mesh above it only if the worker loads meshes with the server's
``MeshConfig`` (``Limits.mesh_config``) rather than the engine's default: the fast stand-in
for "``serve --max-triangles 3000000`` textures a 2.1M-triangle mesh" (issue 11).
"""

from __future__ import annotations

import dataclasses

from engine.mesh import MeshConfig
from engine.runner import run_texture_job  # noqa: F401  (the runner the worker calls)
from tests.helpers import SMALL_DEFAULT

_defaults = dict(zip((f.name for f in dataclasses.fields(MeshConfig)), MeshConfig.__init__.__defaults__))
_defaults["max_triangles"] = SMALL_DEFAULT
MeshConfig.__init__.__defaults__ = tuple(_defaults.values())
assert MeshConfig().max_triangles == SMALL_DEFAULT
