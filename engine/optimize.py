"""The texture optimization loop: render cached views, distil the prior's score, AdamW.

``optimize_texture`` reads top to bottom as one step of the method:

1. pick B views of the ``ViewCache`` (precomputed G-buffers of orbit views);
2. render the texture (sigmoid of free logits, so texel values stay in [0, 1]);
3. resize to the prior's resolution and encode to latents (gradients through the VAE);
4. the guidance gradient (SDS / NFSD / Bridge stage by step) w.r.t. the latents;
5. back-propagate with the surrogate ``sum(latents * grad)`` to the texture logits
   (masked to the refine region when one is given), then one AdamW step.

Randomness (views, t, noise, backgrounds) comes from one CPU ``torch.Generator``
seeded by the job, saved in every checkpoint, so resuming continues exactly.

The loop keeps only the mathematics: it starts from a texture or a ``Checkpoint`` (the
caller reads it) and hands its state to ``callbacks.on_checkpoint``; where checkpoints and
snapshots live is the job folder's business (``engine.jobfolder``, ``engine.jobrun``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
import numpy as np
import torch
import torch.nn.functional as F

from engine.callbacks import JobCallbacks, ProgressEvent
from engine.checkpoint import Checkpoint, capture_rng, restore_rng
from engine.errors import JobCancelled
from engine.guidance.config import GuidanceConfig
from engine.guidance.gradients import compute_guidance
from engine.guidance.schedule import stage_for_step
from engine.priors.base import DiffusionPrior
from engine.render import RenderConfig
from engine.views import ViewSource

PHASES = ("render", "encode", "guidance", "backward", "optimizer")


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of the loop.

    Fields:
        steps: total optimization steps (paper: 1000).
        learning_rate: AdamW learning rate on the texture logits (paper: 0.01).
        betas, eps: AdamW moments; (0.9, 0.99) and 1e-15 as in both of the authors' recipes
            (their 2D experiments and threestudio config), not torch's (0.9, 0.999), 1e-8.
        weight_decay: 0 (the paper's 2D recipe optimizes pixels; decay here would pull
            texels no view sees towards gray).
        views_per_step: B views rendered per step (4 on a GPU, 1 on a CPU by default upstream).
        checkpoint_every, preview_every: steps between checkpoints / preview callbacks.
        seed: seeds the loop's generator.
        profile: synchronize CUDA around phases so ``timings`` are exact (benchmarks).
        lr_final_fraction: the learning rate follows a half cosine from ``learning_rate`` at
            step 0 to ``learning_rate * lr_final_fraction`` at the last step; 1.0 = constant
            (both of the authors' recipes keep it constant). A function of the step, so a
            resumed job continues on the same schedule.
        fused: torch's fused AdamW kernel (the same update up to float rounding; not a paper
            choice). Measured on this 2-core CPU, one 3 x 1024 x 1024 texture: 38 ms a step
            fused vs 62 ms foreach vs 75 ms for-loop (each including a 1024² randn, under load).
    """

    steps: int = 1000
    learning_rate: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15
    weight_decay: float = 0.0
    views_per_step: int = 1
    checkpoint_every: int = 50
    preview_every: int = 10
    seed: int = 0
    profile: bool = False
    fused: bool = True
    lr_final_fraction: float = 1.0

    def lr_at(self, step: int) -> float:
        """The learning rate of 0-based ``step`` (the half-cosine schedule above)."""
        if self.lr_final_fraction == 1.0 or self.steps <= 1:
            return self.learning_rate
        c = 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps - 1) / (self.steps - 1)))
        return self.learning_rate * (self.lr_final_fraction + (1.0 - self.lr_final_fraction) * c)


@dataclass
class OptimizeResult:
    """texture (H, W, 3) float32 in [0, 1], row 0 = top (v = 1); timings: seconds per phase."""

    texture: np.ndarray
    steps_done: int
    elapsed_s: float
    timings: dict[str, float] = field(default_factory=dict)


def texture_to_logits(texture: torch.Tensor) -> torch.Tensor:
    """Inverse of the sigmoid parameterization (values clamped to [1e-4, 1 - 1e-4])."""
    return torch.logit(texture.clamp(1e-4, 1 - 1e-4))


def gray_texture(size: int) -> torch.Tensor:
    """The default start: a (size, size, 3) mid-gray texture."""
    return torch.full((size, size, 3), 0.5)


