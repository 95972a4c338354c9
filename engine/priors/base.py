"""The diffusion-prior interface every prior implements.

The guidance code and the optimization loop see only this protocol, so a
Stable Diffusion latent prior and the embedded pixel-space prior are
interchangeable (explicit composition: the loop is handed a prior object).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DiffusionPrior(Protocol):
    """A text-conditional epsilon/v-prediction diffusion model.

    Attributes:
        name: what was loaded (hub id, folder, file, or ``"embedded"``); recorded in job.json.
        device, dtype: where the denoiser runs.
        resolution: image side length the prior expects (512 for SD 2.1-base).
        latent_channels: channels of the space the denoiser works in (4 for SD; 3 for pixel priors).
        num_train_timesteps: T (1000 for SD).
        alphas_cumprod: (T,) float32 tensor on ``device``: alpha-bar_t.
        prediction_type: ``"epsilon"`` (``"v_prediction"`` is converted to epsilon by ``predict_noise``).
    """

    name: str
    device: torch.device
    dtype: torch.dtype
    resolution: int
    latent_channels: int
    num_train_timesteps: int
    alphas_cumprod: torch.Tensor
    prediction_type: str

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (N, L, D), cached per prompt string; no gradient."""
        ...

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, R, R) in [0, 1] -> latents (B, C, r, r), differentiable.

        For SD: VAE encoder mean times the scaling factor (r = R / 8).
        """
        ...

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """epsilon-hat for a batch in one denoiser call.

        latents (N, C, r, r) noisy x_t; t (N,) int64; embeddings (N, L, D).
        Returns (N, C, r, r) float32, no gradient (the caller detaches).
        """
        ...

    def unload(self) -> None:
        """Free device memory held by the model."""
        ...
