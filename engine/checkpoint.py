"""Optimization checkpoints: texture, optimizer state, step and every RNG state.

Written atomically (``engine.jobfolder.atomic_write``: temp file in the same folder, fsync,
``os.replace``), so a crash or a cancel never leaves a half-written checkpoint. Read with
``torch.load(weights_only=True)``: only tensors and plain Python values, no pickle
code execution (numpy's RNG state is stored as a tensor for that reason).
Before writing, the free space is checked (``engine.diskspace``): a checkpoint that
would not fit fails with ``DiskFull`` before a byte is written, and a failed write
leaves no temp file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.diskspace import checkpoint_bytes, require_free
from engine.errors import Fix, SpecError
from engine.jobfolder import atomic_write

CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """step: steps completed; logits (H, W, 3) float32 on CPU; optimizer: ``state_dict()``;
    rng: generator/torch/numpy/python states; spec: the job spec dict; elapsed_s: optimization time so far."""

    step: int
    logits: torch.Tensor
    optimizer: dict
    rng: dict
    spec: dict
    elapsed_s: float = 0.0


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """All RNG states the loop may touch (the loop's own generator first)."""
    np_state = np.random.get_state()
    state = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``ckpt`` to ``path`` atomically (tmp + fsync + rename).

    Raises ``DiskFull`` (nothing written) when the folder lacks ``checkpoint_bytes`` free."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    require_free(path.parent, checkpoint_bytes(ckpt.logits.numel() * ckpt.logits.element_size()))
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": int(ckpt.step),
        "logits": ckpt.logits.detach().cpu(),
        "optimizer": ckpt.optimizer,
        "rng": ckpt.rng,
        "spec": ckpt.spec,
        "elapsed_s": float(ckpt.elapsed_s),
    }
    atomic_write(path, lambda f: torch.save(payload, f))  # a failed write leaves no temp file
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no checkpoint at {path}; resume needs a job folder with a checkpoint (one written by an interrupted job)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(f"checkpoint {path} is unreadable ({exc.__class__.__name__})", kind="checkpoint_unreadable",
                        fix=Fix("resume", "start the job again without {field}")) from None
    if data.get("format") != CHECKPOINT_FORMAT:
        raise SpecError(f"checkpoint {path} has format {data.get('format')}; this engine reads format {CHECKPOINT_FORMAT}")
    return Checkpoint(
        step=int(data["step"]), logits=data["logits"], optimizer=data["optimizer"], rng=data["rng"],
        spec=data["spec"], elapsed_s=float(data.get("elapsed_s", 0.0)),
    )
