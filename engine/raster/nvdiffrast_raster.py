"""CUDA rasterizer through nvdiffrast (optional; NVIDIA Source Code License, non-commercial).

Install with ``pip install "texbridge[cuda]"`` (the ``diffrp-nvdiffrast`` distribution, which
provides ``nvdiffrast.torch``). Output matches the numba backend: row 0 = top of the image
(nvdiffrast's own images are bottom-up, so rows are flipped here), pixel centres at
(x + 0.5, y + 0.5), triangle id -1 on background, perspective-correct barycentrics.
"""

from __future__ import annotations

import torch

from engine.errors import BackendUnavailableError, Fix

#: The fix when nvdiffrast cannot run (``{field}``: the front end's name for the backend setting).
INSTALL_HINT = (
    'install it with: pip install "texbridge[cuda]" (diffrp-nvdiffrast; NVIDIA Source Code License, '
    "non-commercial use only), or use {field} numba"
)


def nvdiffrast_status() -> tuple[bool, str]:
    """(usable, reason): nvdiffrast imports and CUDA is present."""
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build
        return False, f"nvdiffrast is not installed ({type(exc).__name__})"
    if not torch.cuda.is_available():
        return False, "nvdiffrast is installed but CUDA is not available"
    return True, "ok"


def pad_viewport(clip: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
    """The CUDA rasterizer works on 8x8 tiles: remap clip positions (B,V,4) so that an H8 x W8
    viewport (multiples of 8) holds the requested H x W image in its first H rows (counted
    bottom-up, as nvdiffrast does) and first W columns. Returns (clip', H8, W8)."""
    H8, W8 = -(-H // 8) * 8, -(-W // 8) * 8
    if (H8, W8) == (H, W):
        return clip, H, W
    w = clip[..., 3]
    out = clip.clone()
    out[..., 0] = (clip[..., 0] + w) * (W / W8) - w
    out[..., 1] = (clip[..., 1] + w) * (H / H8) - w
    return out, H8, W8


class NvdiffrastRasterizer:
    """Holds one ``RasterizeCudaContext`` for a CUDA device."""

    def __init__(self, device: torch.device):
        ok, reason = nvdiffrast_status()
        if not ok:
            raise BackendUnavailableError(f"the nvdiffrast rasterizer is unavailable: {reason}", kind="nvdiffrast_unavailable",
                                          fix=Fix("backend", INSTALL_HINT))
        import nvdiffrast.torch as dr

        self._dr = dr
        self.device = device
        self.glctx = dr.RasterizeCudaContext(device=device)

    def __call__(self, clip: torch.Tensor, faces: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """clip (B,V,4) float, faces (F,3) int -> tri_id (B,H,W) int64 (-1 background), bary (B,H,W,3) float32."""
        pos, H8, W8 = pad_viewport(clip.to(self.device, torch.float64), H, W)
        pos = pos.to(torch.float32).contiguous()
        tri = faces.to(self.device, torch.int32).contiguous()
        rast, _ = self._dr.rasterize(self.glctx, pos, tri, resolution=[H8, W8], grad_db=False)
        rast = rast[:, :H, :W]
        rast = torch.flip(rast, dims=[1])  # nvdiffrast row 0 = bottom (y = -1); ours row 0 = top
        u, v = rast[..., 0], rast[..., 1]
        tri_id = rast[..., 3].round().long() - 1
        bary = torch.stack([u, v, 1.0 - u - v], dim=-1)
        return tri_id, bary
