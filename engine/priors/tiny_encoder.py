"""The tiny VAE encoder option (``--encoder full|tiny``, ``--tiny-encoder ID|FOLDER|FILE``).

``tiny`` encodes renders with the encoder of TAESD (diffusers' ``AutoencoderTiny``, Ollin
Boer Bohan's distilled SD VAE) instead of SD's own VAE encoder, on the gradient path
(render -> latents -> backward): about 1.2M parameters against 34M, and a seventh of the
activations the backward pass keeps (counted on a CPU at 512 px: 0.46 against 3.09 GiB in fp32).

Latent scale: TAESD's encoder outputs latents already in the UNet's scale. Its config has
``scaling_factor`` 1.0 (diffusers' SD pipelines multiply by it, as for ``AutoencoderKL``'s
0.18215), and ``latent_magnitude`` / ``latent_shift`` only map latents to [0, 1] for storage
as images (``scale_latents``); they are not part of encoding. So latents = encoder output x
``config.scaling_factor``. Its input is the usual [-1, 1] image (``encode`` maps it to [0, 1]).

Where the weights come from (``load_tiny_encoder``):

- a hub id (default ``madebyollin/taesd``, for SD 1.x/2.x): from the local Hugging Face cache;
  downloaded when online; with ``HF_HUB_OFFLINE`` set and not cached -> ``ModelNotFoundError``;
- a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``);
- a single ``.safetensors`` file, in diffusers' layout (``encoder.layers.N...``) or TAESD's
  original encoder layout (``taesd_encoder.safetensors``: ``N...``), loaded into the default
  TAESD architecture (4 latent channels). Pickle formats are refused.

The embedded prior has no VAE (it works on pixels), so ``tiny`` with it is a ``SpecError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch

from engine.errors import Fix, ModelNotFoundError, SpecError, parse_choice
from engine.priors.loading import _HUB_ID, PICKLE_SUFFIXES, _quiet_diffusers, first_line, from_hub, hub_cache_dir

#: TAESD for SD 1.x / 2.x latents (4 channels), diffusers layout, on the Hugging Face hub.
DEFAULT_TINY_ENCODER = "madebyollin/taesd"


class EncoderKind(Enum):
    """``--encoder``: SD's own VAE encoder (``full``) or TAESD's (``tiny``)."""

    FULL = "full"
    TINY = "tiny"


def parse_encoder_kind(value) -> EncoderKind:
    """``EncoderKind`` from a string or member; ``SpecError`` lists the allowed values."""
    return parse_choice(EncoderKind, value, "encoder")


@dataclass(frozen=True)
class TinyEncoder:
    """A loaded TAESD encoder.

    Fields:
        name: where it came from (hub id, folder or file path); recorded in job.json.
        module: the ``AutoencoderTiny`` (eval, no parameter gradients); only its encoder runs.
        scaling_factor: the config's (1.0 for TAESD): latents = encoder output x this.
        latent_channels: must equal the UNet's input channels.
    """

    name: str
    module: torch.nn.Module
    scaling_factor: float
    latent_channels: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, R, R) in [-1, 1], the module's dtype -> latents (B, C, R/8, R/8), UNet scale."""
        return self.module.encode(x).latents * self.scaling_factor


def load_tiny_encoder(ref: str, device: torch.device | str, dtype: torch.dtype) -> TinyEncoder:
    """Load TAESD from a hub id, a diffusers folder or a ``.safetensors`` file (see module doc)."""
    s = (ref or "").strip()
    if not s:
        raise SpecError(f"tiny_encoder is empty; give a hub id (default {DEFAULT_TINY_ENCODER}), a folder or a .safetensors file")
    p = Path(s).expanduser()
    with _quiet_diffusers():
        if p.is_dir():
            module, name = _from_folder(p), str(p.resolve())
        elif p.suffix.lower() in PICKLE_SUFFIXES:
            raise SpecError(f"tiny_encoder {p.name}: pickle files are refused (loading them can run code); use .safetensors")
        elif p.suffix.lower() == ".safetensors":
            module, name = _from_file(p), str(p.resolve())
        else:
            module, name = _from_hub(s), s
        # (inside the quiet block: diffusers warns on any dtype cast of a loaded model)
        module = module.to(torch.device(device), dtype).eval().requires_grad_(False)
    cfg = module.config
    return TinyEncoder(name, module, float(getattr(cfg, "scaling_factor", 1.0)), int(cfg.latent_channels))


def _from_folder(path: Path):
    from diffusers import AutoencoderTiny

    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"tiny_encoder folder {str(path)!r} has no config.json; give an AutoencoderTiny folder "
                                 f"(e.g. `huggingface-cli download {DEFAULT_TINY_ENCODER} --local-dir DIR`)")
    try:
        return AutoencoderTiny.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"could not load tiny_encoder folder {str(path)!r} (safetensors weights required): "
                                 f"{first_line(exc)}") from None


def _from_hub(repo_id: str):
    from diffusers import AutoencoderTiny

    if not _HUB_ID.match(repo_id):
        raise ModelNotFoundError(f"tiny_encoder {repo_id!r}: no such folder or file, and not a hub id (owner/name)")

    def missing() -> ModelNotFoundError:
        return ModelNotFoundError(
            f"tiny_encoder {repo_id!r} is not in the local Hugging Face cache ({hub_cache_dir()}) and cannot be downloaded",
            kind="model_not_cached",
            fix=Fix("tiny_encoder", f"fix: run `huggingface-cli download {repo_id}` on a machine with network, or set "
                                    "{field} to a TAESD folder or .safetensors file (or use the full encoder)"))

    return from_hub(lambda rid, **kw: AutoencoderTiny.from_pretrained(rid, use_safetensors=True, **kw), repo_id, missing)


def _from_file(path: Path):
    """A single file into the default TAESD architecture (diffusers or original encoder keys)."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelNotFoundError(f"tiny_encoder file {str(path)!r} does not exist; check the path")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelNotFoundError(f"tiny_encoder {path.name} is not a readable .safetensors file: {first_line(exc)}") from None
    module = AutoencoderTiny()
    if any(k.startswith("encoder.") for k in state):
        enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    else:  # TAESD's original taesd_encoder.safetensors: the same nn.Sequential, unprefixed
        enc = {f"layers.{k}": v for k, v in state.items()}
    try:
        module.encoder.load_state_dict(enc, strict=True)
    except RuntimeError as exc:
        raise SpecError(f"tiny_encoder {path.name} does not hold a TAESD encoder (4 latent channels, diffusers or "
                        f"original layout): {first_line(exc)}") from None
    return module

