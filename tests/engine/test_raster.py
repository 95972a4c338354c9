"""Rasterizer exactness on analytic scenes (numba backend), and the shared attribute pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.cameras import OrbitConfig, orbit_cameras
from engine.errors import BackendUnavailableError
from engine.mesh import Mesh
from engine.raster import RasterBackend, RasterContext, rasterize
from engine.raster.gbuffer import build_gbuffer, face_normals

RES = 64
DIST = 3.0
CFG = OrbitConfig(fov_deg=40.0)
F_LEN = 1.0 / math.tan(math.radians(CFG.fov_deg) / 2)


def raw_mesh(positions, faces, uvs) -> Mesh:
    """A Mesh whose normalized frame is its own frame (identity normalization), for analytic checks."""
    return Mesh(
        positions=np.asarray(positions, np.float32),
        faces=np.asarray(faces, np.int64),
        uvs=np.asarray(uvs, np.float32),
        normalize=np.eye(4),
    )


def front_camera():
    """Camera on +Z at distance DIST looking at the origin (azimuth 0, elevation 0)."""
    return orbit_cameras([0.0], [0.0], DIST, CFG)


def pixel_ndc(res: int):
    """NDC of pixel centres: x (columns, left->right), y (rows, top->bottom = +1 -> -1)."""
    c = (np.arange(res) + 0.5) / res
    return 2 * c - 1, 1 - 2 * c


def quad(a: float, z: float = 0.0):
    pos = [[-a, -a, z], [a, -a, z], [a, a, z], [-a, a, z]]
    faces = [[0, 1, 2], [0, 2, 3]]
    uv_of = {0: (0, 0), 1: (1, 0), 2: (1, 1), 3: (0, 1)}
    uvs = [[uv_of[i] for i in f] for f in faces]
    return pos, faces, uvs


@pytest.fixture(scope="module")
def ctx():
    return RasterContext(RasterBackend.NUMBA, device="cpu")


def test_front_quad_coverage_uv_depth(ctx):
    a = 0.6
    mesh = raw_mesh(*quad(a))
    gb = rasterize(ctx, mesh, front_camera(), RES)
    xn, yn = pixel_ndc(RES)
    edge = a * F_LEN / DIST  # quad half-size in NDC
    inside_x, inside_y = np.abs(xn) < edge, np.abs(yn) < edge
    expected = inside_y[:, None] & inside_x[None, :]
    boundary = (np.abs(np.abs(yn) - edge) < 1e-6)[:, None] | (np.abs(np.abs(xn) - edge) < 1e-6)[None, :]
    got = gb.mask[0].numpy()
    assert expected.sum() > 500
    assert np.array_equal(got[~boundary], expected[~boundary])
    # UV at pixel centres: world x = xn * DIST / F_LEN
    wx = xn * DIST / F_LEN
    wy = yn * DIST / F_LEN
    u_exp = np.broadcast_to(((wx / a + 1) / 2)[None, :], (RES, RES))
    v_exp = np.broadcast_to(((wy / a + 1) / 2)[:, None], (RES, RES))
    uv = gb.uv[0].numpy()
    assert np.abs(uv[..., 0][expected] - u_exp[expected]).max() < 1e-5
    assert np.abs(uv[..., 1][expected] - v_exp[expected]).max() < 1e-5
    assert np.abs(gb.depth[0].numpy()[expected] - DIST).max() < 1e-5
    # background pixels
    assert (gb.tri_id[0][~torch.from_numpy(expected | boundary)] == -1).all()
    # front-facing quad: normal +Z; barycentrics sum to 1
    assert torch.allclose(gb.normal[0][gb.mask[0]], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(gb.bary[0][gb.mask[0]].sum(-1), torch.ones(()), atol=1e-6)


def test_tilted_plane_perspective_correct_uv_and_depth(ctx):
    """A quad tilted 60 degrees about the x axis: UV and depth from ray-plane intersection."""
    ang = math.radians(60.0)
    ey = np.array([0, math.cos(ang), -math.sin(ang)])
    ex = np.array([1.0, 0.0, 0.0])
    a = 0.8
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    pos = [a * (sx * ex + sy * ey) for sx, sy in corners]
    faces = [[0, 1, 2], [0, 2, 3]]
    uv_of = {i: ((c[0] + 1) / 2, (c[1] + 1) / 2) for i, c in enumerate(corners)}
    mesh = raw_mesh(pos, faces, [[uv_of[i] for i in f] for f in faces])
    gb = rasterize(ctx, mesh, front_camera(), RES)
    xn, yn = pixel_ndc(RES)
    X, Y = np.meshgrid(xn, yn)
    n = np.cross(ex, ey)
    eye = np.array([0, 0, DIST])

    def hit(X, Y):
        """Ray from the eye through NDC (X, Y) meets the plane: (uv_u, uv_v, depth, |local coords|)."""
        d = np.stack([X / F_LEN, Y / F_LEN, -np.ones_like(X)], -1)
        tpar = -(eye @ n) / (d @ n)
        p = eye + tpar[..., None] * d
        return (p @ ex / a + 1) / 2, (p @ ey / a + 1) / 2, tpar, np.maximum(np.abs(p @ ex), np.abs(p @ ey))

    u_exp, v_exp, depth_exp, extent = hit(X, Y)
    inside = extent < a - 1e-4
    m = gb.mask[0].numpy()
    assert inside.sum() > 300
    assert m[inside].all()
    uv = gb.uv[0].numpy()
    assert np.abs(uv[..., 0][inside] - u_exp[inside]).max() < 1e-5
    assert np.abs(uv[..., 1][inside] - v_exp[inside]).max() < 1e-5
    assert np.abs(gb.depth[0].numpy()[inside] - depth_exp[inside]).max() < 1e-4
    # analytic UV derivatives per pixel step (x = column right, y = row down) vs fine differences
    h = 1e-4  # pixels
    step = 2.0 / RES
    du_dx = (hit(X + h * step, Y)[0] - hit(X - h * step, Y)[0]) / (2 * h)
    dv_dy = (hit(X, Y - h * step)[1] - hit(X, Y + h * step)[1]) / (2 * h)
    da = gb.uv_da[0].numpy()
    assert np.abs(da[..., 0][inside] - du_dx[inside]).max() < 1e-5
    assert np.abs(da[..., 3][inside] - dv_dy[inside]).max() < 1e-5
    assert np.abs(da[..., 1][inside]).max() < 1e-6  # v does not change along a row here


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_wins(ctx, near_first):
    far = [[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.0, 0.5, 0.0]]
    near = [[-0.4, -0.6, 0.3], [0.6, -0.2, 0.3], [-0.2, 0.6, 0.3]]
    pos = near + far if near_first else far + near
    faces = [[0, 1, 2], [3, 4, 5]]
    uvs = np.zeros((2, 3, 2))
    mesh = raw_mesh(pos, faces, uvs)
    gb = rasterize(ctx, mesh, front_camera(), RES)
    near_id = 0 if near_first else 1
    # rasterize each alone to know their footprints
    alone = [rasterize(ctx, raw_mesh(pos, [f], uvs[:1]), front_camera(), RES).mask[0] for f in faces]
    both = alone[0] & alone[1]
    assert both.sum() > 100
    assert (gb.tri_id[0][both] == near_id).all()
    assert torch.allclose(gb.depth[0][both], torch.tensor(DIST - 0.3), atol=1e-5)
    only_far = alone[1 - near_id] & ~alone[near_id]
    assert only_far.sum() > 0 and (gb.tri_id[0][only_far] == 1 - near_id).all()


def test_shared_attribute_pass_matches_numba(ctx):
    """The torch attribute pass (used with nvdiffrast) reproduces the numba G-buffer."""
    import trimesh

    from engine.mesh import mesh_from_arrays

    s = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    mesh = mesh_from_arrays(s.vertices, s.faces, rng.random((len(s.faces), 3, 2)), up_axis="Y")
    cams = orbit_cameras([30.0, -100.0], [20.0, -5.0], 2.8)
    gb = rasterize(ctx, mesh, cams, 48)
    clip = torch.from_numpy(ctx.clip_positions(mesh, cams))
    normals = torch.from_numpy(face_normals(mesh.normalized_positions(), mesh.faces))
    ref = build_gbuffer(gb.tri_id, gb.bary, clip, torch.from_numpy(mesh.faces), torch.from_numpy(mesh.uvs), normals)
    assert torch.equal(ref.mask, gb.mask)
    for name in ("uv", "depth", "normal"):
        assert torch.allclose(getattr(ref, name), getattr(gb, name), atol=1e-5), name
    assert torch.allclose(ref.uv_da, gb.uv_da, atol=1e-4, rtol=1e-3)


def test_gbuffer_select_and_to(ctx):
    mesh = raw_mesh(*quad(0.5))
    cams = orbit_cameras([0.0, 90.0, 180.0], [0.0, 0.0, 0.0], DIST, CFG)
    gb = rasterize(ctx, mesh, cams, 16)
    assert gb.batch == 3 and gb.resolution == (16, 16)
    one = gb.select(2)
    assert one.batch == 1 and torch.equal(one.tri_id[0], gb.tri_id[2])
    assert gb.to("cpu").device.type == "cpu"
    # side view of a flat quad: (almost) nothing covered
    assert gb.mask[1].sum() <= 16


def test_nvdiffrast_missing_says_how_to_install():
    pytest.importorskip("torch")
    try:
        import nvdiffrast.torch  # noqa: F401

        pytest.skip("nvdiffrast is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailableError, match=r'pip install "texbridge\[cuda\]"'):
        RasterContext(RasterBackend.NVDIFFRAST, device="cpu")
    assert RasterContext(RasterBackend.AUTO, device="cpu").backend is RasterBackend.NUMBA


def test_nvdiffrast_viewport_padding_math(ctx):
    """The NDC remap used for nvdiffrast's 8-pixel tiles, checked with the numba rasterizer:
    the padded viewport's bottom-left block equals the unpadded image."""
    from engine.assets import SAMPLE_MESH
    from engine.cameras import fixed_views
    from engine.mesh import load_mesh
    from engine.raster.numba_raster import rasterize_numba
    from engine.raster.nvdiffrast_raster import pad_viewport

    mesh = load_mesh(SAMPLE_MESH)
    clip = ctx.clip_positions(mesh, fixed_views(2))
    H, W = 37, 50
    padded, H8, W8 = pad_viewport(torch.from_numpy(clip), H, W)
    assert (H8, W8) == (40, 56)
    ref = rasterize_numba(clip, mesh.faces, H, W)
    big = rasterize_numba(padded.numpy(), mesh.faces, H8, W8)
    # rows counted top-down here: the block is the last H rows
    assert np.array_equal(big["tri_id"][:, H8 - H :, :W], ref["tri_id"])
    assert np.allclose(big["bary"][:, H8 - H :, :W], ref["bary"], atol=1e-5)


