"""The latent gradients of SDS, NFSD and Bridge, one small function each.

Shapes: latents and noise (B, C, r, r) float32; t (B,) int64; embeddings (B, L, D).
Each function returns the gradient (B, C, r, r) float32 with respect to the clean
latents, weight w(t) = 1 - alpha-bar_t included. The loop back-propagates it with the
surrogate ``(latents * grad.detach()).sum()``.

CFG pairs are batched into one denoiser call (``prior.predict_noise``). With a ControlNet
(``engine.priors.controlnet.ControlledPrior``) ``control`` (B, 3, R, R) holds the views'
conditioning images: every prompt of the batch (uncond/cond/negative, source/target) gets
the same image, and the ControlNet runs once per denoiser call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.guidance.config import GuidanceConfig
from engine.guidance.method import GuidanceMethod
from engine.guidance.schedule import (
    STAGE_BRIDGE,
    sample_timestep,
    stage_for_step,
    stage_prompts,
    timestep_range,
    view_suffix,
    weight,
)
from engine.priors.base import DiffusionPrior


def add_noise(alphas_cumprod: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps (DDPM forward process)."""
    ab = alphas_cumprod.to(torch.float32)[t.long()].reshape(-1, 1, 1, 1)
    return ab.sqrt() * latents + (1.0 - ab).sqrt() * noise


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_u + s (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def _predict(prior: DiffusionPrior, x_t: torch.Tensor, t: torch.Tensor, embeddings: list[torch.Tensor],
             control: torch.Tensor | None = None) -> list[torch.Tensor]:
    """One denoiser call for len(embeddings) copies of x_t (and of ``control``); the chunks in order."""
    k = len(embeddings)
    with torch.no_grad():
        args = (torch.cat([x_t] * k), torch.cat([t] * k), torch.cat(embeddings))
        if control is None:
            eps = prior.predict_noise(*args)
        else:
            eps = prior.predict_noise(*args, control=torch.cat([control] * k))
    return list(eps.float().chunk(k))


def sds_gradient(
    prior: DiffusionPrior,
    latents: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float,
    control: torch.Tensor | None = None,
) -> torch.Tensor:
    """SDS (Poole et al. 2022): w(t) (eps_cfg(x_t; y) - eps)."""
    x_t = add_noise(prior.alphas_cumprod, latents.detach(), noise, t)
    eps_u, eps_c = _predict(prior, x_t, t, [uncond, cond], control)
    return weight(prior.alphas_cumprod, t) * (cfg_combine(eps_u, eps_c, scale) - noise)


def nfsd_gradient(
    prior: DiffusionPrior,
    latents: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    negative: torch.Tensor,
    scale: float,
    small_t: int = 200,
    control: torch.Tensor | None = None,
) -> torch.Tensor:
    """NFSD (Katzir et al. 2024): w(t) (delta_D + s delta_C).

    delta_C = eps(x_t; y) - eps(x_t; {}); delta_D = eps(x_t; {}) for t < small_t, else
    eps(x_t; {}) - eps(x_t; y_neg). No sampled noise is subtracted.
    """
    x_t = add_noise(prior.alphas_cumprod, latents.detach(), noise, t)
    eps_u, eps_c, eps_n = _predict(prior, x_t, t, [uncond, cond, negative], control)
    small = (t < small_t).reshape(-1, 1, 1, 1)
    delta_d = torch.where(small, eps_u, eps_u - eps_n)
    delta_c = eps_c - eps_u
    return weight(prior.alphas_cumprod, t) * (delta_d + scale * delta_c)


def bridge_gradient(
    prior: DiffusionPrior,
    latents: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    target: torch.Tensor,
    source: torch.Tensor,
    scale: float,
    time_weight: bool = True,
    control: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bridge stage 2 (McAllister et al. 2024): w(t) s (eps(x_t; y_tgt) - eps(x_t; y_src)).

    Equal to the difference of the two CFG predictions sharing one unconditional term,
    which cancels, so one 2B-batch call suffices. ``time_weight=False`` drops w(t) (the
    paper's 3D recipe: 1 * (eps_tgt - eps_src) with ``scale`` 1).
    """
    x_t = add_noise(prior.alphas_cumprod, latents.detach(), noise, t)
    eps_tgt, eps_src = _predict(prior, x_t, t, [target, source], control)
    w = weight(prior.alphas_cumprod, t) if time_weight else 1.0
    return w * scale * (eps_tgt - eps_src)


@dataclass(frozen=True)
class GuidanceResult:
    """grad (B, C, r, r) float32; t the step's timestep; stage 1 or 2; loss = 0.5 mean(grad^2)."""

    grad: torch.Tensor
    t: int
    stage: int
    loss: float


def compute_guidance(
    config: GuidanceConfig,
    prior: DiffusionPrior,
    prompt: str,
    latents: torch.Tensor,
    step: int,
    azimuth_deg: list[float],
    elevation_deg: list[float],
    generator: torch.Generator,
    control: torch.Tensor | None = None,
) -> GuidanceResult:
    """The step's latent gradient: draws t then noise from ``generator`` (in that order).

    latents (B, C, r, r) float32 (may require grad; it is detached here); azimuth/elevation
    per view (B,) for the view-dependent suffixes; control (B, 3, R, R) the views' ControlNet
    conditioning images (None without a ControlNet), shared by every prompt of the step.
    """
    stage = stage_for_step(config, step)
    lo, hi = timestep_range(config, step, prior.num_train_timesteps)
    t_int = sample_timestep(lo, hi, generator)
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32).to(latents.device)
    t = torch.full((b,), t_int, dtype=torch.long, device=latents.device)
    sets = [stage_prompts(config, prompt, stage, view_suffix(config, a, e)) for a, e in zip(azimuth_deg, elevation_deg)]

    def emb(field: str) -> torch.Tensor:
        return prior.encode_prompts([getattr(s, field) for s in sets]).to(latents.device)

    scale = config.scale
    x0 = latents.detach().float()
    if stage == STAGE_BRIDGE:
        grad = bridge_gradient(prior, x0, noise, t, emb("target"), emb("source"), config.bridge_scale,
                               config.stage_two_time_weight, control)
    elif config.method is GuidanceMethod.NFSD:
        grad = nfsd_gradient(prior, x0, noise, t, emb("cond"), emb("uncond"), emb("negative"), scale, config.nfsd_small_t,
                             control)
    else:  # SDS, and Bridge's stage 1 warm-up
        grad = sds_gradient(prior, x0, noise, t, emb("cond"), emb("uncond"), scale, control)
    grad = torch.nan_to_num(grad)
    return GuidanceResult(grad=grad, t=t_int, stage=stage, loss=float(0.5 * grad.pow(2).mean()))
