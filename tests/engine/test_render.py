"""Differentiable texture lookup: values, gradient support (one-hot perturbations), filtering, background."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.cameras import OrbitConfig, fixed_views, orbit_cameras
from engine.mesh import Mesh, mesh_from_arrays
from engine.raster import RasterBackend, RasterContext, rasterize
from engine.render import BackgroundMode, FilterMode, RenderConfig, ViewCache, lookup_plan, raster_resolution, render_texture


@pytest.fixture(scope="module")
def ctx():
    return RasterContext(RasterBackend.NUMBA, device="cpu")


@pytest.fixture(scope="module")
def sphere():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    return mesh_from_arrays(s.vertices, s.faces, None, up_axis="Y")  # xatlas UVs, many islands


def front_quad(a=0.6) -> Mesh:
    pos = np.array([[-a, -a, 0], [a, -a, 0], [a, a, 0], [-a, a, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv_of = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return Mesh(positions=pos, faces=faces, uvs=uv_of[faces], normalize=np.eye(4))


def test_bilinear_reproduces_texel_centres(ctx):
    """Pixels whose UV hits a texel centre return that texel; row 0 of the texture = v 1 (top)."""
    mesh = front_quad()
    gb = rasterize(ctx, mesh, orbit_cameras([0.0], [0.0], 3.0, OrbitConfig(fov_deg=40)), 64)
    tex = torch.rand(4, 4, 3)
    cfg = RenderConfig(filter=FilterMode.BILINEAR, background_color=(0.0, 0.0, 0.0))
    img = render_texture(tex, gb, cfg)
    assert img.shape == (1, 3, 64, 64)
    uv = gb.uv[0]
    x = uv[..., 0] * 4 - 0.5
    y = (1 - uv[..., 1]) * 4 - 0.5
    # reference bilinear (clamped away from the border, where it also wraps)
    ok = gb.mask[0] & (x > 0) & (x < 3) & (y > 0) & (y < 3)
    x0, y0 = x.floor().long(), y.floor().long()
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0c, y0c = x0.clamp(0, 2), y0.clamp(0, 2)
    ref = (tex[y0c, x0c] * (1 - fx) * (1 - fy) + tex[y0c, x0c + 1] * fx * (1 - fy)
           + tex[y0c + 1, x0c] * (1 - fx) * fy + tex[y0c + 1, x0c + 1] * fx * fy)
    got = img[0].permute(1, 2, 0)
    assert ok.sum() > 500
    assert torch.allclose(got[ok], ref[ok], atol=1e-5)
    # the pixel nearest to UV (0.125, 0.875), the centre of texture row 0 (top), column 0
    d = (uv - torch.tensor([0.125, 0.875])).norm(dim=-1).masked_fill(~gb.mask[0], 9.0)
    k = int(d.argmin())
    ys, xs = divmod(k, 64)
    assert ys < 32 and xs < 32  # it lies in the top-left of the image
    assert torch.allclose(got[ys, xs], tex[0, 0], atol=0.08)
    # background is the solid colour
    assert (got[~gb.mask[0]] == 0).all()


@pytest.mark.parametrize("mode", [FilterMode.BILINEAR, FilterMode.MIP])
def test_gradient_only_at_sampled_texels_one_hot(ctx, sphere, mode):
    cams = fixed_views(4).select([0])  # the front half of the sphere
    gb = rasterize(ctx, sphere, cams, 24)
    cfg = RenderConfig(filter=mode, background=BackgroundMode.SOLID, background_color=(0.3, 0.3, 0.3))
    gen = torch.Generator().manual_seed(0)
    n = 8
    tex = torch.rand(n, n, 3, generator=gen)
    upstream = torch.randn(1, 3, 24, 24, generator=gen)
    plan = lookup_plan(gb, (n, n), cfg)
    t = tex.clone().requires_grad_(True)
    img = render_texture(t, gb, cfg)
    (img * upstream).sum().backward()
    grad = t.grad
    base = render_texture(tex, gb, cfg, plan=plan)
    bg = ~gb.mask[:, None].expand_as(base)
    sampled = 0
    for r in range(n):
        for c in range(n):
            for ch in (1,):
                pert = tex.clone()
                pert[r, c, ch] += 1.0
                diff = render_texture(pert, gb, cfg, plan=plan) - base
                assert (diff[bg] == 0).all()  # background never depends on the texture
                assert diff[:, [k for k in range(3) if k != ch]].abs().max() == 0  # channels stay separate
                jvp = (diff * upstream).sum()
                assert torch.allclose(grad[r, c, ch], jvp, atol=1e-4), (r, c, ch)
                touched = bool(diff.abs().max() > 0)
                assert touched == bool(grad[r, c, ch] != 0) or abs(float(jvp)) < 1e-6
                sampled += touched
    assert 0 < sampled < n * n  # some texels are seen, some are not


def test_mip_filter_removes_aliasing_when_minified(ctx):
    """A fine checkerboard seen from far away: MIP gives the mean grey, BILINEAR aliases."""
    mesh = front_quad(0.5)
    gb = rasterize(ctx, mesh, orbit_cameras([0.0], [0.0], 3.0, OrbitConfig(fov_deg=40)), 32)
    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    tex = ((yy + xx) % 2).float()[..., None].expand(256, 256, 3).contiguous()
    m = gb.mask[0]
    mip = render_texture(tex, gb, RenderConfig(filter=FilterMode.MIP))[0, 0][m]
    bil = render_texture(tex, gb, RenderConfig(filter=FilterMode.BILINEAR))[0, 0][m]
    assert (mip - 0.5).abs().max() < 0.02
    assert bil.std() > 0.1
    foot = gb.uv_footprint(256)[0][m]
    assert foot.min() > 8  # strongly minified: many texels per pixel


def test_supersample_and_random_background(ctx, sphere):
    cfg = RenderConfig(filter=FilterMode.SUPERSAMPLE, supersample=2, background=BackgroundMode.RANDOM)
    assert raster_resolution(cfg, 16) == 32
    gb = rasterize(ctx, sphere, fixed_views(3), raster_resolution(cfg, 16))
    tex = torch.zeros(32, 32, 3)
    g1 = torch.Generator().manual_seed(1)
    img = render_texture(tex, gb, cfg, generator=g1)
    assert img.shape == (3, 3, 16, 16)
    corner = img[:, :, 0, 0]  # background pixel: one random colour per view
    assert (corner > 0).all() and not torch.allclose(corner[0], corner[1])
    img2 = render_texture(tex, gb, cfg, generator=torch.Generator().manual_seed(1))
    assert torch.equal(img, img2)  # deterministic for a seed
    explicit = render_texture(tex, gb, cfg, background=torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(explicit[:, :, 0, 0], torch.tensor([0.2, 0.4, 0.6]).expand(3, 3))


def test_view_cache_matches_direct_render(ctx, sphere):
    cams = fixed_views(4)
    cache = ViewCache.build(ctx, sphere, cams, 32)
    assert len(cache) == 4 and len(cache.cameras) == 4
    tex = torch.rand(64, 64, 3, requires_grad=True)
    cfg = RenderConfig()
    a = cache.render(tex, [3, 1], cfg)
    b = render_texture(tex, cache.gbuffer([3, 1]), cfg)
    assert torch.allclose(a, b)
    a.sum().backward()
    assert tex.grad is not None and tex.grad.abs().sum() > 0
    plan = lookup_plan(cache.gbuffer([0]), (64, 64), cfg)
    assert plan.levels == 7 and plan.index.shape[1] == 8
    assert torch.allclose(plan.weight.sum(1), torch.ones(()), atol=1e-5)


def test_torch_path_matches_numba_path(ctx, sphere):
    """The torch gather (used on CUDA) and the numba kernels agree, forward and backward."""
    gb = rasterize(ctx, sphere, fixed_views(2), 32)
    tex = torch.rand(64, 64, 3, dtype=torch.float64)
    cfg = RenderConfig()
    t64 = tex.clone().requires_grad_(True)  # float64 takes the torch path
    t32 = tex.float().requires_grad_(True)  # float32 on CPU takes the numba path
    up = torch.randn(2, 3, 32, 32)
    i64 = render_texture(t64, gb, cfg)
    i32 = render_texture(t32, gb, cfg)
    assert torch.allclose(i64.float(), i32, atol=1e-5)
    (i64 * up.double()).sum().backward()
    (i32 * up).sum().backward()
    assert torch.allclose(t64.grad.float(), t32.grad, atol=1e-4)
    assert math.isfinite(float(t32.grad.sum()))


def test_a_close_up_builds_only_the_pyramid_it_reads_with_identical_results(ctx):
    """``level_regions``: a close-up of a quarter of a quad reads (so builds and back-propagates)
    a small part of each mip level; values and gradients are bit-identical to building and
    collapsing the whole pyramid, and equal the torch path."""
    from engine.raster import numba_lookup as nl
    from engine.render import _level_tables

    cams = orbit_cameras(np.array([0.0]), np.array([0.0]), 2.8, OrbitConfig(fov_deg=8.0))  # sees about 0.33 x 0.33
    gb = rasterize(ctx, front_quad(), cams, 32)
    tex = torch.rand(256, 256, 3)
    plan = lookup_plan(gb, (256, 256), RenderConfig())
    sizes, offsets, rows = _level_tables((256, 256), plan.levels)
    index, weight, pixels = plan.index.numpy(), plan.weight.numpy(), plan.pixels.numpy()
    regions = nl.level_regions(index, sizes, offsets)
    full = np.stack([np.zeros(len(sizes), np.int64), sizes[:, 0], np.zeros(len(sizes), np.int64), sizes[:, 1]], 1)
    area = lambda r: max(int(r[1] - r[0]), 0) * max(int(r[3] - r[2]), 0)  # noqa: E731
    assert sum(area(r) for r in regions[1:]) < 0.25 * sum(area(r) for r in full[1:])

    flat = tex.numpy().reshape(-1, 3)
    outs, grads = [], []
    g = np.random.default_rng(0).standard_normal((gb.mask.numel(), 3)).astype(np.float32)
    for reg in (regions, full):
        lo = np.full((rows - flat.shape[0], 3), np.nan, np.float32)  # unbuilt rows must never be read
        out = np.zeros((gb.mask.numel(), 3), np.float32)
        nl.build_levels(flat, sizes, offsets, lo, reg)
        nl.gather_forward(flat, lo, pixels, index, weight, out)
        g0, glo = np.zeros_like(flat), np.zeros_like(lo)
        nl.gather_backward(g, pixels, index, weight, g0, glo)
        nl.collapse_levels(sizes, offsets, g0, glo, reg)
        outs.append(out)
        grads.append(g0)
    assert np.isfinite(outs[0]).all() and np.array_equal(outs[0], outs[1]) and np.array_equal(grads[0], grads[1])
    assert np.count_nonzero(grads[0].any(1)) > 0

    t32, t64 = tex.clone().requires_grad_(True), tex.double().requires_grad_(True)  # numba / torch paths
    up = torch.randn(1, 3, 32, 32)
    i32, i64 = render_texture(t32, gb, RenderConfig()), render_texture(t64, gb, RenderConfig())
    assert torch.allclose(i32, i64.float(), atol=1e-5)
    (i32 * up).sum().backward()
    (i64 * up.double()).sum().backward()
    assert torch.allclose(t32.grad, t64.grad.float(), atol=1e-5)
