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


def _interior(tri_id: torch.Tensor) -> torch.Tensor:
    """(B,H,W) bool: pixels whose 3x3 neighbourhood has one triangle id (not on an edge)."""
    t = tri_id.float()[:, None]
    pad = torch.nn.functional.pad(t, (1, 1, 1, 1), mode="replicate")
    mx = torch.nn.functional.max_pool2d(pad, 3, stride=1)
    mn = -torch.nn.functional.max_pool2d(-pad, 3, stride=1)
    return (mx == mn)[:, 0] & (tri_id >= 0)


def _meshes():
    import trimesh

    from engine.assets import SAMPLE_MESH

    s = trimesh.creation.icosphere(subdivisions=5)
    rng = np.random.default_rng(0)
    yield "sample", load_mesh(SAMPLE_MESH)
    yield "sphere", mesh_from_arrays(s.vertices, s.faces, rng.random((len(s.faces), 3, 2)), up_axis="Y")


@pytest.mark.parametrize("res", [100, 512])  # 100: not a multiple of 8 (padded viewport)
def test_nvdiffrast_matches_numba(res):
    nv, nb = _contexts()
    cams = [fixed_views(8), sample_orbit(OrbitConfig(distance_jitter=0.2), 8, torch.Generator().manual_seed(0))]
    for name, mesh in _meshes():
        for cam in cams:
            a = rasterize(nv, mesh, cam, res)
            b = rasterize(nb, mesh, cam, res)
            assert a.device.type == "cuda" and b.device.type == "cuda"
            inner = _interior(b.tri_id)
            agree = (a.tri_id == b.tri_id) & inner
            frac = agree.sum().item() / max(1, inner.sum().item())
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
