"""The diffusion-prior interface every prior implements.

The guidance code and the optimization loop see only this protocol, so a
Stable Diffusion latent prior and the embedded pixel-space prior are
interchangeable (explicit composition: the loop is handed a prior object).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from engine.cameras import ViewMode  # noqa: F401  (annotation above)


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
        preferred_views: the ``ViewMode`` this prior's training images look like (``ORBIT``:
            whole objects, SD; ``CLOSEUP``: full-frame swatches, the embedded prior); a job's
            ``views="auto"`` uses it.
        preferred_render_size: render side a job with ``render_size=None`` uses (renders are
            resized to ``resolution``; 512 for SD, 2 x 32 for the embedded prior).
    """

    name: str
    device: torch.device
    dtype: torch.dtype
    resolution: int
    latent_channels: int
    num_train_timesteps: int
    alphas_cumprod: torch.Tensor
    prediction_type: str
    preferred_views: "ViewMode"
    preferred_render_size: int

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
        A prior with a ControlNet (``engine.priors.controlnet.ControlledPrior``) also takes
        ``control`` (N, 3, R, R), the batch's conditioning images; the guidance passes it only then.
        """
        ...

    def unload(self) -> None:
        """Free device memory held by the model."""
        ...


class PromptEmbeddingCache:
    """Text embeddings kept per prompt string (a job uses a handful of prompts).

    ``get(prompts, encode)`` encodes only the prompts not seen before, in one call of
    ``encode(missing) -> (M, L, D)``, and returns (N, L, D) in ``prompts`` order.
    When more than ``size`` prompts would be kept, the cache starts over.
    """

    def __init__(self, size: int):
        self.size = size
        self._store: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def get(self, prompts: list[str], encode) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._store]
        if missing:
            if len(self._store) + len(missing) > self.size:
                self._store.clear()
            for p, e in zip(missing, encode(missing)):
                self._store[p] = e
        return torch.stack([self._store[p] for p in prompts])

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._store

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
