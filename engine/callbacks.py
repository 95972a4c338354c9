"""What the optimization loop (``engine.optimize``) reports, and the hooks it calls.

These types sit beside the loop rather than in the runner above it, so the loop imports
nothing from the job layer. The module imports no torch: the CLI, the batch command and the
server build callbacks before (or without) loading the engine's heavy parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from engine.checkpoint import Checkpoint


@dataclass(frozen=True)
class ProgressEvent:
    """One optimization step's report.

    stage: 1 (SDS warm-up) or 2 (bridge); always 1 for sds/nfsd.
    """

    step: int  # steps completed so far (1-based after the first step)
    total_steps: int
    stage: int
    t: int  # diffusion timestep used this step
    loss: float
    grad_norm: float
    it_per_s: float
    eta_s: float


@dataclass
class JobCallbacks:
    """Hooks the loop (and, for ``on_snapshot``, the runner) calls; every one is optional.

    on_progress(event): after each step.
    on_stage(stage): when the stage (an int, 1 or 2) changes, and once at start.
    on_preview(step, texture): every ``preview_every`` steps; texture (H, W, 3) float32 in
        [0, 1], row 0 = top of the image (v = 1), see docs/conventions.md.
    on_checkpoint(checkpoint): every ``checkpoint_every`` steps, at the end and before a
        cancel; the loop's state (its ``spec`` is empty: the caller knows the job). Its
        tensors are the live ones the loop goes on updating: save or copy it before the
        callback returns (the last one, at the end, stays as handed over). The runner saves
        it into the job folder; the loop itself writes no file.
    on_snapshot(step, path): called by ``engine.runner.run_texture_job`` (not the loop)
        after it wrote the progress snapshot PNG of ``step`` into the job folder, so
        a front end shares that file instead of guessing its name or encoding another.
    should_cancel(): checked every step; True -> ``on_checkpoint``, then ``JobCancelled``.
    """

    on_progress: Callable[[ProgressEvent], None] | None = None
    on_stage: Callable[[int], None] | None = None
    on_preview: Callable[[int, "np.ndarray"], None] | None = None
    on_checkpoint: Callable[["Checkpoint"], None] | None = None
    on_snapshot: Callable[[int, Path], None] | None = None
    should_cancel: Callable[[], bool] | None = None
