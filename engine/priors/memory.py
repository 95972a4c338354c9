"""Low-VRAM mode: ``MemoryMode`` (``--memory auto|full|low``), how ``auto`` resolves, peak memory.

``low`` turns on the Stable Diffusion prior's memory levers
(``StableDiffusionPrior.set_memory_mode``):

- attention slicing in the UNet (diffusers' ``set_attention_slice("auto")``);
- VAE slicing (one image at a time through the VAE) and gradient checkpointing of the VAE
  encoder, whose saved activations are the largest cost of the gradient path
  (render -> latents -> backward);
- fp16 on CUDA (already the default there; a prior loaded in another dtype is cast);
- the text encoder offloaded to the CPU: it runs once per new prompt (embeddings are
  cached), so it is moved to the device for that call and back afterwards;
- one view per step unless the job sets ``views_per_step``.

``auto`` picks ``low`` on CUDA when the free VRAM (``torch.cuda.mem_get_info``) is under
``MemoryConfig.auto_low_below_gib``; on a CPU ``auto`` is ``full`` (no VRAM to save, and the
levers only cost time there). The embedded prior records the mode but has no levers: it is
a few MB and its activations at 64 px are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from engine.errors import parse_choice

GIB = 2**30

#: Free VRAM under which ``auto`` picks ``low`` (GiB). NOT MEASURED on a GPU yet (no GPU was
#: available when this was written). Chosen from an estimate of ``full``'s peak for SD 2.1-base
#: in fp16 with 4 views of 512 px per step: weights about 2.6 GB (UNet 865M + text encoder
#: 354M + VAE 84M parameters at 2 bytes); the VAE encoder's activations kept for the backward
#: pass, counted on a CPU with autograd's saved-tensor hooks (SD-size random VAE, one 512 px
#: image): 3.09 GiB in fp32, so about 1.55 GiB per view in fp16 and 6.2 GiB for 4 views
#: (0.21 GiB fp32 per image with the encoder checkpointed, as ``low`` does; TAESD's encoder
#: 0.46 GiB); the UNet's CFG batch of 8 under no_grad about 1.5 GB; 64 cached 512 px G-buffers
#: about 0.9 GB. That sums to about 11 GiB, hence 14 GiB with headroom for the allocator.
#: ``scripts/gpu_check.sh`` measures the real peaks (``benchmarks/step_cost.py --memory
#: full|low``); replace this estimate with them.
AUTO_LOW_BELOW_GIB = 14.0


class MemoryMode(Enum):
    """``--memory``: ``auto`` (by free VRAM), ``full`` (no levers) or ``low`` (all levers)."""

    AUTO = "auto"
    FULL = "full"
    LOW = "low"


@dataclass(frozen=True)
class MemoryConfig:
    """How ``auto`` resolves and what ``low`` changes in the loop.

    Fields:
        auto_low_below_gib: on CUDA, ``auto`` is ``low`` when free VRAM is under this many GiB
            (``AUTO_LOW_BELOW_GIB``: an unmeasured estimate, see there).
        low_views_per_step: views per step in ``low`` mode when the job does not set
            ``views_per_step`` (``full`` uses 4 on a GPU, 1 on a CPU).
    """

    auto_low_below_gib: float = AUTO_LOW_BELOW_GIB
    low_views_per_step: int = 1


@dataclass(frozen=True)
class MemoryDecision:
    """A resolved ``--memory``: what was asked, what runs, and why (recorded in job.json).

    free_bytes: free VRAM when ``auto`` was resolved on CUDA (None elsewhere).
    """

    requested: MemoryMode
    mode: MemoryMode
    free_bytes: int | None
    threshold_gib: float
    reason: str

    def to_dict(self) -> dict:
        return {"requested": self.requested.value, "mode": self.mode.value, "free_bytes": self.free_bytes,
                "auto_low_below_gib": self.threshold_gib, "reason": self.reason}


def parse_memory_mode(value) -> MemoryMode:
    """``MemoryMode`` from a string or member; ``SpecError`` lists the allowed values."""
    return parse_choice(MemoryMode, value, "memory")


def free_vram_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device (``torch.cuda.mem_get_info``); None on other devices."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def resolve_memory_mode(requested, device: torch.device | str, config: MemoryConfig = MemoryConfig(),
                        free_bytes: int | None = None) -> MemoryDecision:
    """The mode a job runs with. ``free_bytes`` overrides the measured free VRAM (tests)."""
    req = parse_memory_mode(requested)
    dev = torch.device(device)
    if req is not MemoryMode.AUTO:
        return MemoryDecision(req, req, None, config.auto_low_below_gib, "asked for")
    if dev.type != "cuda":
        return MemoryDecision(req, MemoryMode.FULL, None, config.auto_low_below_gib,
                              f"auto on {dev.type}: full (no VRAM to save)")
    free = free_vram_bytes(dev) if free_bytes is None else int(free_bytes)
    low = free < config.auto_low_below_gib * GIB
    mode = MemoryMode.LOW if low else MemoryMode.FULL
    rel = "under" if low else "at least"
    return MemoryDecision(req, mode, free, config.auto_low_below_gib,
                          f"auto: {free / GIB:.1f} GiB free, {rel} {config.auto_low_below_gib:g} GiB")


def views_per_step_for(mode: MemoryMode, device: torch.device, given: int | None,
                       config: MemoryConfig = MemoryConfig()) -> int:
    """The job's ``views_per_step`` if set; else ``low``: 1; ``full``: 4 on a GPU, 1 on a CPU."""
    if given is not None:
        return int(given)
    if mode is MemoryMode.LOW:
        return config.low_views_per_step
    return 4 if torch.device(device).type == "cuda" else 1


def apply_memory_mode(prior, mode: MemoryMode) -> tuple[str, ...]:
    """Switch ``prior``'s levers to ``mode``; returns the levers now on (``()`` for priors
    without levers, such as the embedded one, which records the mode only)."""
    setter = getattr(prior, "set_memory_mode", None)
    if setter is None:
        return ()
    return tuple(setter(mode))


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak (``torch.cuda.reset_peak_memory_stats``); nothing on other devices."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """``torch.cuda.max_memory_allocated`` since the last reset; None on a CPU (not tracked)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
