"""Step-dependent parts of guidance: stage, timestep range and sampling, w(t), prompts.

Everything here is a pure function of (config, step, angles, generator), so a resumed
job lands in the same stage, range and prompts as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.guidance.config import GuidanceConfig
from engine.guidance.method import GuidanceMethod

STAGE_SDS = 1
STAGE_BRIDGE = 2


def stage_for_step(config: GuidanceConfig, step: int) -> int:
    """1 (SDS warm-up) or 2 (calibrated bridge) for the 0-based ``step``.

    Bridge: stage 2 for ``step >= stage_two_start``; in refine mode (edit_source_prompt
    set) stage 2 from step 0. SDS and NFSD are always stage 1.
    """
    if config.method is not GuidanceMethod.BRIDGE:
        return STAGE_SDS
    if config.is_edit or step >= config.stage_two_start:
        return STAGE_BRIDGE
    return STAGE_SDS


def timestep_range(config: GuidanceConfig, step: int, num_train_timesteps: int) -> tuple[int, int]:
    """Inclusive integer range [lo, hi] of timesteps for ``step``.

    lo = round(t_min * T), hi = round(t_max * T) (t_max annealed to ``anneal_t_max``
    from ``anneal_after_step`` on), clamped to [0, T - 1].
    """
    t_max = config.t_max
    if config.anneal_after_step is not None and step >= config.anneal_after_step:
        t_max = config.anneal_t_max
    lo = max(0, min(num_train_timesteps - 1, round(config.t_min * num_train_timesteps)))
    hi = max(lo, min(num_train_timesteps - 1, round(t_max * num_train_timesteps)))
    return lo, hi


def sample_timestep(lo: int, hi: int, generator: torch.Generator) -> int:
    """One integer timestep uniform in [lo, hi] (shared by the step's views)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=generator, device=generator.device).item())


def weight(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w(t) = 1 - alpha-bar_t; t (N,) int64 -> (N, 1, 1, 1) float32 (broadcasts over latents)."""
    return (1.0 - alphas_cumprod.to(torch.float32)[t.long()]).reshape(-1, 1, 1, 1)


def view_suffix(config: GuidanceConfig, azimuth_deg: float, elevation_deg: float) -> str:
    """DreamFusion-style view suffix from camera angles (azimuth 0 = front, 180 = back).

    overhead if elevation > overhead_elevation; else front if |azimuth| <= front_half_angle;
    back if |azimuth| >= 180 - back_half_angle; otherwise side. Azimuth is wrapped to
    (-180, 180]. Empty when view-dependent prompts are off.
    """
    if not config.view_dependent_prompts:
        return ""
    if elevation_deg > config.overhead_elevation:
        return ", overhead view"
    az = (float(azimuth_deg) + 180.0) % 360.0 - 180.0
    if az == -180.0:
        az = 180.0
    if abs(az) <= config.front_half_angle:
        return ", front view"
    if abs(az) >= 180.0 - config.back_half_angle:
        return ", back view"
    return ", side view"


@dataclass(frozen=True)
class StagePrompts:
    """The prompt strings one view needs in one stage.

    stage 1 (SDS/NFSD): ``cond`` = prompt, ``uncond`` = "" (and ``negative`` for NFSD).
    stage 2 (Bridge): ``target`` = prompt + target modifier, ``source`` = prompt + source
    modifier (refine mode: target = the edit prompt, source = the current-texture description).
    """

    cond: str | None = None
    uncond: str | None = None
    negative: str | None = None
    target: str | None = None
    source: str | None = None


def stage_prompts(config: GuidanceConfig, prompt: str, stage: int, suffix: str = "") -> StagePrompts:
    """Prompts for ``stage``; the view ``suffix`` goes after the modifiers."""
    if stage == STAGE_BRIDGE:
        if config.is_edit:
            return StagePrompts(target=prompt + suffix, source=str(config.edit_source_prompt) + suffix)
        return StagePrompts(
            target=prompt + config.target_modifier + suffix,
            source=prompt + config.source_modifier + suffix,
        )
    if config.method is GuidanceMethod.NFSD:
        return StagePrompts(cond=prompt + suffix, uncond="", negative=config.nfsd_negative_prompt)
    return StagePrompts(cond=prompt + suffix, uncond="")
