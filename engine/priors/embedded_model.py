"""Architecture of the embedded pixel-space prior: config, tokenizer, components.

The embedded prior is a small text-conditional epsilon-prediction diffusion
model in pixel space at 32 x 32. Its denoiser is a diffusers
``UNet2DConditionModel`` that sees the image as 2 x 2 space-to-depth patches
(3 x 32 x 32 pixels -> 12 x 16 x 16): an exact, invertible rearrangement of the
pixels, so the diffusion itself is plain pixel-space diffusion while the network
runs at a quarter of the spatial cost (this is what makes CPU training feasible).
The text encoder is a small ``CLIPTextModel``; the tokenizer is word level, built
from the procedural world's caption vocabulary (unknown words -> ``[UNK]``).

Folder layout (diffusers): ``model_index.json``, ``unet/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/`` (a ``DDIMScheduler`` config with the training betas).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """Shape of the embedded prior (the shipped weights use these defaults).

    Fields:
        resolution: image side in pixels the prior models.
        patch: space-to-depth factor in front of the UNet (2: 12 x 16 x 16 input).
        block_out_channels / layers_per_block / attention_heads: UNet width, depth, heads.
        cross_attention_dim: text embedding width D (= text encoder hidden size).
        text_layers / text_heads / text_intermediate: text transformer size.
        max_length: tokens per prompt L, including [BOS]/[EOS] (the paper's full
            source modifier plus a caption is about 26 word tokens).
        pooled_text_embedding: also add an attention-pooled text embedding to the time
            embedding (diffusers ``addition_embed_type="text"``, as GLIDE), with scale-shift
            (FiLM) resnets: a global conditioning path that makes colours follow the caption
            after far fewer steps than cross-attention alone.
        prediction_type: what the UNet predicts. ``v_prediction`` (v = sqrt(ab) eps - sqrt(1-ab) x0):
            with epsilon prediction the loss barely sees the caption's colours at high noise
            (an x0 error is scaled by sqrt(SNR) there), so colour conditioning is learned far
            slower; the prior converts v to epsilon in ``predict_noise``, as the SD prior does.
        num_train_timesteps / beta_schedule: the DDPM forward process (cosine, T = 1000;
            cosine rather than SD's scaled_linear because pixel space needs alpha-bar_T ~ 0).
    """

    resolution: int = 32
    patch: int = 2
    block_out_channels: tuple[int, ...] = (48, 64, 96)
    layers_per_block: int = 1
    attention_heads: int = 4
    cross_attention_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    max_length: int = 32
    pooled_text_embedding: bool = True
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"


def build_tokenizer(words: list[str], max_length: int):
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` (lower-cased; punctuation split off)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        unk_token="[UNK]",
        model_max_length=max_length,
    )


def build_components(config: EmbeddedModelConfig, words: list[str]):
    """Fresh (unet, text_encoder, tokenizer, scheduler) for ``config``; seed torch before calling."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer(words, config.max_length)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.cross_attention_dim,
            intermediate_size=config.text_intermediate,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_length,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    n = len(config.block_out_channels)
    ch = 3 * config.patch**2
    unet = UNet2DConditionModel(
        sample_size=config.resolution // config.patch,
        in_channels=ch,
        out_channels=ch,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_heads,
        norm_num_groups=16,
        addition_embed_type="text" if config.pooled_text_embedding else None,
        addition_embed_type_num_heads=config.attention_heads,
        resnet_time_scale_shift="scale_shift" if config.pooled_text_embedding else "default",
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
    )
    return unet, text_encoder, tokenizer, scheduler


def patch_size(unet) -> int:
    """The space-to-depth factor implied by the UNet's input channels (3 * p^2)."""
    p = int(round((unet.config.in_channels / 3) ** 0.5))
    if 3 * p * p != unet.config.in_channels:
        raise ValueError(f"unet in_channels={unet.config.in_channels} is not 3 * p^2")
    return p


def denoise(unet, x: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Epsilon-hat in pixel space.

    x (N, 3, R, R) noisy pixels in [-1, 1] scale; t (N,) int64; embeddings (N, L, D).
    Returns (N, 3, R, R).
    """
    p = patch_size(unet)
    h = F.pixel_unshuffle(x, p) if p > 1 else x
    out = unet(h, t, encoder_hidden_states=embeddings, return_dict=False)[0]  # a tensor, so it traces
    return F.pixel_shuffle(out, p) if p > 1 else out


class _Denoise(torch.nn.Module):
    """``denoise`` as a module, so TorchScript can trace it."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return denoise(self.unet, x, t, embeddings)


class TracedDenoiser:
    """``denoise`` through TorchScript traces, one per input shape (inference only).

    The embedded UNet is small, so on a CPU its eager forward is mostly Python and module
    dispatch: a trace runs the same operators with the same weights without it. Measured on
    this 2-core CPU, batch 2 (one CFG pair): 26.4 ms eager vs 15.3 ms traced per call (5
    interleaved rounds later, on a slower afternoon: 25-36 vs 16-25 ms), outputs equal (max abs
    difference 0.0); a trace costs about 1 s once per shape. Shapes, dtype and
    device key the cache (a trace bakes shape-dependent branches in); ``max_shapes`` bounds it.
    Call under ``torch.no_grad()``: traces are built and run without autograd.
    """

    def __init__(self, unet, max_shapes: int = 8):
        self.module, self.max_shapes = _Denoise(unet).eval(), max_shapes
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Same contract as ``denoise``: x (N, 3, R, R), t (N,) int64, embeddings (N, L, D) -> (N, 3, R, R)."""
        key = (tuple(x.shape), tuple(t.shape), tuple(embeddings.shape), x.dtype, embeddings.dtype, x.device)
        fn = self._traces.get(key)
        if fn is None:
            if len(self._traces) >= self.max_shapes:
                self._traces.pop(next(iter(self._traces)))
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarning: shape branches are baked in; the key covers them
                fn = torch.jit.trace(self.module, (x, t, embeddings), check_trace=False)
            self._traces[key] = fn
        return fn(x, t, embeddings)


def tokenize(tokenizer, prompts: list[str], max_length: int | None = None) -> torch.Tensor:
    """Token ids (N, L), padded/truncated to the tokenizer's ``model_max_length``."""
    n = max_length or tokenizer.model_max_length
    return tokenizer(list(prompts), padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids


def save_components(folder: str | Path, unet, text_encoder, tokenizer, scheduler) -> Path:
    """Write the diffusers folder (safetensors only) with ``model_index.json``."""
    from diffusers import DiffusionPipeline

    class EmbeddedPixelPipeline(DiffusionPipeline):
        """Holder so ``save_pretrained`` writes the standard layout; the engine loads components."""

        def __init__(self, unet, text_encoder, tokenizer, scheduler):
            super().__init__()
            self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    folder = Path(folder)
    EmbeddedPixelPipeline(unet, text_encoder, tokenizer, scheduler).save_pretrained(folder, safe_serialization=True)
    return folder
