"""Tiny random ControlNets for tests, written with ``save_pretrained`` (diffusers layout, safetensors).

``build_tiny_controlnet(folder, tiny_sd_dir)`` copies the tiny SD UNet's encoder
(``ControlNetModel.from_unet``), as ControlNet training starts, then perturbs the
zero-convolutions (``controlnet_down_blocks``, ``controlnet_mid_block``): a freshly
initialised ControlNet adds exactly zero, so without this no test could see it act.
``build_mismatched_controlnet`` makes one whose cross-attention width differs from the UNet's
(as an SD 1.5 ControlNet against SD 2.1).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

#: Small conditioning encoder: 3 stride-2 stages (8x, image -> latent size), as SD's.
COND_CHANNELS = (8, 16, 16, 16)


def _perturb_zero_convs(net, seed: int, std: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in list(net.controlnet_down_blocks) + [net.controlnet_mid_block]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * std)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * std)


def build_tiny_controlnet(folder: str | Path, tiny_sd_dir: str | Path, seed: int = 0, std: float = 0.2) -> Path:
    """A ControlNet for the tiny SD UNet at ``folder`` (reused when it exists)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(tiny_sd_dir) / "unet", local_files_only=True)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=COND_CHANNELS)
    _perturb_zero_convs(net, seed + 1, std)
    net.save_pretrained(folder, safe_serialization=True)
    return folder


def build_mismatched_controlnet(folder: str | Path, seed: int = 0) -> Path:
    """A ControlNet shaped like the tiny UNet but with 16-wide cross-attention (the UNet's is 32)."""
    from diffusers import ControlNetModel

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    net = ControlNetModel(
        in_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=16, attention_head_dim=8,
        norm_num_groups=32, conditioning_embedding_out_channels=COND_CHANNELS,
    )
    net.save_pretrained(folder, safe_serialization=True)
    return folder
