"""``RasterContext`` (the explicit backend/device context) and ``rasterize``."""

from __future__ import annotations

import numpy as np
import torch

from engine.cameras import Cameras
from engine.environment import resolve_device
from engine.mesh import Mesh
from engine.raster.backend import RasterBackend
from engine.raster.gbuffer import GBuffer, build_gbuffer, face_normals
from engine.raster.nvdiffrast_raster import NvdiffrastRasterizer, nvdiffrast_status


def resolve_backend(backend: RasterBackend | str, device: torch.device) -> RasterBackend:
    """AUTO -> NVDIFFRAST when the device is CUDA and nvdiffrast works, else NUMBA."""
    backend = RasterBackend(backend)
    if backend is RasterBackend.AUTO:
        ok, _ = nvdiffrast_status()
        return RasterBackend.NVDIFFRAST if (ok and device.type == "cuda") else RasterBackend.NUMBA
    return backend


def closed_orientation(positions: np.ndarray, faces: np.ndarray) -> int:
    """+1: the mesh is closed with consistent outward (counter-clockwise) winding; -1: closed and
    wound inward; 0: open, non-manifold or inconsistently wound.

    Vertices at the same position (to 1e-7 of the mesh size) are welded first (UV seams split
    vertices) and zero-area faces are ignored. Closed means every directed edge appears once and its reverse once.
    """
    p = np.asarray(positions, dtype=np.float64)
    scale = float(np.abs(p).max()) or 1.0
    _, inv = np.unique(np.round(p / (scale * 1e-7)).astype(np.int64), axis=0, return_inverse=True)
    f = inv.reshape(-1)[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    if len(f) < 4:
        return 0
    n = int(f.max()) + 1
    a = f.reshape(-1)
    b = f[:, [1, 2, 0]].reshape(-1)
    fwd = np.sort(a * n + b)
    if (np.diff(fwd) == 0).any():
        return 0  # an edge used twice in the same direction: non-manifold or flipped faces
    if not np.array_equal(fwd, np.sort(b * n + a)):
        return 0  # a boundary edge: open mesh
    p = positions.astype(np.float64)[faces]
    volume = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0
    return 1 if volume > 0 else (-1 if volume < 0 else 0)


class RasterContext:
    """Explicit rasterizer context: a resolved backend and the device its G-buffers live on.

    backend: AUTO | NUMBA | NVDIFFRAST (``.backend`` holds the resolved one).
    device: "cpu", "cuda[:n]" or "auto" (CUDA when available). The numba backend rasterizes on
        the CPU and moves the G-buffer to ``device``. NVDIFFRAST on a CPU device uses "cuda".
    cull_closed: numba backend only: skip back faces of closed meshes (``closed_orientation``),
        which are hidden when the camera is outside the mesh (always so for orbit cameras, which
        stay outside the unit sphere). The G-buffer is the same, the work about halves.
    """

    def __init__(self, backend: RasterBackend | str = RasterBackend.AUTO, device="cpu", cull_closed: bool = True):
        dev = resolve_device(device)
        self.cull_closed = cull_closed
        self.backend = resolve_backend(backend, dev)
        self._nv = None
        if self.backend is RasterBackend.NVDIFFRAST:
            if dev.type != "cuda":
                dev = resolve_device("cuda") if torch.cuda.is_available() else dev
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
            "cull": closed_orientation(pos, mesh.faces) if self.cull_closed else 0,
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

    o = rasterize_numba(clip, t["faces_np"], H, W, t["uvs_np"], t["normals_np"], cull=t["cull"])
    g = {k: torch.from_numpy(v).to(ctx.device) for k, v in o.items()}
    tri_id = g.pop("tri_id").long()
    return GBuffer(mask=tri_id >= 0, tri_id=tri_id, **g)
