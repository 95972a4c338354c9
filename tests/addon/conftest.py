"""Fixtures for the add-on tests: real bpy (the PyPI module), the add-on package, a clean scene.

BLENDER_USER_RESOURCES points at a temp folder before bpy is imported, so installing
the extension zip never touches the user's Blender configuration.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_RES = tempfile.mkdtemp(prefix="texbridge-blender-res-")
os.environ["BLENDER_USER_RESOURCES"] = _RES  # must precede `import bpy`

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def bpy_mod():
    import bpy

    yield bpy
    shutil.rmtree(_RES, ignore_errors=True)


def clean_scene(bpy) -> None:
    """Remove every object, mesh, material and image; leave one scene and view layer."""
    for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images):
        for idb in list(coll):
            coll.remove(idb)


@pytest.fixture
def scene(bpy_mod):
    clean_scene(bpy_mod)
    yield bpy_mod
    clean_scene(bpy_mod)


@pytest.fixture
def addon(bpy_mod):
    """The add-on package registered directly (as a script would), unregistered afterwards."""
    import blender_addon

    blender_addon.register()
    try:
        yield blender_addon
    finally:
        blender_addon.unregister()
