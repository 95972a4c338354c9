"""Tiny random TAESD (diffusers' ``AutoencoderTiny``) for tests of ``--encoder tiny``.

Built from a small config with fixed random weights and written with ``save_pretrained``
(diffusers folder layout, safetensors), so the engine loads it offline through the same
code as a real ``madebyollin/taesd`` folder. Four levels (three stride-2 convolutions):
an 8x encoder with 4 latent channels, as TAESD and the tiny SD pipeline (tests/helpers/tiny_sd.py).
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_taesd(folder: str | Path, seed: int = 0) -> Path:
    """Create the folder (reused when its config.json exists) and return its path."""
    from diffusers import AutoencoderTiny

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    tae.save_pretrained(folder, safe_serialization=True)
    return folder


def write_taesd_encoder_file(path: str | Path, original_layout: bool, seed: int = 0) -> Path:
    """A random encoder of the default TAESD architecture as one ``.safetensors`` file:
    diffusers keys (``encoder.layers.N...``) or TAESD's original ``taesd_encoder`` keys (``N...``)."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    enc = AutoencoderTiny().encoder.state_dict()  # keys "layers.N..."
    if original_layout:
        state = {k[len("layers."):]: v.contiguous() for k, v in enc.items()}
    else:
        state = {f"encoder.{k}": v.contiguous() for k, v in enc.items()}
    path = Path(path)
    save_file(state, str(path))
    return path
