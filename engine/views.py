"""Where the loop's views come from: a fixed cache of orbit views, or fresh close-ups.

Both implement ``draw(n, generator) -> ViewBatch``, so the loop renders whatever it is
handed (explicit composition, as with the prior):

- ``CachedViews``: the G-buffers of N fixed orbit views, precomputed once (``ViewCache``);
  each step picks n of them (``torch.randint`` on the loop's generator).
- ``CloseupViews``: n new close-up cameras per step (``closeup_cameras``), rasterized on the
  spot. At the prior's small render sizes that costs about 2.5 ms a view on a CPU, and the
  surface is covered everywhere, where a cache of <= 64 close-ups leaves holes.

Every random draw comes from the generator passed in, so a resumed job sees the same views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from engine.cameras import Cameras, CloseupConfig, Surface, closeup_cameras
from engine.mesh import Mesh
from engine.raster import RasterContext, rasterize
from engine.raster.gbuffer import GBuffer
from engine.render import RenderConfig, ViewCache, lookup_plan, render_with_plan


@dataclass(frozen=True, eq=False)
class ViewBatch:
    """n views ready to render: their cameras, a render function and their G-buffer.

    ``render(texture, config, background)``: texture (Ht, Wt, C) -> images (n, C, R, R).
    ``gbuffer()``: the views' ``GBuffer`` at (R, R), already computed (cached or just
    rasterized), e.g. for ControlNet conditioning images (``engine.raster.control_images``).
    """

    cameras: Cameras
    _render: object
    _gbuffer: object

    def render(self, texture: torch.Tensor, config: RenderConfig, background=None) -> torch.Tensor:
        return self._render(texture, config, background)

    def gbuffer(self) -> GBuffer:
        return self._gbuffer()


class ViewSource(Protocol):
    """Anything the loop can draw views from."""

    resolution: int

    def draw(self, n: int, generator: torch.Generator) -> ViewBatch:
        """n views; all randomness from ``generator``."""
        ...


class CachedViews:
    """n of the fixed views of a ``ViewCache`` per draw (uniform, with replacement)."""

    def __init__(self, cache: ViewCache):
        self.cache = cache
        self.resolution = cache.gbuffer([0]).resolution[0]

    def __len__(self) -> int:
        return len(self.cache)

    def draw(self, n: int, generator: torch.Generator) -> ViewBatch:
        idx = torch.randint(0, len(self.cache), (n,), generator=generator).tolist()
        return ViewBatch(self.cache.cameras.select(idx),
                         lambda tex, cfg, bg: self.cache.render(tex, idx, cfg, background=bg),
                         lambda: self.cache.gbuffer(idx))


class CloseupViews:
    """Fresh close-up views of ``mesh`` every draw (``CloseupConfig``), rasterized at ``resolution``."""

    def __init__(self, ctx: RasterContext, mesh: Mesh, config: CloseupConfig, resolution: int):
        self.ctx, self.mesh, self.config, self.resolution = ctx, mesh, config, int(resolution)
        self._surface = Surface.of(mesh.normalized_positions(), mesh.faces, mesh.uvs)  # once, not every step

    def draw(self, n: int, generator: torch.Generator) -> ViewBatch:
        cams = closeup_cameras(self._surface, self.config, n, generator)
        gbuffer = rasterize(self.ctx, self.mesh, cams, self.resolution)
        shape = (n, self.resolution, self.resolution)

        def render(texture: torch.Tensor, config: RenderConfig, background=None) -> torch.Tensor:
            plan = lookup_plan(gbuffer, (int(texture.shape[0]), int(texture.shape[1])), config)
            return render_with_plan(texture, plan, shape, config, background)

        return ViewBatch(cams, render, lambda: gbuffer)