def optimize_texture(
    *,
    prior: DiffusionPrior,
    views: ViewSource,
    guidance: GuidanceConfig,
    config: OptimizeConfig,
    prompt: str,
    render_config: RenderConfig = RenderConfig(),
    init_texture: torch.Tensor | None = None,
    start: Checkpoint | None = None,
    texel_mask: torch.Tensor | None = None,
    callbacks: JobCallbacks | None = None,
) -> OptimizeResult:
    """Optimize a texture for ``prompt``.

    init_texture: (H, W, 3) float in [0, 1], row 0 = top (``gray_texture(size)`` for none).
    start: continue from this checkpoint (its texture, optimizer, step and RNG states);
        ``init_texture`` is then ignored. One of the two is required.
    texel_mask: (H, W) bool; when given only these texels may change (refine a face selection).
    Checkpoints go to ``callbacks.on_checkpoint``. Raises ``JobCancelled`` after handing one
    over when ``callbacks.should_cancel()`` is true.
    """
    cb = callbacks or JobCallbacks()
    device = prior.device
    gen = torch.Generator(device="cpu").manual_seed(int(config.seed))
    if start is None and init_texture is None:
        raise ValueError("optimize_texture needs init_texture (e.g. gray_texture(512)) or a start checkpoint")
    first = start.logits if start is not None else texture_to_logits(init_texture.float())
    logits = torch.nn.Parameter(first.detach().clone().float().to(device))
    opt = torch.optim.AdamW([logits], lr=config.learning_rate, betas=config.betas, eps=config.eps,
                            weight_decay=config.weight_decay, fused=config.fused or None)
    mask = None if texel_mask is None else texel_mask.to(device=device, dtype=torch.float32)[..., None]
    step, elapsed = 0, 0.0
    if start is not None:
        opt.load_state_dict(start.optimizer)
        restore_rng(start.rng, gen)
        step, elapsed = start.step, start.elapsed_s

    def checkpoint() -> None:
        if cb.on_checkpoint is not None:
            cb.on_checkpoint(Checkpoint(step, logits.detach(), opt.state_dict(), capture_rng(gen), {}, elapsed))

    timings = {k: 0.0 for k in PHASES}
    clock = _Clock(timings, device if config.profile else None)
    stage = None
    started, start_step = time.perf_counter(), step
    while step < config.steps:
        if cb.should_cancel is not None and cb.should_cancel():
            checkpoint()
            raise JobCancelled(f"cancelled at step {step}/{config.steps}; checkpoint written, resume to continue")
        t0 = time.perf_counter()
        new_stage = stage_for_step(guidance, step)
        if new_stage != stage:
            stage = new_stage
            if cb.on_stage is not None:
                cb.on_stage(stage)

        # 1-2. views and render
        with clock("render"):
            batch = views.draw(config.views_per_step, gen)
            cams = batch.cameras
            background = torch.rand(len(cams), 3, generator=gen).to(device)  # random per view (DreamFusion)
            texture = torch.sigmoid(logits)
            images = batch.render(texture, render_config, background=background)
        # 3. resize and encode
        with clock("encode"):
            if images.shape[-1] != prior.resolution or images.shape[-2] != prior.resolution:
                images = F.interpolate(images, size=(prior.resolution, prior.resolution), mode="bilinear",
                                       align_corners=False, antialias=images.shape[-1] > prior.resolution)
            latents = prior.encode_images(images)
        # 4. guidance gradient
        with clock("guidance"):  # with a ControlNet: conditioning images from the views' G-buffers
            control = prior.conditioning(batch.gbuffer(), cams) if hasattr(prior, "conditioning") else None
            res = compute_guidance(guidance, prior, prompt, latents, step, cams.azimuth_deg.tolist(),
                                   cams.elevation_deg.tolist(), gen, control=control)
        # 5. back-propagate and step
        with clock("backward"):
            (latents * res.grad.to(latents.dtype)).sum().backward()
            if mask is not None:
                logits.grad.mul_(mask)
            grad_norm = float(logits.grad.norm())
        with clock("optimizer"):
            for group in opt.param_groups:
                group["lr"] = config.lr_at(step)
            opt.step()
            opt.zero_grad(set_to_none=True)
        step += 1
        elapsed += time.perf_counter() - t0

        if cb.on_progress is not None:
            rate = (step - start_step) / max(time.perf_counter() - started, 1e-9)
            cb.on_progress(ProgressEvent(step=step, total_steps=config.steps, stage=res.stage, t=res.t, loss=res.loss,
                                         grad_norm=grad_norm if math.isfinite(grad_norm) else 0.0,
                                         it_per_s=rate, eta_s=(config.steps - step) / max(rate, 1e-9)))
        if cb.on_preview is not None and (step % config.preview_every == 0 or step == config.steps):
            cb.on_preview(step, _to_numpy(logits))
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()
    return OptimizeResult(texture=_to_numpy(logits), steps_done=step, elapsed_s=elapsed, timings=timings)


def _to_numpy(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits.detach()).float().cpu().numpy().astype(np.float32)


class _Clock:
    """Accumulates wall time per phase (CUDA-synchronized when ``device`` is given)."""

    def __init__(self, timings: dict[str, float], device: torch.device | None):
        self.timings, self.sync = timings, device is not None and device.type == "cuda"

    def __call__(self, phase: str) -> "_Phase":
        return _Phase(self, phase)


class _Phase:
    def __init__(self, clock: _Clock, phase: str):
        self.clock, self.phase = clock, phase

    def __enter__(self):
        if self.clock.sync:
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        if self.clock.sync:
            torch.cuda.synchronize()
        self.clock.timings[self.phase] += time.perf_counter() - self.t0
        return False
