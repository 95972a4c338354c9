"""``StableDiffusionPrior``: the Stable Diffusion family as a ``DiffusionPrior``.

Built from diffusers components (tokenizer, CLIP text encoder, VAE, UNet and the
scheduler's alpha-bar table). fp16 on CUDA (bf16 if asked), fp32 on CPU; PyTorch
scaled-dot-product attention; text embeddings cached per prompt string;
v-prediction outputs converted to epsilon. ``set_memory_mode`` switches the low-VRAM levers
(``engine.priors.memory``); ``set_tiny_encoder`` puts TAESD's encoder on the gradient path
(``engine.priors.tiny_encoder``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.cameras import ViewMode
from engine.errors import SpecError
from engine.priors.base import PromptEmbeddingCache


@dataclass(frozen=True)
class StableDiffusionConfig:
    """Options of the SD prior.

    Fields:
        sample_posterior_mean: encode images to the VAE posterior mean (deterministic; default)
            rather than a sample. The paper's code samples; the mean removes a noise source
            that score distillation adds anyway and keeps CPU runs bit-reproducible.
        embedding_cache_size: prompts whose text embeddings are kept (a job uses a handful).
    """

    sample_posterior_mean: bool = True
    embedding_cache_size: int = 256


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere (CPU half precision is slow and lossy)."""
    return torch.float16 if device.type == "cuda" else torch.float32