def test_closed_mesh_back_face_culling_changes_nothing():
    """Closed meshes skip hidden back faces (less work); the G-buffer stays the same."""
    import trimesh

    from engine.assets import SAMPLE_MESH
    from engine.cameras import fixed_views
    from engine.mesh import load_mesh, mesh_from_arrays
    from engine.raster.context import closed_orientation

    s = trimesh.creation.icosphere(subdivisions=3)
    inward = mesh_from_arrays(s.vertices, s.faces[:, ::-1], np.zeros((len(s.faces), 3, 2)), up_axis="Y")
    sample = load_mesh(SAMPLE_MESH)
    open_mesh = raw_mesh(*quad(0.5))
    assert closed_orientation(sample.positions, sample.faces) == 1  # UV seams do not open it
    assert closed_orientation(inward.positions, inward.faces) == -1
    assert closed_orientation(open_mesh.positions, open_mesh.faces) == 0
    cams = fixed_views(4)
    for mesh in (sample, inward):
        culled = rasterize(RasterContext(RasterBackend.NUMBA, cull_closed=True), mesh, cams, 96)
        full = rasterize(RasterContext(RasterBackend.NUMBA, cull_closed=False), mesh, cams, 96)
        same = culled.tri_id == full.tri_id
        assert same.float().mean() > 0.999
        assert torch.allclose(culled.uv[same], full.uv[same])


