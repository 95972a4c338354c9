"""The G-buffer both backends produce, and the shared attribute pass that fills it.

Backends deliver only (triangle id, perspective-correct barycentrics); everything else
(UV, depth, world normal, analytic screen-space UV derivatives) is computed here from the
mesh and the clip-space positions, so the two backends agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class GBuffer:
    """Per-pixel surface data for B views at H x W (row 0 = top of the image).

    mask: (B,H,W) bool, a triangle covers the pixel centre.
    tri_id: (B,H,W) int64, triangle index, -1 = background.
    bary: (B,H,W,3) float32, perspective-correct barycentrics of the triangle's corners.
    uv: (B,H,W,2) float32, interpolated per-corner UV (origin bottom-left).
    depth: (B,H,W) float32, view-space depth (distance along the view axis; 0 on background).
    normal: (B,H,W,3) float32, geometric face normal in the normalized world frame
        (counter-clockwise winding = front), 0 on background.
    uv_da: (B,H,W,4) float32, screen-space UV derivatives per pixel step
        (du/dx, dv/dx, du/dy, dv/dy), x = column, y = row; 0 on background. Texel footprint
        for a T x T texture: ``uv_footprint(T)``.
    """

    mask: torch.Tensor
    tri_id: torch.Tensor
    bary: torch.Tensor
    uv: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    uv_da: torch.Tensor

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.mask.shape[1]), int(self.mask.shape[2])

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def to(self, device) -> "GBuffer":
        return GBuffer(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def select(self, idx) -> "GBuffer":
        """Views at ``idx`` (int, slice, list or tensor); always batched."""
        if isinstance(idx, int):
            idx = [idx]
        if isinstance(idx, (list, tuple)):
            idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        return GBuffer(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def uv_footprint(self, texture_size: int | tuple[int, int]) -> torch.Tensor:
        """(B,H,W) float32: the larger screen-axis footprint of a pixel, in texels."""
        th, tw = (texture_size, texture_size) if isinstance(texture_size, int) else texture_size
        d = self.uv_da
        fx = torch.sqrt((d[..., 0] * tw) ** 2 + (d[..., 1] * th) ** 2)
        fy = torch.sqrt((d[..., 2] * tw) ** 2 + (d[..., 3] * th) ** 2)
        return torch.maximum(fx, fy)

    @staticmethod
    def cat(parts: list["GBuffer"]) -> "GBuffer":
        return GBuffer(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(GBuffer)})


def face_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,3),(F,3) -> (F,3) float32 unit normals (zero for degenerate faces)."""
    p = positions.astype(np.float64)
    n = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(ln > 0, ln, 1.0)).astype(np.float32)


def build_gbuffer(
    tri_id: torch.Tensor,
    bary: torch.Tensor,
    clip: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    normals: torch.Tensor,
) -> GBuffer:
    """Fill a G-buffer from rasterizer output.

    tri_id (B,H,W) int (-1 background), bary (B,H,W,3) float, clip (B,V,4) clip-space positions,
    faces (F,3) int64, uvs (F,3,2) float32, normals (F,3) float32; all on one device.
    """
    B, H, W = tri_id.shape
    dev = tri_id.device
    tri_id = tri_id.long()
    mask = tri_id >= 0
    uv = torch.zeros(B, H, W, 2, device=dev)
    depth = torch.zeros(B, H, W, device=dev)
    normal = torch.zeros(B, H, W, 3, device=dev)
    uv_da = torch.zeros(B, H, W, 4, device=dev)
    bary = torch.where(mask[..., None], bary.float(), torch.zeros((), device=dev))
    ys, xs = torch.meshgrid(
        1.0 - 2.0 * (torch.arange(H, device=dev, dtype=torch.float64) + 0.5) / H,
        2.0 * (torch.arange(W, device=dev, dtype=torch.float64) + 0.5) / W - 1.0,
        indexing="ij",
    )
    for b in range(B):
        m = mask[b]
        t = tri_id[b][m]  # (N,)
        bc = bary[b][m].double()  # (N,3)
        tuv = uvs[t].double()  # (N,3,2)
        uv[b][m] = (bc[..., None] * tuv).sum(1).float()
        normal[b][m] = normals[t]
        c = clip[b].double()[faces[t]]  # (N,3,4)
        depth[b][m] = (bc * c[..., 3]).sum(1).float()
        # homogeneous 2D barycentrics: E_i(x,y) = r_i . (x, y, 1) with r_i = c_j x c_k over (X, Y, W)
        cols = c[..., [0, 1, 3]]
        r = torch.stack(
            [
                torch.linalg.cross(cols[:, 1], cols[:, 2]),
                torch.linalg.cross(cols[:, 2], cols[:, 0]),
                torch.linalg.cross(cols[:, 0], cols[:, 1]),
            ],
            dim=1,
        )  # (N,3,3)
        pix = torch.stack([xs[m], ys[m], torch.ones_like(xs[m])], dim=1)  # (N,3)
        s = (r * pix[:, None, :]).sum(dim=(1, 2))  # (N,)
        s = torch.where(s.abs() > 1e-30, s, torch.full_like(s, 1e-30))
        ax, ay = r[..., 0], r[..., 1]  # dE_i/dx_ndc, dE_i/dy_ndc (N,3)
        dbx = (ax - bc * ax.sum(1, keepdim=True)) / s[:, None] * (2.0 / W)
        dby = (ay - bc * ay.sum(1, keepdim=True)) / s[:, None] * (-2.0 / H)
        duv_dx = (dbx[..., None] * tuv).sum(1)
        duv_dy = (dby[..., None] * tuv).sum(1)
        uv_da[b][m] = torch.cat([duv_dx, duv_dy], dim=1).float()
    return GBuffer(mask=mask, tri_id=tri_id, bary=bary, uv=uv, depth=depth, normal=normal, uv_da=uv_da)
