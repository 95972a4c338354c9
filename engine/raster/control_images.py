"""ControlNet conditioning images from a G-buffer: inverse depth and camera-space normals.

Both come from what every rasterized view already holds (``GBuffer.depth``, ``GBuffer.normal``
and the view's camera), so a step's conditioning costs no extra rasterization. The encodings
are the ones the depth and normal ControlNets were trained on (docs/conventions.md,
"ControlNet conditioning images"):

- ``ControlKind.DEPTH``: MiDaS-style relative inverse depth, normalised per view: the nearest
  visible point is 1, the farthest ``ControlImageConfig.depth_floor``, background 0; grey
  (the value in all three channels).
- ``ControlKind.NORMAL``: camera-space unit normals turned to face the camera, encoded as
  ScanNet / NormalBae (ControlNet 1.1 ``normalbae``) do: ``rgb = (-n_x, n_y, n_z) / 2 + 0.5``
  in the OpenGL camera frame (+X right, +Y up, +Z towards the viewer), i.e. red = facing
  left, green = facing up, blue = facing the viewer; a surface seen face-on is
  (0.5, 0.5, 1.0). Background 0 (NormalBae's data loaders treat black as "no normal").

Images are ``(B, 3, H, W)`` float32 in [0, 1], row 0 = top, as the ControlNet's
``controlnet_cond`` (diffusers feeds it un-normalised [0, 1] images).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from engine.raster.gbuffer import GBuffer


class ControlKind(str, Enum):
    """What a ControlNet is conditioned on (job field ``control``)."""

    DEPTH = "depth"
    NORMAL = "normal"


@dataclass(frozen=True)
class ControlImageConfig:
    """How conditioning images are encoded.

    Fields:
        depth_floor: value of the farthest visible point of a view in the depth image. MiDaS
            maps the farthest scene point to 0, which in a photo is the background; a rendered
            object floats on an empty background (0 here), so its far side stays above it.
        min_relative_range: a view whose inverse-depth range is below this fraction of its
            largest inverse depth (a plane seen face-on) is drawn at 1 everywhere it is covered.
    """

    depth_floor: float = 0.2
    min_relative_range: float = 1e-4


def depth_control_image(gbuffer: GBuffer, config: ControlImageConfig = ControlImageConfig()) -> torch.Tensor:
    """(B, 1, H, W) float32: per-view normalised inverse depth (1 near, ``depth_floor`` far, 0 background).

    gbuffer.depth (B, H, W) view depth (> 0 where gbuffer.mask (B, H, W) is set).
    """
    mask = gbuffer.mask
    disp = torch.where(mask, 1.0 / gbuffer.depth.clamp_min(1e-12), torch.zeros((), device=mask.device))
    big = torch.finfo(torch.float32).max
    hi = disp.flatten(1).amax(1).reshape(-1, 1, 1)
    lo = torch.where(mask, disp, torch.full_like(disp, big)).flatten(1).amin(1).reshape(-1, 1, 1)
    span = hi - lo
    flat = span <= config.min_relative_range * hi
    rel = torch.where(flat, torch.ones_like(disp), (disp - lo) / torch.where(flat, torch.ones_like(span), span))
    value = config.depth_floor + (1.0 - config.depth_floor) * rel.clamp(0.0, 1.0)
    return torch.where(mask, value, torch.zeros_like(value)).unsqueeze(1).float()


def camera_normals(gbuffer: GBuffer, view: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) float32 unit normals in the OpenGL camera frame, facing the camera; 0 on background.

    gbuffer.normal (B, H, W, 3) world normals; view (B, 4, 4) world -> camera; proj (B, 4, 4)
    the OpenGL perspective matrix (used for each pixel's viewing ray, to turn back faces round).
    """
    dev = gbuffer.device
    rot = view[:, :3, :3].to(dev, torch.float32)  # orthonormal: normals transform like directions
    n = torch.einsum("bij,bhwj->bhwi", rot, gbuffer.normal.float())
    b, h, w = gbuffer.mask.shape
    ys = 1.0 - 2.0 * (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
    xs = 2.0 * (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w - 1.0
    p = proj.to(dev, torch.float32)
    rx = xs.reshape(1, 1, w) / p[:, 0, 0].reshape(-1, 1, 1)
    ry = ys.reshape(1, h, 1) / p[:, 1, 1].reshape(-1, 1, 1)
    ray = torch.stack([rx.expand(b, h, w), ry.expand(b, h, w), -torch.ones(b, h, w, device=dev)], dim=-1)
    away = (n * ray).sum(-1, keepdim=True) > 0  # a back face (open meshes): show its camera side
    n = torch.where(away, -n, n)
    n = F.normalize(n, dim=-1, eps=1e-12)
    return torch.where(gbuffer.mask[..., None], n, torch.zeros_like(n))


def normal_control_image(gbuffer: GBuffer, view: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float32: ``rgb = (-n_x, n_y, n_z) / 2 + 0.5`` of ``camera_normals``; 0 on background."""
    n = camera_normals(gbuffer, view, proj)
    rgb = torch.stack([-n[..., 0], n[..., 1], n[..., 2]], dim=-1) * 0.5 + 0.5
    rgb = torch.where(gbuffer.mask[..., None], rgb, torch.zeros_like(rgb))
    return rgb.permute(0, 3, 1, 2).contiguous()


def control_images(kind: ControlKind, gbuffer: GBuffer, view: torch.Tensor, proj: torch.Tensor, size: int,
                   config: ControlImageConfig = ControlImageConfig()) -> torch.Tensor:
    """(B, 3, size, size) float32 in [0, 1]: the conditioning images of ``kind`` for B views.

    gbuffer at (H, W) (the render size); view, proj (B, 4, 4) the views' cameras. Resized to
    ``size`` (the prior's image resolution) bilinearly, antialiased when shrinking.
    """
    kind = ControlKind(kind)
    if kind is ControlKind.DEPTH:
        img = depth_control_image(gbuffer, config).expand(-1, 3, -1, -1)
    else:
        img = normal_control_image(gbuffer, view, proj)
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=img.shape[-1] > size)
    return img.clamp(0.0, 1.0).contiguous()
