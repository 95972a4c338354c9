"""GPU tier: nvdiffrast and numba produce the same G-buffer (skipped without CUDA/nvdiffrast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.cameras import OrbitConfig, fixed_views, sample_orbit
from engine.mesh import load_mesh, mesh_from_arrays
from engine.raster import RasterBackend, RasterContext, rasterize
from engine.render import RenderConfig, render_texture

pytestmark = pytest.mark.gpu


def _contexts():
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    pytest.importorskip("nvdiffrast.torch", reason='nvdiffrast not installed (pip install "texbridge[cuda]")')
    nv = RasterContext(RasterBackend.NVDIFFRAST, device="cuda")
    nb = RasterContext(RasterBackend.NUMBA, device="cuda")  # rasterized on CPU, moved to CUDA
    assert nv.backend is RasterBackend.NVDIFFRAST and nb.backend is RasterBackend.NUMBA
    return nv, nb


def _off_edges(ctx, mesh, cams, tri_id: torch.Tensor, margin: float = 0.01) -> torch.Tensor:
    """(B,H,W) bool: covered pixels whose centre is more than ``margin`` pixels from every edge
    of its triangle (where two exact rasterizers must agree; nvdiffrast snaps vertices to a
    subpixel grid, so centres right on an edge may go either way)."""
    B, H, W = tri_id.shape
    clip = torch.from_numpy(ctx.clip_positions(mesh, cams)).to(tri_id.device)  # (B,V,4) f64
    sx = (clip[..., 0] / clip[..., 3] * 0.5 + 0.5) * W
    sy = (0.5 - clip[..., 1] / clip[..., 3] * 0.5) * H
    faces = torch.from_numpy(mesh.faces).to(tri_id.device)
    ok = torch.zeros_like(tri_id, dtype=torch.bool)
    ys, xs = torch.meshgrid(torch.arange(H, device=tri_id.device) + 0.5, torch.arange(W, device=tri_id.device) + 0.5,
                            indexing="ij")
    for b in range(B):
        m = tri_id[b] >= 0
        f = faces[tri_id[b][m]]  # (N,3)
        px, py = xs[m].double(), ys[m].double()
        vx, vy = sx[b][f], sy[b][f]  # (N,3)
        dmin = torch.full_like(px, float("inf"))
        for i in range(3):
            j = (i + 1) % 3
            ex, ey = vx[:, j] - vx[:, i], vy[:, j] - vy[:, i]
            ln = torch.sqrt(ex * ex + ey * ey).clamp_min(1e-12)
            d = ((px - vx[:, i]) * ey - (py - vy[:, i]) * ex).abs() / ln
            dmin = torch.minimum(dmin, d)
        ok[b][m] = dmin > margin
    return ok


def _meshes():
    import trimesh

    from engine.assets import SAMPLE_MESH

    s = trimesh.creation.icosphere(subdivisions=5)  # 20,480 small triangles
    # smooth spherical UVs per corner (a seam at the back): UV error then measures barycentric error
    p = np.asarray(s.vertices)[np.asarray(s.faces)]  # (F,3,3)
    u = 0.5 + np.arctan2(p[..., 0], p[..., 2]) / (2 * np.pi)
    wrap = (u.max(1) - u.min(1)) > 0.5
    u[wrap] = np.where(u[wrap] < 0.5, u[wrap] + 1.0, u[wrap])
    v = 0.5 + np.arcsin(np.clip(p[..., 1], -1, 1)) / np.pi
    yield "sample", load_mesh(SAMPLE_MESH)
    yield "sphere", mesh_from_arrays(s.vertices, s.faces, np.stack([u, v], -1), up_axis="Y")


@pytest.mark.parametrize("res", [100, 512])  # 100: not a multiple of 8 (padded viewport)
def test_nvdiffrast_matches_numba(res):
    nv, nb = _contexts()
    cams = [fixed_views(8), sample_orbit(OrbitConfig(distance_jitter=0.2), 8, torch.Generator().manual_seed(0))]
    for name, mesh in _meshes():
        for cam in cams:
            a = rasterize(nv, mesh, cam, res)
            b = rasterize(nb, mesh, cam, res)
            assert a.device.type == "cuda" and b.device.type == "cuda"
            inner = _off_edges(nb, mesh, cam, b.tri_id)
            assert inner.sum().item() > 0.5 * b.mask.sum().item()  # most covered pixels are checked
            agree = (a.tri_id == b.tri_id) & inner
            frac = agree.sum().item() / inner.sum().item()
            assert frac >= 0.995, (name, res, frac)
            assert (a.mask ^ b.mask).float().mean().item() < 0.01
            assert (a.uv[agree] - b.uv[agree]).abs().max().item() <= 1e-4, name
            assert (a.depth[agree] - b.depth[agree]).abs().max().item() <= 1e-3, name
            assert torch.allclose(a.normal[agree], b.normal[agree], atol=1e-5)
            da = (a.uv_da[agree] - b.uv_da[agree]).abs()
            assert da.max().item() <= 1e-4 + 1e-3 * b.uv_da[agree].abs().max().item()


def test_cuda_render_gradient_matches_cpu():
    """The torch lookup path on CUDA equals the numba lookup path on the CPU, forward and backward."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    from engine.assets import SAMPLE_MESH

    mesh = load_mesh(SAMPLE_MESH)
    cams = fixed_views(4)
    gcpu = rasterize(RasterContext(RasterBackend.NUMBA, device="cpu"), mesh, cams, 128)
    ggpu = gcpu.to("cuda")
    tex = torch.rand(256, 256, 3)
    up = torch.randn(4, 3, 128, 128)
    out = []
    for dev, gb in (("cpu", gcpu), ("cuda", ggpu)):
        t = tex.to(dev).requires_grad_(True)
        img = render_texture(t, gb, RenderConfig())
        (img * up.to(dev)).sum().backward()
        out.append((img.detach().cpu(), t.grad.cpu()))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-5)
    assert torch.allclose(out[0][1], out[1][1], atol=1e-3)
