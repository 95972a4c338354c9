"""The embedded prior: a small pixel-space text-to-texture model shipped with texbridge.

``load_embedded_prior(device, dtype=None)`` loads ``engine/models/embedded/`` (diffusers
folder layout, safetensors; see its README.md model card) as a ``PixelDiffusionPrior``,
which implements the same ``DiffusionPrior`` protocol as ``StableDiffusionPrior``:
the guidance code and the optimization loop cannot tell them apart.

Pixel space: ``encode_images`` resizes to 32 x 32 and maps [0, 1] -> [-1, 1]
(latent_channels = 3); ``decode_latents`` is the inverse. ``sample`` is plain DDIM
with classifier-free guidance (for evaluation and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.cameras import ViewMode
from engine.environment import resolve_device
from engine.errors import ModelNotFoundError
from engine.priors.embedded_model import TracedDenoiser, denoise, patch_size, tokenize
from engine.priors.base import PromptEmbeddingCache

#: Where the shipped weights live (inside the package).
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "embedded"
#: ``_class_name`` in a pixel-prior folder's model_index.json (how ``load_prior`` routes a folder here).
PIXEL_PIPELINE_CLASS = "EmbeddedPixelPipeline"
_TRAIN_HINT = "python scripts/train_embedded_prior.py --seed 0 --out engine/models/embedded"


@dataclass(frozen=True)
class PixelPriorConfig:
    """Options of the pixel prior.

    Fields:
        embedding_cache_size: prompts whose text embeddings are kept.
        sample_guidance_scale: CFG scale ``sample`` uses by default (evaluation setting; score
            distillation uses the job's own cfg_scale). 1.5 measured best for the shipped weights
            (held-out colour / pattern match at CFG 1, 1.25, 1.5, 2, 3: 0.97/0.83, 0.99/0.88,
            1.00/0.92, 0.70/0.86, 0.16/0.70); plain DDIM with CFG >= 2 overshoots the colours
            with this small pixel model.
        traced: run the UNet through per-shape TorchScript traces (``TracedDenoiser``), not
            eagerly: the same outputs (max abs difference 0.0 measured), 26.4 -> 15.3 ms per CFG
            pair on this 2-core CPU; in alternating main-job runs the denoiser phase took 22.9 and
            23.9 s traced against 31.6 and 37.4 s eager. An engineering choice, not a paper one;
            False runs the eager module.
    """

    embedding_cache_size: int = 256
    sample_guidance_scale: float = 1.5
    traced: bool = True


class PixelDiffusionPrior:
    """A text-conditional epsilon-prediction diffusion model in pixel space.

    Components: ``unet`` (a ``UNet2DConditionModel`` on 2x2 space-to-depth patches, see
    ``engine.priors.embedded_model``), ``text_encoder`` (``CLIPTextModel``), ``tokenizer``
    (word level) and ``scheduler`` (``DDIMScheduler`` holding the training betas).
    """

    def __init__(self, *, name: str, unet, text_encoder, tokenizer, scheduler, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, config: PixelPriorConfig = PixelPriorConfig()) -> None:
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.config = config
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.text_encoder = text_encoder.to(self.device, self.dtype).eval().requires_grad_(False)
        self.unet = unet.to(self.device, self.dtype).eval().requires_grad_(False)
        self.patch = patch_size(self.unet)
        self.resolution = int(self.unet.config.sample_size) * self.patch
        self.latent_channels = 3
        self.alphas_cumprod = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float32).to(self.device)
        self.num_train_timesteps = int(self.alphas_cumprod.shape[0])
        self.model_prediction_type = str(scheduler.config.get("prediction_type", "epsilon"))  # what the UNet outputs
        if self.model_prediction_type not in ("epsilon", "v_prediction"):
            raise ModelNotFoundError(f"pixel prior {name!r} predicts {self.model_prediction_type!r}; "
                                     f"supported: epsilon, v_prediction")
        self.prediction_type = "epsilon"  # what predict_noise returns
        # Trained on full-frame 32 x 32 swatches: close-ups, rendered at 2x and area-downsampled
        # (benchmarks/texture_quality.py, README "Texture quality").
        self.preferred_views = ViewMode.CLOSEUP
        self.preferred_render_size = 2 * self.resolution
        self._cache = PromptEmbeddingCache(self.config.embedding_cache_size)
        self._traced = TracedDenoiser(self.unet) if self.config.traced else None

    # -- text ------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (N, L, D) in ``self.dtype``, cached per prompt string."""
        return self._cache.get(prompts, lambda missing: self.text_encoder(self._token_ids(missing).to(self.device)).last_hidden_state)

    def _token_ids(self, prompts: list[str]) -> torch.Tensor:
        """(N, L) token ids of the prompts after ``clean_prompt``."""
        return tokenize(self.tokenizer, [self.clean_prompt(p) for p in prompts])

    def clean_prompt(self, prompt: str) -> str:
        """Drop words outside the caption vocabulary, and phrases left empty.

        The model never saw ``[UNK]`` in training, so unknown words (e.g. the loop's
        ", front view" suffixes) are removed rather than encoded as noise:
        ``"red bricks, front view"`` -> ``"red bricks"``.
        """
        vocab = self.tokenizer.get_vocab()
        phrases = [" ".join(w for w in ph.lower().split() if w in vocab) for ph in prompt.split(",")]
        return ", ".join(ph for ph in phrases if ph)

    # -- images ----------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, R, R) in [0, 1] -> latents (B, 3, 32, 32) in [-1, 1], differentiable."""
        r = self.resolution
        if images.shape[-2:] != (r, r):
            images = F.interpolate(images, size=(r, r), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > r)
        return (images * 2.0 - 1.0).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, 3, r, r) -> images (B, 3, r, r) in [0, 1]."""
        return (latents.float() * 0.5 + 0.5).clamp(0, 1)

    # -- denoiser --------------------------------------------------------------------
    @torch.no_grad()
    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """epsilon-hat (N, 3, r, r) float32 for x_t (N, 3, r, r), t (N,) int64, embeddings (N, L, D)."""
        x = latents.to(self.device, self.dtype)
        run = self._traced or (lambda *a: denoise(self.unet, *a))
        out = run(x, t.to(self.device), embeddings.to(self.device, self.dtype)).float()
        if self.model_prediction_type == "v_prediction":
            # v = sqrt(ab) eps - sqrt(1-ab) x0 and x_t = sqrt(ab) x0 + sqrt(1-ab) eps => eps = sqrt(ab) v + sqrt(1-ab) x_t
            ab = self.alphas_cumprod[t.to(self.device).long()].reshape(-1, 1, 1, 1)
            out = ab.sqrt() * out + (1.0 - ab).sqrt() * x.float()
        return out

    @torch.no_grad()
    def sample(self, prompts: list[str], *, steps: int = 50, guidance_scale: float | None = None,
               generator: torch.Generator | None = None, batch_size: int = 64) -> torch.Tensor:
        """Plain DDIM (eta 0) with classifier-free guidance.

        Returns images (N, 3, r, r) float32 in [0, 1] on the CPU. Deterministic for a CPU generator.
        """
        from diffusers import DDIMScheduler

        scale = self.config.sample_guidance_scale if guidance_scale is None else guidance_scale
        sched = DDIMScheduler.from_config(self.scheduler.config, prediction_type="epsilon")  # predict_noise gives eps
        sched.set_timesteps(steps)
        out = []
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            n = len(chunk)
            cond = self.encode_prompts(list(chunk))
            uncond = self.encode_prompts([""]).expand(n, -1, -1)
            x = torch.randn((n, 3, self.resolution, self.resolution), generator=generator).to(self.device)
            for t in sched.timesteps:
                tt = torch.full((2 * n,), int(t), device=self.device, dtype=torch.long)
                eps = self.predict_noise(torch.cat([x, x]), tt, torch.cat([uncond, cond]))
                eps_u, eps_c = eps.chunk(2)
                x = sched.step(eps_u + scale * (eps_c - eps_u), t, x).prev_sample
            out.append(self.decode_latents(x).cpu())
        return torch.cat(out)

    def unload(self) -> None:
        """Drop the models and cached embeddings; free CUDA memory."""
        self._traced = None  # its traces hold the UNet's weights
        for attr in ("unet", "text_encoder"):
            if hasattr(self, attr):
                delattr(self, attr)
        self._cache.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_pixel_prior(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                     name: str | None = None) -> PixelDiffusionPrior:
    """Load a pixel-prior diffusers folder (unet, text_encoder, tokenizer, scheduler; safetensors)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        raise ModelNotFoundError(f"embedded model folder {folder} is missing (no model_index.json); "
                                 f"reinstall texbridge or rebuild it: {_TRAIN_HINT}")
    try:
        # A local folder: never ask the hub (local_files_only; the process environment is left alone).
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True, local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", use_safetensors=True,
                                                     local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelNotFoundError(f"could not load the embedded model from {folder}: {first}; "
                                 f"reinstall texbridge or rebuild it: {_TRAIN_HINT}") from None
    device = resolve_device(device)
    return PixelDiffusionPrior(name=name or str(folder), unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                               scheduler=scheduler, device=device, dtype=dtype)


def load_embedded_prior(device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> PixelDiffusionPrior:
    """The shipped embedded prior on ``device`` (dtype: default float32; the model is small).

    Its ``name`` is ``"embedded"`` (recorded in job.json).
    """
    return load_pixel_prior(EMBEDDED_MODEL_DIR, device, dtype, name="embedded")
