"""Mesh export: arrays match the evaluated Blender mesh (foreach_get), selection mask, unwrap."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.addon.blender_helpers import activate, add_monkey


def _evaluated_reference(bpy, obj):
    """Independent read of the evaluated mesh: loop_triangles, vertex co and corner UVs."""
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    try:
        me.calc_loop_triangles()
        co = np.zeros(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        tris = np.zeros(len(me.loop_triangles) * 3, np.int64)
        me.loop_triangles.foreach_get("vertices", tris)
        loops = np.zeros(len(me.loop_triangles) * 3, np.int64)
        me.loop_triangles.foreach_get("loops", loops)
        uv = np.zeros(len(me.loops) * 2, np.float32)
        me.uv_layers.active.uv.foreach_get("vector", uv)
        return co.reshape(-1, 3), tris.reshape(-1, 3), uv.reshape(-1, 2)[loops].reshape(-1, 3, 2), len(me.polygons)
    finally:
        ev.to_mesh_clear()


def test_subdivided_monkey_matches_foreach_get(scene):
    bpy = scene
    from blender_addon import mesh_export

    obj = add_monkey(bpy, subdiv=1)
    base_loops = len(obj.data.loops)
    arrays = mesh_export.export_arrays(obj, bpy.context.evaluated_depsgraph_get())
    co, tris, uvs, n_polys = _evaluated_reference(bpy, obj)

    assert n_polys == base_loops  # the modifier really was applied (one level: a quad per corner)
    assert arrays["positions"].shape == co.shape and arrays["positions"].dtype == np.float32
    assert arrays["faces"].shape == tris.shape and arrays["faces"].dtype == np.int32
    assert arrays["uvs"].shape == (len(tris), 3, 2) and arrays["uvs"].dtype == np.float32
    np.testing.assert_array_equal(arrays["faces"], tris)
    np.testing.assert_array_equal(arrays["uvs"], uvs)
    np.testing.assert_allclose(arrays["positions"], co, atol=1e-6)  # identity transform
    assert "face_mask" not in arrays
    # per-corner UVs: each triangle's corners carry the UV of its own loop, not a per-vertex average
    assert 0.0 <= arrays["uvs"].min() and arrays["uvs"].max() <= 1.0


def test_transform_rotation_and_scale_applied_not_location(scene):
    bpy = scene
    from blender_addon import mesh_export

    obj = add_monkey(bpy, subdiv=0, location=(5.0, 0.0, 0.0))
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    arrays = mesh_export.export_arrays(obj, bpy.context.evaluated_depsgraph_get())
    co = np.zeros(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(arrays["positions"], 2.0 * co.reshape(-1, 3), atol=1e-5)


def test_selected_faces_mask_and_npz_roundtrip(scene):
    bpy = scene
    from blender_addon import mesh_export

    obj = add_monkey(bpy, subdiv=0)
    sel = np.zeros(len(obj.data.polygons), bool)
    sel[:10] = True
    obj.data.polygons.foreach_set("select", sel)
    obj.data.update()
    arrays = mesh_export.export_arrays(obj, bpy.context.evaluated_depsgraph_get(),
                                       mesh_export.ExportOptions(selected_only=True))
    me = obj.data
    me.calc_loop_triangles()
    poly = np.zeros(len(me.loop_triangles), np.int64)
    me.loop_triangles.foreach_get("polygon_index", poly)
    np.testing.assert_array_equal(arrays["face_mask"], sel[poly])
    assert 10 <= arrays["face_mask"].sum() < len(poly)

    data = mesh_export.to_npz_bytes(arrays)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert sorted(z.files) == ["face_mask", "faces", "positions", "up_axis", "uvs"]
        assert str(z["up_axis"]) == "Z"
        np.testing.assert_array_equal(z["uvs"], arrays["uvs"])

    obj.data.polygons.foreach_set("select", np.zeros(len(obj.data.polygons), bool))
    obj.data.update()
    with pytest.raises(mesh_export.MeshExportError, match="no faces of 'Monkey' are selected"):
        mesh_export.export_arrays(obj, bpy.context.evaluated_depsgraph_get(), mesh_export.ExportOptions(selected_only=True))


def test_mesh_without_uvs_gets_smart_uv_project(scene):
    bpy = scene
    from blender_addon import mesh_export

    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    cube.data.uv_layers.remove(cube.data.uv_layers[0])
    cube.data.update()
    dg = bpy.context.evaluated_depsgraph_get()
    assert not mesh_export.has_uv_map(cube, dg)
    assert "uvs" not in mesh_export.export_arrays(cube, dg)
    mesh_export.smart_uv_project(cube)
    assert cube.mode == "OBJECT" and mesh_export.has_uv_map(cube, bpy.context.evaluated_depsgraph_get())
    arrays = mesh_export.export_arrays(cube, bpy.context.evaluated_depsgraph_get())
    uvs = arrays["uvs"]
    assert uvs.shape == (12, 3, 2) and uvs.min() >= 0.0 and uvs.max() <= 1.0
    # a real unwrap: triangles get non-degenerate UV area
    e1, e2 = uvs[:, 1] - uvs[:, 0], uvs[:, 2] - uvs[:, 0]
    assert (np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) > 1e-4).all()


def test_non_mesh_is_refused(scene):
    bpy = scene
    from blender_addon import mesh_export

    bpy.ops.object.empty_add()
    activate(bpy, bpy.context.active_object)
    with pytest.raises(mesh_export.MeshExportError, match="select a mesh object"):
        mesh_export.export_arrays(bpy.context.active_object, bpy.context.evaluated_depsgraph_get())
