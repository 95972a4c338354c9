"""Close-up cameras and the loop's view sources (real rasterizer)."""

from __future__ import annotations

import numpy as np
import torch

from engine.cameras import CloseupConfig, CloseupUp, Surface, closeup_cameras
from engine.raster import RasterContext, rasterize
from engine.render import RenderConfig, ViewCache, render_texture
from engine.shapes import island_cube, quad, uv_sphere
from engine.views import CachedViews, CloseupViews


def test_closeups_fill_the_frame_and_face_the_surface():
    """On a sphere every close-up is all surface, and the centre pixel's normal points at the camera."""
    mesh = uv_sphere()
    cams = closeup_cameras(Surface.of(mesh.normalized_positions(), mesh.faces), CloseupConfig(tilt_deg=0.0), 12,
                           torch.Generator().manual_seed(0))
    gb = rasterize(RasterContext("numba"), mesh, cams, 32)
    assert bool(gb.mask.all())
    centre_normal = gb.normal[:, 16, 16]  # (B, 3), world frame
    eye_dir = cams.eye / cams.eye.norm(dim=1, keepdim=True)
    assert float((centre_normal * eye_dir).sum(1).min()) > 0.95  # sphere centre at the origin: normal ~ eye direction


def test_closeup_extent_sets_the_footprint():
    """A face-on close-up of the +Z quad spans 2 * half_extent: UV range = 2 * 0.3 / quad side."""
    mesh = quad()
    side = float(np.ptp(mesh.normalized_positions()[:, 0]))
    cams = closeup_cameras(Surface.of(mesh.normalized_positions(), mesh.faces), CloseupConfig(half_extent=0.3, extent_jitter=0.0, tilt_deg=0.0),
                           64, torch.Generator().manual_seed(1))
    gb = rasterize(RasterContext("numba"), mesh, cams, 64)
    full = [i for i in range(64) if bool(gb.mask[i].all())]
    assert full, "some close-up of the quad must be all surface"
    u = gb.uv[full[0], ..., 0]
    assert abs(float(u.max() - u.min()) - 2 * 0.3 / side) < 0.05
    assert np.allclose(cams.elevation_deg.numpy(), 0.0, atol=1e-4) and np.allclose(cams.azimuth_deg.numpy(), 0.0, atol=1e-4)


def test_closeups_are_deterministic_and_reach_every_face():
    mesh = island_cube()
    a = closeup_cameras(Surface.of(mesh.normalized_positions(), mesh.faces), CloseupConfig(), 200, torch.Generator().manual_seed(5))
    b = closeup_cameras(Surface.of(mesh.normalized_positions(), mesh.faces), CloseupConfig(), 200, torch.Generator().manual_seed(5))
    assert torch.equal(a.view, b.view)
    gb = rasterize(RasterContext("numba"), mesh, a, 16)
    faces_seen = set(torch.unique(gb.tri_id[gb.mask]).tolist())
    assert faces_seen == set(range(12))  # the underside (-Y) too


def test_view_sources_draw_from_the_generator_and_render():
    mesh = uv_sphere(8, 16)
    ctx = RasterContext("numba")
    tex = torch.rand(32, 32, 3)
    fresh = CloseupViews(ctx, mesh, CloseupConfig(), 16)
    b1, b2 = fresh.draw(2, torch.Generator().manual_seed(3)), fresh.draw(2, torch.Generator().manual_seed(3))
    assert torch.equal(b1.cameras.view, b2.cameras.view)
    img = b1.render(tex, RenderConfig(), background=torch.zeros(2, 3))
    direct = render_texture(tex, rasterize(ctx, mesh, b1.cameras, 16), RenderConfig(), background=torch.zeros(2, 3))
    assert img.shape == (2, 3, 16, 16) and torch.allclose(img, direct)
    cache = ViewCache.build(ctx, mesh, b1.cameras, 16)
    g = torch.Generator().manual_seed(0)
    expected = torch.randint(0, 2, (3,), generator=torch.Generator().manual_seed(0)).tolist()
    cb = CachedViews(cache).draw(3, g)
    assert torch.equal(cb.cameras.view, b1.cameras.view[expected])


def test_uv_up_closeups_see_the_texture_upright():
    """With ``up=UV`` every close-up's image up is the aimed face's +v direction: on the cube's
    top and bottom faces too, where world up rolls freely. The rendered v grows upwards."""
    mesh = island_cube()
    surface = Surface.of(mesh.normalized_positions(), mesh.faces, mesh.uvs)
    cams = closeup_cameras(surface, CloseupConfig(tilt_deg=0.0, up=CloseupUp.UV), 64, torch.Generator().manual_seed(2))
    gb = rasterize(RasterContext("numba"), mesh, cams, 32)
    full = [i for i in range(64) if bool(gb.mask[i].all())]
    tops = [i for i in full if abs(float(gb.normal[i, 16, 16, 1])) > 0.99]  # top/bottom faces
    assert len(full) >= 16 and tops
    for i in full:
        v = gb.uv[i, ..., 1]
        assert float(v[4, 16]) > float(v[28, 16])  # row 4 (near the top) has the larger v
        assert abs(float(v[16, 4] - v[16, 28])) < 1e-3  # and v does not change along a row
    # on the quad, whose +v is world +Y, UV up and world up give the same cameras
    q = quad()
    args = (CloseupConfig(up=CloseupUp.UV), 8, )
    a = closeup_cameras(Surface.of(q.normalized_positions(), q.faces, q.uvs), *args, torch.Generator().manual_seed(4))
    b = closeup_cameras(Surface.of(q.normalized_positions(), q.faces), *args, torch.Generator().manual_seed(4))
    assert torch.allclose(a.view, b.view, atol=1e-5)
