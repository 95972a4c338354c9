"""Write a diffusers SD folder as one original-layout (LDM) ``.safetensors`` checkpoint.

The inverse of diffusers' single-file conversion (``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``) for the SD 1.x/2.x
UNet/VAE layouts and a CLIP text encoder, so the tiny test model can be loaded through
``from_single_file`` exactly like a checkpoint a user downloads. ``to_ldm`` is
verified against diffusers' own forward conversion in the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def _unet_key(k: str, cfg: dict) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    if k in direct:
        return direct[k]
    lpb = cfg["layers_per_block"]

    def resnet(rest: str) -> str:
        for new, old in _RESNET:
            rest = rest.replace(new, old)
        return rest

    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (lpb + 1) + j}.0.{resnet(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k):
        return f"input_blocks.{1 + int(m[1]) * (lpb + 1) + int(m[2])}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
        return f"input_blocks.{(int(m[1]) + 1) * (lpb + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", k):
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", k):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        return f"output_blocks.{int(m[1]) * (lpb + 1) + int(m[2])}.0.{resnet(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k):
        return f"output_blocks.{int(m[1]) * (lpb + 1) + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
        b = int(m[1])
        has_attn = "CrossAttn" in cfg["up_block_types"][b]
        return f"output_blocks.{b * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {k}")


def _vae_key(k: str, n_up: int) -> tuple[str, bool]:
    """(ldm key, is a mid-attention linear weight to reshape to a 1x1 conv)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if k in direct:
        return direct[k], False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}", False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}", False
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", k):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}", False
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k):
        rest = m[2]
        for new, old in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            if rest.startswith(new + "."):
                rest = old + rest[len(new):]
                break
        return f"{m[1]}.mid.attn_1.{rest}", rest.endswith("weight") and not rest.startswith("norm")
    raise KeyError(f"no LDM name for VAE key {k}")


def to_ldm(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One LDM-layout state dict (model.diffusion_model., first_stage_model., cond_stage_model.transformer.)."""
    out: dict[str, torch.Tensor] = {}
    cfg = dict(unet.config)
    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + _unet_key(k, cfg)] = v.contiguous()
    n_up = len(vae.config.up_block_types)
    for k, v in vae.state_dict().items():
        name, conv = _vae_key(k, n_up)
        out["first_stage_model." + name] = (v[:, :, None, None] if conv else v).contiguous()
    for k, v in text_encoder.state_dict().items():
        # Original checkpoints nest CLIP under text_model. (transformers >= 5.6 flattens it).
        k = k if k.startswith("text_model.") else "text_model." + k
        out["cond_stage_model.transformer." + k] = v.contiguous()
    return out


def write_ldm_checkpoint(diffusers_folder: str | Path, path: str | Path) -> Path:
    """Load the folder's UNet, VAE and text encoder and save them as one LDM ``.safetensors``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    folder = Path(diffusers_folder)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    save_file(to_ldm(unet, vae, text), str(path))
    return Path(path)
