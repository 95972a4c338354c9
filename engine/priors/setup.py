"""A job's prior options applied to a loaded prior: ``--memory`` and ``--encoder`` (``setup_prior``).

Called once per job after the prior is loaded (or handed over by the server's worker, which
keeps it loaded between jobs: every lever and the encoder are switched per job, so a ``low``
job does not leave the next ``full`` job sliced). ``PriorSetup.to_dict`` is what job.json
records under ``"memory"`` and ``"encoder"``; the peak memory is added when the job ends
(``record_peak``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import Fix, SpecError
from engine.priors.memory import (MemoryConfig, MemoryDecision, apply_memory_mode, peak_memory_bytes,
                                  resolve_memory_mode, views_per_step_for)
from engine.priors.tiny_encoder import DEFAULT_TINY_ENCODER, EncoderKind, load_tiny_encoder, parse_encoder_kind


@dataclass(frozen=True)
class PriorSetup:
    """What a job runs with.

    Fields:
        memory: the resolved ``--memory`` (asked, mode, free VRAM, reason).
        levers: the memory levers now on (empty for ``full``, and for priors without levers).
        encoder: ``full`` or ``tiny``.
        tiny_encoder: the TAESD weights that run (hub id or path), None with ``full``.
        views_per_step: views per step (the job's, else by mode and device).
    """

    memory: MemoryDecision
    levers: tuple[str, ...]
    encoder: EncoderKind
    tiny_encoder: str | None
    views_per_step: int

    def to_dict(self) -> dict:
        return {"memory": {**self.memory.to_dict(), "levers": list(self.levers), "peak_allocated_bytes": None},
                "encoder": {"kind": self.encoder.value, "weights": self.tiny_encoder}}


def setup_prior(prior, *, device: torch.device, memory="auto", encoder="full", tiny_encoder: str = DEFAULT_TINY_ENCODER,
                views_per_step: int | None = None, config: MemoryConfig = MemoryConfig()) -> PriorSetup:
    """Resolve and apply ``memory`` and ``encoder`` to ``prior`` (see the module doc).

    Raises ``SpecError`` for bad values, and for ``encoder="tiny"`` with a prior that has no
    VAE (the embedded prior works on pixels); ``ModelNotFoundError`` when TAESD is missing.
    """
    kind = parse_encoder_kind(encoder)
    decision = resolve_memory_mode(memory, device, config)
    has_vae = hasattr(prior, "set_tiny_encoder")
    if kind is EncoderKind.TINY and not has_vae:
        raise SpecError(f"encoder 'tiny' replaces a Stable Diffusion VAE encoder, and model {prior.name!r} has none "
                        f"(it works on pixels); allowed with this model: encoder full", kind="spec",
                        fix=Fix("encoder", "fix: set {field} to full, or use a Stable Diffusion model"))
    levers = apply_memory_mode(prior, decision.mode)
    weights = None
    if has_vae:
        if kind is EncoderKind.TINY:
            current = prior.tiny_encoder
            if current is None or current.name not in _names(tiny_encoder):
                prior.set_tiny_encoder(load_tiny_encoder(tiny_encoder, prior.device, prior.dtype))
            weights = prior.tiny_encoder.name
        else:
            prior.set_tiny_encoder(None)
    return PriorSetup(decision, levers, kind, weights, views_per_step_for(decision.mode, device, views_per_step, config))


def record_peak(record: dict, device: torch.device) -> None:
    """Put ``torch.cuda.max_memory_allocated`` (None on a CPU) into job.json's ``memory``."""
    if isinstance(record.get("memory"), dict):
        record["memory"]["peak_allocated_bytes"] = peak_memory_bytes(device)


def _names(ref: str) -> tuple[str, ...]:
    """The names a loaded TAESD may carry for ``ref`` (as given, or the resolved path)."""
    p = Path(ref).expanduser()
    return (ref, str(p.resolve())) if p.exists() else (ref,)