def test_early_z_for_open_meshes_changes_nothing():
    """Open meshes cannot cull back faces; the numba backend draws front faces first and skips
    back faces hidden behind them. The G-buffer must be identical to drawing every triangle in
    id order: triangle soups with mixed winding (many overlaps) and the sample mesh (mostly hidden
    back faces), several views."""
    from engine.assets import SAMPLE_MESH
    from engine.cameras import fixed_views
    from engine.mesh import load_mesh
    from engine.raster.numba_raster import rasterize_numba

    rng = np.random.default_rng(0)
    scenes = []
    for _ in range(3):
        centres = rng.uniform(-0.8, 0.8, (300, 1, 3))
        pos = (centres + rng.normal(0, 0.25, (300, 3, 3))).reshape(-1, 3)
        faces = np.arange(900).reshape(300, 3)
        faces = np.concatenate([faces, faces[:100, ::-1]])  # coplanar twins of opposite winding (near-ties)
        scenes.append(raw_mesh(pos, faces, rng.random((400, 3, 2))))
    scenes.append(load_mesh(SAMPLE_MESH))
    cams = fixed_views(3)
    ctx = RasterContext(RasterBackend.NUMBA, cull_closed=False)
    drawn_back = 0
    for mesh in scenes:
        clip = ctx.clip_positions(mesh, cams)
        faces = np.ascontiguousarray(mesh.faces, np.int64)
        a = rasterize_numba(clip, faces, 80, 96, mesh.uvs, None, early_z=True)
        b = rasterize_numba(clip, faces, 80, 96, mesh.uvs, None, early_z=False)
        for k in a:
            assert np.array_equal(a[k], b[k]), k
        ndc = clip[..., :2] / clip[..., 3:]
        p0, p1, p2 = (ndc[:, faces[:, i]] for i in range(3))
        area = (p1[..., 0] - p0[..., 0]) * (p2[..., 1] - p0[..., 1]) - (p2[..., 0] - p0[..., 0]) * (p1[..., 1] - p0[..., 1])
        for v in range(len(cams)):
            seen = a["tri_id"][v][a["tri_id"][v] >= 0]
            drawn_back += int((area[v][seen] < 0).sum())  # clockwise on screen (y up): back-facing
    assert drawn_back > 100  # back faces do win pixels in these scenes