class StableDiffusionPrior:
    """A latent diffusion prior: encode prompts and images, predict noise.

    Components are the diffusers objects (``CLIPTokenizer``, ``CLIPTextModel``,
    ``AutoencoderKL``, ``UNet2DConditionModel``) and the scheduler's ``alphas_cumprod`` (T,).
    """

    def __init__(
        self,
        *,
        name: str,
        tokenizer,
        text_encoder,
        vae,
        unet,
        alphas_cumprod: torch.Tensor,
        prediction_type: str,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        config: StableDiffusionConfig = StableDiffusionConfig(),
    ) -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise SpecError(
                f"model {name!r} predicts {prediction_type!r}; texbridge supports epsilon and v_prediction models"
            )
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype or default_dtype(self.device)
        self.config = config
        self.tokenizer = tokenizer
        self.text_encoder = self._place(text_encoder)
        self.vae = self._place(vae)
        self.unet = self._place(unet)
        _use_sdpa(self.unet)
        _use_sdpa(self.vae)
        self.alphas_cumprod = alphas_cumprod.to(self.device, torch.float32)
        self.num_train_timesteps = int(self.alphas_cumprod.shape[0])
        self.prediction_type = "epsilon"  # what predict_noise returns
        self.model_prediction_type = prediction_type  # what the UNet was trained on
        self.latent_channels = int(self.unet.config.in_channels)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = int(self.unet.config.sample_size) * self.vae_scale_factor
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.preferred_views = ViewMode.ORBIT  # trained on photos of whole scenes and objects
        self.preferred_render_size = self.resolution
        self._cache = PromptEmbeddingCache(self.config.embedding_cache_size)
        self.memory_levers: tuple[str, ...] = ()
        self.tiny_encoder = None  # engine.priors.tiny_encoder.TinyEncoder when --encoder tiny
        self._text_offloaded = False

    def _place(self, module):
        """Move to the device; cast only when the dtype differs (diffusers warns on no-op casts)."""
        module = module.to(self.device) if module.dtype == self.dtype else module.to(self.device, self.dtype)
        return module.eval().requires_grad_(False)

    @classmethod
    def from_pipeline(cls, pipe, name: str, device, dtype=None, config=StableDiffusionConfig()) -> "StableDiffusionPrior":
        """Take the components of a loaded ``StableDiffusionPipeline``."""
        sched = pipe.scheduler
        return cls(
            name=name,
            tokenizer=pipe.tokenizer,
            text_encoder=pipe.text_encoder,
            vae=pipe.vae,
            unet=pipe.unet,
            alphas_cumprod=torch.as_tensor(sched.alphas_cumprod, dtype=torch.float32),
            prediction_type=str(sched.config.get("prediction_type", "epsilon")),
            device=device,
            dtype=dtype,
            config=config,
        )

    # -- text ------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (N, L, D) in ``self.dtype``, cached per prompt string."""
        return self._cache.get(prompts, self._encode_text)

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        if not self._text_offloaded:
            return self.text_encoder(tok.input_ids.to(self.device))[0]
        self.text_encoder.to(self.device)  # offloaded (low mode): on the device for this call only
        try:
            return self.text_encoder(tok.input_ids.to(self.device))[0]
        finally:
            self.text_encoder.to("cpu")
            _empty_cuda_cache(self.device)

    # -- memory and encoder options ------------------------------------------------------
    def set_memory_mode(self, mode) -> tuple[str, ...]:
        """Turn the low-VRAM levers on (``MemoryMode.LOW``) or off (``FULL``); returns those on.

        Levers: UNet attention slicing, VAE slicing, gradient checkpointing of the VAE encoder
        (its saved activations dominate the backward pass), fp16 on CUDA (cast if the prior was
        loaded otherwise; not undone by ``FULL``), the text encoder offloaded to the CPU between
        prompt encodings. Views per step are the loop's business (``memory.views_per_step_for``).
        """
        from engine.priors.memory import MemoryMode

        low = mode is MemoryMode.LOW
        levers: list[str] = []
        if low:
            self.unet.set_attention_slice("auto")
            self.vae.enable_slicing()
            self.vae.enable_gradient_checkpointing()
            levers += ["attention_slicing", "vae_slicing", "vae_encoder_checkpointing"]
            if self.device.type == "cuda":
                if self.dtype != torch.float16:
                    self.dtype = torch.float16
                    for m in (self.unet, self.vae, self.text_encoder):
                        m.to(dtype=torch.float16)
                levers.append("fp16")
                self.text_encoder.to("cpu")
                self._text_offloaded = True
                _empty_cuda_cache(self.device)
                levers.append("text_encoder_cpu_offload")
        else:
            _use_sdpa(self.unet)  # replaces the sliced attention processors
            self.vae.disable_slicing()
            self.vae.disable_gradient_checkpointing()
            if self._text_offloaded:
                self.text_encoder.to(self.device)
                self._text_offloaded = False
        if self.tiny_encoder is not None and self.tiny_encoder.module.dtype != self.dtype:
            self.tiny_encoder.module.to(dtype=self.dtype)
        self.memory_levers = tuple(levers)
        return self.memory_levers

    def set_tiny_encoder(self, encoder) -> None:
        """Encode renders with ``encoder`` (a ``TinyEncoder``), or SD's VAE when None."""
        if encoder is not None:
            if encoder.latent_channels != self.latent_channels:
                raise SpecError(f"tiny encoder {encoder.name!r} makes {encoder.latent_channels}-channel latents; "
                                f"model {self.name!r} needs {self.latent_channels}; use a matching TAESD or --encoder full")
            if encoder.module.dtype != self.dtype or encoder.module.device != self.device:
                encoder.module.to(self.device, self.dtype)
        self.tiny_encoder = encoder

    # -- images ----------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, R, R) in [0, 1] -> latents (B, 4, R/8, R/8) float32, differentiable."""
        x = (images * 2.0 - 1.0).to(self.dtype)
        if self.tiny_encoder is not None:  # TAESD: already in the UNet's latent scale
            return self.tiny_encoder.encode(x).float()
        dist = self.vae.encode(x).latent_dist
        z = dist.mean if self.config.sample_posterior_mean else dist.sample()
        return (z * self.scaling_factor).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, 4, r, r) -> images (B, 3, 8r, 8r) in [0, 1] (for previews/debugging)."""
        img = self.vae.decode((latents / self.scaling_factor).to(self.dtype)).sample
        return (img.float() * 0.5 + 0.5).clamp(0, 1)

    # -- denoiser --------------------------------------------------------------------
    @torch.no_grad()
    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor,
                      residuals: dict | None = None) -> torch.Tensor:
        """epsilon-hat (N, C, r, r) float32 for x_t (N, C, r, r), t (N,), embeddings (N, L, D).

        residuals: a ControlNet's ``down_block_additional_residuals`` (tuple of (N, C_i, h_i, w_i))
        and ``mid_block_additional_residual`` (N, C_mid, h, w), already scaled
        (``engine.priors.controlnet.ControlledPrior`` computes them); None = plain UNet.
        """
        out = self.unet(
            latents.to(self.device, self.dtype),
            t.to(self.device),
            encoder_hidden_states=embeddings.to(self.device, self.dtype),
            **(residuals or {}),
        ).sample.float()
        if self.model_prediction_type == "v_prediction":
            # v = sqrt(ab) eps - sqrt(1-ab) x0 and x_t = sqrt(ab) x0 + sqrt(1-ab) eps
            # => eps = sqrt(ab) v + sqrt(1-ab) x_t
            ab = self.alphas_cumprod[t.to(self.device).long()].reshape(-1, 1, 1, 1)
            out = ab.sqrt() * out + (1.0 - ab).sqrt() * latents.to(self.device).float()
        return out

    def unload(self) -> None:
        """Drop the models and cached embeddings; free CUDA memory."""
        for attr in ("unet", "vae", "text_encoder"):
            if hasattr(self, attr):
                delattr(self, attr)
        self.tiny_encoder = None
        self._cache.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _empty_cuda_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _use_sdpa(model) -> None:
    """Route attention through torch's scaled_dot_product_attention (diffusers' 2.0 processor)."""
    try:
        from diffusers.models.attention_processor import AttnProcessor2_0

        if hasattr(model, "set_attn_processor") and getattr(model, "attn_processors", None):
            model.set_attn_processor(AttnProcessor2_0())
    except (ImportError, ValueError):  # pragma: no cover - older diffusers: default processor
        pass
