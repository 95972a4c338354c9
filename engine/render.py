"""Differentiable texture rendering from cached G-buffers.

``render_texture`` samples a texture tensor (Ht, Wt, C) at every covered pixel of a G-buffer
and composites a background. The gradient flows to the texture only (the G-buffer is
constant). Sampling is a gather of precomputed taps (indices + weights), so a cached view
costs one gather forward and one scatter-add backward:

- BILINEAR: 4 taps in the full-resolution texture.
- MIP (default): trilinear, 8 taps in a box-filtered mip pyramid; the level comes from the
  analytic screen-space UV derivatives (``GBuffer.uv_da``), so minified views do not alias.
- SUPERSAMPLE: bilinear at a G-buffer rasterized ``supersample`` times larger, then box-averaged
  (also anti-aliases silhouettes). Rasterize at ``raster_resolution(config, size)``.

Texture addressing: u right, v up, origin bottom-left; texture row 0 = top = v 1; texel (r, c)
has its centre at u = (c + 0.5) / Wt, v = 1 - (r + 0.5) / Ht; UVs outside [0, 1] repeat.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F

from engine.cameras import Cameras
from engine.errors import SpecError
from engine.mesh import Mesh
from engine.raster import GBuffer, RasterContext, rasterize
from engine.raster.kernel_lock import NUMBA_LOCK


class FilterMode(str, Enum):
    """Texture filtering: BILINEAR (no anti-aliasing), MIP (trilinear mip-mapping), SUPERSAMPLE."""

    BILINEAR = "bilinear"
    MIP = "mip"
    SUPERSAMPLE = "supersample"


class BackgroundMode(str, Enum):
    """SOLID: ``background_color``; RANDOM: one uniform random colour per view (DreamFusion-style)."""

    SOLID = "solid"
    RANDOM = "random"


@dataclass(frozen=True)
class RenderConfig:
    """Texture rendering options.

    filter: texture filtering mode (MIP by default; the paper renders 2D images and leaves it open).
    supersample: factor for SUPERSAMPLE (G-buffers must be rasterized that many times larger).
    max_mip_levels: cap on the pyramid depth for MIP (None = down to 1 texel).
    lod_bias: added to the mip level (log2 texels); > 0 blurs, < 0 sharpens.
    background: SOLID or RANDOM.
    background_color: the SOLID colour (in the texture's value range; padded/truncated to C).
    """

    filter: FilterMode = FilterMode.MIP
    supersample: int = 2
    max_mip_levels: int | None = None
    lod_bias: float = 0.0
    background: BackgroundMode = BackgroundMode.SOLID
    background_color: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "filter", FilterMode(self.filter))
            object.__setattr__(self, "background", BackgroundMode(self.background))
        except ValueError as exc:
            raise SpecError(f"{exc}; filter: bilinear | mip | supersample, background: solid | random") from None
        if not (1 <= int(self.supersample) <= 8):
            raise SpecError(f"supersample={self.supersample} is out of range; allowed: 1..8")
        if self.max_mip_levels is not None and int(self.max_mip_levels) < 1:
            raise SpecError(f"max_mip_levels={self.max_mip_levels} must be >= 1 (or None for a full pyramid)")
        if len(self.background_color) < 1:
            raise SpecError("background_color needs at least one value")


def raster_resolution(config: RenderConfig, size: int) -> int:
    """G-buffer resolution to rasterize for output images of ``size`` pixels."""
    return size * config.supersample if config.filter is FilterMode.SUPERSAMPLE else size


@dataclass(frozen=True, eq=False)
class LookupPlan:
    """Precomputed taps for one G-buffer and texture size.

    pixels: (N,) int64 flat indices into B*H*W of covered pixels.
    index: (N, K) int32 rows of the flattened (mip-stacked) texture; weight: (N, K) float32.
    levels: number of mip levels the index refers to (1 = the texture itself).
    """

    pixels: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor
    levels: int
    texture_hw: tuple[int, int]


def _mip_sizes(h: int, w: int, max_levels: int | None) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    while (max_levels is None or len(sizes) < max_levels) and sizes[-1][0] > 1 and sizes[-1][1] > 1:
        sh, sw = sizes[-1]
        if sh % 2 or sw % 2:
            break
        sizes.append((sh // 2, sw // 2))
    return sizes


def _bilinear_taps(uv: torch.Tensor, h: torch.Tensor, w: torch.Tensor, offset: torch.Tensor):
    """uv (N,2); per-pixel level size h, w and flat offset (N,) -> index (N,4), weight (N,4)."""
    x = uv[:, 0].double() * w - 0.5
    y = (1.0 - uv[:, 1].double()) * h - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = (x - x0).float()
    fy = (y - y0).float()
    x0 = x0.long()
    y0 = y0.long()
    hl, wl = h.long(), w.long()
    xa, xb = torch.remainder(x0, wl), torch.remainder(x0 + 1, wl)
    ya, yb = torch.remainder(y0, hl), torch.remainder(y0 + 1, hl)
    idx = (torch.stack([ya * wl + xa, ya * wl + xb, yb * wl + xa, yb * wl + xb], dim=1) + offset[:, None]).int()
    wt = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)
    return idx, wt


def lookup_plan(gbuffer: GBuffer, texture_hw: tuple[int, int], config: RenderConfig = RenderConfig()) -> LookupPlan:
    """Taps for sampling a texture of size ``texture_hw`` at every covered pixel of ``gbuffer``."""
    th, tw = texture_hw
    mask = gbuffer.mask.reshape(-1)
    pixels = torch.nonzero(mask).squeeze(1)
    uv = gbuffer.uv.reshape(-1, 2)[pixels]
    dev = uv.device
    n = pixels.shape[0]
    if config.filter is not FilterMode.MIP:
        full = torch.full((n,), float(th), device=dev, dtype=torch.float64)
        idx, wt = _bilinear_taps(uv, full, torch.full_like(full, float(tw)), torch.zeros(n, dtype=torch.long, device=dev))
        return LookupPlan(pixels, idx, wt, 1, (th, tw))
    sizes = _mip_sizes(th, tw, config.max_mip_levels)
    nl = len(sizes)
    hs = torch.tensor([s[0] for s in sizes], device=dev, dtype=torch.float64)
    ws = torch.tensor([s[1] for s in sizes], device=dev, dtype=torch.float64)
    offs = torch.tensor([0] + [s[0] * s[1] for s in sizes][:-1], device=dev).cumsum(0)
    foot = gbuffer.uv_footprint((th, tw)).reshape(-1)[pixels]
    lod = torch.log2(foot.clamp_min(1e-8)) + config.lod_bias
    lod = lod.clamp(0.0, float(nl - 1))
    l0 = torch.floor(lod).long().clamp(max=nl - 1)
    l1 = (l0 + 1).clamp(max=nl - 1)
    f = (lod - l0.float())[:, None]
    i0, w0 = _bilinear_taps(uv, hs[l0], ws[l0], offs[l0])
    i1, w1 = _bilinear_taps(uv, hs[l1], ws[l1], offs[l1])
    return LookupPlan(pixels, torch.cat([i0, i1], 1), torch.cat([w0 * (1 - f), w1 * f], 1), nl, (th, tw))


def _use_numba(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


def _level_tables(hw: tuple[int, int], levels: int) -> tuple[np.ndarray, np.ndarray, int]:
    sizes = np.array(_mip_sizes(hw[0], hw[1], None)[:levels], dtype=np.int64)
    counts = sizes[:, 0] * sizes[:, 1]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return sizes, offsets, int(counts.sum())


class _NumbaMipRender(torch.autograd.Function):
    """CPU float32: image rows ``pixels`` = sum_k weight[:,k] * [texture, mip levels][index[:,k]],
    other rows = the background image. Gradient flows to the texture only.

    Forward builds the mip levels where the taps read (``level_regions``: the sample mesh's
    close-ups read 36% of the pyramid on average) and gathers; backward scatters in pixel order (deterministic) and
    pushes the level gradients down to the texture inside the same regions.
    """

    @staticmethod
    def forward(ctx, texture, pixels, index, weight, levels, background_rows):
        from engine.raster.numba_lookup import build_levels, gather_forward, level_regions

        sizes, offsets, rows = _level_tables(tuple(texture.shape[:2]), levels)
        c = texture.shape[2]
        tex = texture.detach().contiguous().numpy().reshape(-1, c)
        lo = np.empty((rows - tex.shape[0], c), dtype=np.float32)
        out = background_rows.detach().contiguous().clone()
        regions = None
        with NUMBA_LOCK:
            if levels > 1:  # only the part of the pyramid the taps read (level_regions)
                regions = level_regions(index.numpy(), sizes, offsets)
                build_levels(tex, sizes, offsets, lo, regions)
            gather_forward(tex, lo, pixels.numpy(), index.numpy(), weight.numpy(), out.numpy())
        ctx.save_for_backward(pixels, index, weight)
        ctx.meta = (sizes, offsets, rows, tuple(texture.shape), regions)
        return out

    @staticmethod
    def backward(ctx, grad):
        from engine.raster.numba_lookup import collapse_levels, gather_backward

        pixels, index, weight = ctx.saved_tensors
        sizes, offsets, rows, shape, regions = ctx.meta
        n0 = shape[0] * shape[1]
        g0 = np.zeros((n0, shape[2]), dtype=np.float32)
        glo = np.zeros((rows - n0, shape[2]), dtype=np.float32)
        with NUMBA_LOCK:
            gather_backward(grad.contiguous().numpy(), pixels.numpy(), index.numpy(), weight.numpy(), g0, glo)
            if len(sizes) > 1:
                collapse_levels(sizes, offsets, g0, glo, regions)
        return torch.from_numpy(g0).view(shape), None, None, None, None, None


def _torch_mip_gather(texture: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, levels: int) -> torch.Tensor:
    """Samples like ``_NumbaMipRender`` with torch ops (any device; autograd does the backward)."""
    c = texture.shape[-1]
    flats = [texture.reshape(-1, c)]
    cur = texture.permute(2, 0, 1)[None]
    for _ in range(levels - 1):
        cur = F.avg_pool2d(cur, 2)
        flats.append(cur[0].permute(1, 2, 0).reshape(-1, c))
    table = torch.cat(flats, 0) if len(flats) > 1 else flats[0]
    n, k = index.shape
    vals = table.index_select(0, index.reshape(-1)).view(n, k, c)
    return (vals * weight.to(table.dtype)[..., None]).sum(1)


def mip_gather(texture: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, levels: int) -> torch.Tensor:
    """texture (Ht,Wt,C), index/weight (N,K) from a ``LookupPlan`` -> (N,C) samples (torch ops)."""
    return _torch_mip_gather(texture, index, weight.to(texture.dtype), levels)


def _background(config: RenderConfig, b: int, c: int, background, generator, device, dtype) -> torch.Tensor:
    if background is not None:
        bg = torch.as_tensor(background, device=device, dtype=dtype)
        return bg.expand(b, c) if bg.dim() == 1 else bg.reshape(b, c)
    if config.background is BackgroundMode.RANDOM:
        return torch.rand(b, c, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    col = list(config.background_color)
    col = (col + col[-1:] * c)[:c]  # pad with the last value (e.g. extra PBR channels)
    return torch.tensor(col, device=device, dtype=dtype).expand(b, c)


def render_texture(
    texture: torch.Tensor,
    gbuffer: GBuffer,
    config: RenderConfig = RenderConfig(),
    background=None,
    plan: LookupPlan | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Render B views of a textured mesh.

    texture: (Ht, Wt, C) float (requires_grad ok), on the G-buffer's device.
    gbuffer: B views at H x W (for SUPERSAMPLE: H*s x W*s).
    background: None (use ``config``), (C,) or (B, C) colours.
    plan: taps from ``lookup_plan`` (computed here when None; pass one to reuse it).
    generator: CPU generator for RANDOM backgrounds.
    Returns images (B, C, H, W) in the texture's value range; gradient flows to ``texture`` only.
    """
    th, tw, _ = texture.shape
    b, h, w = gbuffer.mask.shape
    if plan is None or plan.texture_hw != (th, tw):
        plan = lookup_plan(gbuffer, (th, tw), config)
    return render_with_plan(texture, plan, (b, h, w), config, background, generator)


def render_with_plan(
    texture: torch.Tensor,
    plan: LookupPlan,
    shape: tuple[int, int, int],
    config: RenderConfig = RenderConfig(),
    background=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``render_texture`` from a plan alone; shape = the G-buffer's (B, H, W)."""
    b, h, w = shape
    c = texture.shape[-1]
    bg = _background(config, b, c, background, generator, texture.device, texture.dtype)  # (B, C)
    flat = bg[:, None, :].expand(b, h * w, c).reshape(b * h * w, c)
    if _use_numba(texture) and not flat.requires_grad:
        img = _NumbaMipRender.apply(texture, plan.pixels, plan.index, plan.weight, plan.levels, flat)
    else:
        vals = mip_gather(texture, plan.index, plan.weight, plan.levels)  # (N, C)
        img = flat.index_put((plan.pixels,), vals)
    img = img.view(b, h, w, c).permute(0, 3, 1, 2)
    if config.filter is FilterMode.SUPERSAMPLE and config.supersample > 1:
        if h % config.supersample or w % config.supersample:
            raise SpecError(
                f"SUPERSAMPLE x{config.supersample} needs a G-buffer size divisible by it, got {h}x{w}; "
                "rasterize at raster_resolution(config, size)"
            )
        img = F.avg_pool2d(img, config.supersample)
    return img


class ViewCache:
    """G-buffers (and lookup plans) precomputed for a fixed set of N views.

    ``build(ctx, mesh, cameras, resolution)``; ``gbuffer(indices)``; ``render(texture, indices, config)``.
    Lookup plans (about 70 bytes per covered pixel) are kept for the ``plan_cache_size`` most
    recently used (view, texture size, filter) keys; a missing one is recomputed (tens of ms).
    """

    def __init__(self, gbuffer: GBuffer, cameras: Cameras, plan_cache_size: int = 32):
        self._gbuffer = gbuffer
        self.cameras = cameras
        self.plan_cache_size = plan_cache_size
        self._plans: OrderedDict = OrderedDict()

    @classmethod
    def build(cls, ctx: RasterContext, mesh: Mesh, cameras: Cameras, resolution: int, chunk: int = 8) -> "ViewCache":
        parts = [rasterize(ctx, mesh, cameras.select(list(range(i, min(i + chunk, len(cameras))))), resolution)
                 for i in range(0, len(cameras), chunk)]
        return cls(GBuffer.cat(parts), cameras)

    def __len__(self) -> int:
        return self._gbuffer.batch

    def gbuffer(self, indices) -> GBuffer:
        return self._gbuffer.select(indices)

    def _plan(self, i: int, texture_hw: tuple[int, int], config: RenderConfig) -> LookupPlan:
        key = (i, texture_hw, config.filter, config.max_mip_levels, config.lod_bias)
        plan = self._plans.get(key)
        if plan is None:
            plan = lookup_plan(self._gbuffer.select([i]), texture_hw, config)
            self._plans[key] = plan
            while len(self._plans) > self.plan_cache_size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def render(self, texture: torch.Tensor, indices, config: RenderConfig = RenderConfig(), background=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Like ``render_texture`` on ``gbuffer(indices)``, reusing cached lookup plans."""
        idx = [indices] if isinstance(indices, int) else [int(i) for i in indices]
        hw = (int(texture.shape[0]), int(texture.shape[1]))
        plans = [self._plan(i, hw, config) for i in idx]
        h, w = self._gbuffer.resolution
        if len(plans) == 1:
            merged = plans[0]
        else:
            merged = LookupPlan(
                torch.cat([p.pixels + j * h * w for j, p in enumerate(plans)]),
                torch.cat([p.index for p in plans]),
                torch.cat([p.weight for p in plans]),
                plans[0].levels,
                hw,
            )
        return render_with_plan(texture, merged, (len(idx), h, w), config, background, generator)
