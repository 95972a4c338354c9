"""Mesh loading: exact per-corner UVs, triangulation, formats, normalization, unwrap, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.assets import SAMPLE_MESH
from engine.errors import MeshError
from engine.mesh import MeshConfig, load_mesh, mesh_from_arrays, save_mesh_npz

OBJ_NGONS = """# quad + pentagon with per-corner UVs; vertex 3 has two different UVs (a seam)
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 0.5 1.5 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vt 0.5 0.5
vt 0.25 0.75
f 1/1 2/2 3/3 4/4
f 1/1 2/2 3/3 5/6 -2/-2
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


def test_obj_per_corner_uvs_and_fan_triangulation(tmp_path):
    m = load_mesh(write(tmp_path, "ngons.obj", OBJ_NGONS))
    assert m.num_triangles == 2 + 3
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 4], [0, 4, 3]]
    vt = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0.25, 0.75]], np.float32)
    expected = vt[[[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 5], [0, 5, 4]]]
    assert np.array_equal(m.uvs, expected)  # vertex 4 (index 3) keeps vt 4 in face 0 and vt 5 in the pentagon
    assert not m.unwrapped and not m.uv_out_of_range and m.up_axis == "Y"
    assert m.positions.dtype == np.float32 and m.faces.dtype == np.int64 and m.uvs.shape == (5, 3, 2)


def test_sample_mesh_obj_equals_arrays(tmp_path):
    a = load_mesh(SAMPLE_MESH)
    assert 2000 < a.num_triangles < 5000 and SAMPLE_MESH.stat().st_size < 1_000_000
    # seams: some position appears with more than one UV
    corners = np.concatenate([a.faces.reshape(-1, 1).astype(np.float64), a.uvs.reshape(-1, 2)], axis=1)
    assert len(np.unique(corners, axis=0)) > len(np.unique(a.faces))
    b = mesh_from_arrays(a.positions, a.faces, a.uvs, up_axis="Y")
    assert np.array_equal(a.uvs, b.uvs) and np.array_equal(a.faces, b.faces)
    assert np.allclose(a.normalize, b.normalize)
    p = a.normalized_positions()
    assert abs(np.linalg.norm(p, axis=1).max() - 1.0) < 1e-5
    assert np.allclose((p.min(0) + p.max(0)) / 2, 0, atol=1e-6)


def test_npz_round_trip_and_face_mask(tmp_path):
    a = load_mesh(SAMPLE_MESH)
    mask = np.zeros(a.num_triangles, bool)
    mask[:10] = True
    m = mesh_from_arrays(a.positions, a.faces.astype(np.int32), a.uvs, face_mask=mask)
    assert m.up_axis == "Z"  # arrays default to Blender's Z-up world
    save_mesh_npz(m, tmp_path / "m.npz")
    r = load_mesh(tmp_path / "m.npz")
    assert np.array_equal(r.uvs, m.uvs) and np.array_equal(r.faces, m.faces)
    assert np.array_equal(r.face_mask, mask) and r.up_axis == "Z"


def test_z_up_normalization_puts_blender_up_on_y():
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 3]], np.float32)  # tall along Blender's Z
    faces = np.array([[0, 1, 2], [0, 1, 3]])
    m = mesh_from_arrays(pos, faces, np.zeros((2, 3, 2)), up_axis="Z")
    p = m.normalized_positions()
    assert p[3, 1] == p[:, 1].max()  # the top vertex is highest along canonical +Y
    assert np.allclose(m.positions, pos)  # original positions kept
    front = mesh_from_arrays(pos, faces, np.zeros((2, 3, 2)), up_axis="Y").normalized_positions()
    assert front[3, 2] == front[:, 2].max()


def test_unwrap_when_no_uvs_or_forced(tmp_path):
    obj = "\n".join(["v 0 0 0", "v 1 0 0", "v 1 1 0", "v 0 1 0", "v 0 0 1", "f 1 2 3 4", "f 1 2 5", "f 2 3 5"])
    m = load_mesh(write(tmp_path, "nouv.obj", obj))
    assert m.unwrapped and m.num_triangles == 4
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1
    forced = load_mesh(SAMPLE_MESH, MeshConfig(force_unwrap=True))
    assert forced.unwrapped and not np.array_equal(forced.uvs, load_mesh(SAMPLE_MESH).uvs)


def test_uvs_outside_unit_square_are_reported():
    m = mesh_from_arrays(np.eye(3), [[0, 1, 2]], [[[0, 0], [2.5, 0], [0, -1]]])
    assert m.uv_out_of_range and not m.unwrapped


def test_ply_and_glb_load_through_trimesh(tmp_path):
    import trimesh

    box = trimesh.creation.box()
    box.export(tmp_path / "box.ply")
    m = load_mesh(tmp_path / "box.ply")
    assert m.num_triangles == 12 and m.unwrapped
    s = trimesh.creation.icosphere(subdivisions=1)
    uv = np.random.default_rng(0).random((len(s.vertices), 2))
    s.visual = trimesh.visual.TextureVisuals(uv=uv)
    s.export(tmp_path / "s.glb")
    g = load_mesh(tmp_path / "s.glb")
    assert g.num_triangles == len(s.faces) and not g.unwrapped and g.up_axis == "Y"
    assert np.abs(g.uvs - uv[s.faces]).max() < 1e-6


# ---- error cases: one line each, naming the problem and the fix


def _err(path_or_fn, config=MeshConfig()) -> str:
    with pytest.raises(MeshError) as ei:
        path_or_fn() if callable(path_or_fn) else load_mesh(path_or_fn, config)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_error_missing_file(tmp_path):
    assert "mesh file not found" in _err(tmp_path / "nope.obj")


def test_error_unreadable_file(tmp_path):
    assert "cannot read" in _err(write(tmp_path, "bad.glb", b"not a glb at all"))
    assert "cannot read" in _err(write(tmp_path, "bad.npz", b"garbage"))


def test_error_unsupported_format(tmp_path):
    assert "unsupported mesh format '.fbx'" in _err(write(tmp_path, "m.fbx", "x"))


def test_error_no_faces(tmp_path):
    assert "has no faces" in _err(write(tmp_path, "pts.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n"))


def test_error_nan_coordinates(tmp_path):
    msg = _err(write(tmp_path, "nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 inf\nf 1 2 3\n"))
    assert "2 vertex positions are NaN or infinite" in msg


def test_error_indices_out_of_range(tmp_path):
    assert "face indices out of range" in _err(write(tmp_path, "oob.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n"))
    assert "face indices out of range" in _err(lambda: mesh_from_arrays(np.eye(3), [[0, 1, -1]]))


def test_error_too_many_triangles():
    msg = _err(SAMPLE_MESH, MeshConfig(max_triangles=1000))
    assert "3,072 triangles is more than the limit of 1,000" in msg


def test_error_external_references(tmp_path):
    gltf = {"asset": {"version": "2.0"}, "buffers": [{"uri": "mesh.bin", "byteLength": 36}]}
    assert "references an external file ('mesh.bin')" in _err(write(tmp_path, "m.gltf", json.dumps(gltf)))
    # a .glb whose JSON chunk points at an external image
    doc = json.dumps({"asset": {"version": "2.0"}, "images": [{"uri": "tex.png"}]}).encode()
    doc += b" " * (-len(doc) % 4)
    glb = b"glTF" + (2).to_bytes(4, "little") + (20 + len(doc)).to_bytes(4, "little")
    glb += len(doc).to_bytes(4, "little") + b"JSON" + doc
    assert "self-contained .glb" in _err(write(tmp_path, "m.glb", glb))
