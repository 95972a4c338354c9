"""``RasterContext`` (the explicit backend/device context) and ``rasterize``."""

from __future__ import annotations

import numpy as np
import torch

from engine.cameras import Cameras
from engine.errors import BackendUnavailableError
from engine.mesh import Mesh
from engine.raster.backend import RasterBackend
from engine.raster.gbuffer import GBuffer, build_gbuffer, face_normals
from engine.raster.nvdiffrast_raster import NvdiffrastRasterizer, nvdiffrast_status


def _resolve_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "device 'cuda' was requested but CUDA is not available here; use device 'cpu' (or 'auto')"
        )
    return dev


def resolve_backend(backend: RasterBackend | str, device: torch.device) -> RasterBackend:
    """AUTO -> NVDIFFRAST when the device is CUDA and nvdiffrast works, else NUMBA."""
    backend = RasterBackend(backend)
    if backend is RasterBackend.AUTO:
        ok, _ = nvdiffrast_status()
        return RasterBackend.NVDIFFRAST if (ok and device.type == "cuda") else RasterBackend.NUMBA
    return backend


class RasterContext:
    """Explicit rasterizer context: a resolved backend and the device its G-buffers live on.

    backend: AUTO | NUMBA | NVDIFFRAST (``.backend`` holds the resolved one).
    device: "cpu", "cuda[:n]" or "auto" (CUDA when available). The numba backend rasterizes on
        the CPU and moves the G-buffer to ``device``. NVDIFFRAST on a CPU device uses "cuda".
    """

    def __init__(self, backend: RasterBackend | str = RasterBackend.AUTO, device="cpu"):
        dev = _resolve_device(device)
        self.backend = resolve_backend(backend, dev)
        self._nv = None
        if self.backend is RasterBackend.NVDIFFRAST:
            if dev.type != "cuda":
                dev = _resolve_device("cuda") if torch.cuda.is_available() else dev
            self._nv = NvdiffrastRasterizer(dev)
        self.device = dev
        self._mesh_cache: tuple[Mesh, dict] | None = None

    def __repr__(self) -> str:
        return f"RasterContext(backend={self.backend.value}, device={self.device})"

    def _mesh_tensors(self, mesh: Mesh) -> dict:
        if self._mesh_cache is not None and self._mesh_cache[0] is mesh:
            return self._mesh_cache[1]
        pos = mesh.normalized_positions().astype(np.float64)
        t = {
            "pos_h": np.concatenate([pos, np.ones((pos.shape[0], 1))], axis=1),
            "faces_np": np.ascontiguousarray(mesh.faces, dtype=np.int64),
            "faces": torch.from_numpy(mesh.faces.astype(np.int64)).to(self.device),
            "uvs": torch.from_numpy(mesh.uvs).to(self.device),
            "normals_np": face_normals(pos, mesh.faces),
            "uvs_np": np.ascontiguousarray(mesh.uvs, dtype=np.float32),
        }
        t["normals"] = torch.from_numpy(t["normals_np"]).to(self.device)
        self._mesh_cache = (mesh, t)
        return t

    def clip_positions(self, mesh: Mesh, cameras: Cameras) -> np.ndarray:
        """(B,V,4) float64 clip-space positions of the normalized mesh."""
        t = self._mesh_tensors(mesh)
        mvp = cameras.mvp.double().numpy()
        return np.einsum("vk,bjk->bvj", t["pos_h"], mvp)


def rasterize(ctx: RasterContext, mesh: Mesh, cameras: Cameras, resolution: int | tuple[int, int]) -> GBuffer:
    """Rasterize ``mesh`` (normalized frame) from ``cameras`` at ``resolution`` (int = square, or (H, W)).

    Returns a ``GBuffer`` on ``ctx.device`` with B = len(cameras).
    """
    H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    t = ctx._mesh_tensors(mesh)
    clip = ctx.clip_positions(mesh, cameras)
    if ctx.backend is RasterBackend.NVDIFFRAST:
        clip_t = torch.from_numpy(clip).to(ctx.device)
        tri_id, bary = ctx._nv(clip_t, t["faces"], H, W)
        return build_gbuffer(tri_id, bary, clip_t, t["faces"], t["uvs"], t["normals"])
    from engine.raster.numba_raster import rasterize_numba

    o = rasterize_numba(clip, t["faces_np"], H, W, t["uvs_np"], t["normals_np"])
    g = {k: torch.from_numpy(v).to(ctx.device) for k, v in o.items()}
    tri_id = g.pop("tri_id").long()
    return GBuffer(mask=tri_id >= 0, tri_id=tri_id, **g)
