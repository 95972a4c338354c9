"""Run one ``TextureJob`` end to end and write the job folder.

This is the single entry point shared by the batch CLI (``texbridge texture``)
and the server's worker process, so both produce the same output layout::

    OUT/
      job.json          spec, versions, timings, device, model that ran, status
      texture.png       final texture (8-bit sRGB, UV-padded)
      textured.glb      the mesh with the user's UVs and the texture embedded
      preview.png       contact sheet of 8 views
      checkpoints/      latest.pt (texture, optimizer state, step, RNG states), written atomically
      progress/         texture snapshots every ``preview_every`` steps (step_000010.png, ...)

``run_texture_job`` is the implementation (issue 3); the server's worker passes an
already-loaded prior so the model stays in memory between jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from engine.job import TextureJob
    from engine.mesh import Mesh
    from engine.priors.base import DiffusionPrior


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
    """Hooks the loop calls; every one is optional.

    on_progress(event): after each step.
    on_stage(stage): when the stage changes (and once at start).
    on_preview(step, texture): every ``preview_every`` steps; texture (H, W, 3) float32 in [0, 1],
        row 0 = top of the image (v = 1), see docs/conventions.md.
    should_cancel(): checked every step; True -> checkpoint, then ``JobCancelled``.
    """

    on_progress: Callable[[ProgressEvent], None] | None = None
    on_stage: Callable[[int], None] | None = None
    on_preview: Callable[[int, np.ndarray], None] | None = None
    should_cancel: Callable[[], bool] | None = None


@dataclass(frozen=True)
class JobResult:
    out_dir: Path
    texture_png: Path
    glb: Path
    preview_png: Path
    steps_done: int
    model_name: str


JOB_JSON = "job.json"
CHECKPOINT = "checkpoints/latest.pt"


def run_texture_job(
    job: "TextureJob",
    out_dir: str | Path,
    *,
    mesh: "Mesh | None" = None,
    prior: "DiffusionPrior | None" = None,
    callbacks: JobCallbacks | None = None,
    resume: bool = False,
) -> JobResult:
    """Run ``job`` and write the output layout above into ``out_dir``.

    mesh: an already-loaded mesh (else ``load_mesh(job.mesh)``).
    prior: an already-loaded prior (else ``load_prior(job.model, job.device)``).
    resume: continue from ``out_dir/checkpoints/latest.pt`` (same spec; see ``engine.jobrun``).
    Raises ``JobCancelled`` (checkpoint written, job.json status "cancelled") or another
    ``TexbridgeError``; job.json records status "failed" and the error.
    """
    from engine.jobrun import execute

    return execute(job, Path(out_dir), mesh=mesh, prior=prior, callbacks=callbacks or JobCallbacks(), resume=resume)
