"""Run one ``TextureJob`` end to end and write its job folder.

This is the single entry point shared by the batch CLI (``texbridge texture``,
``texbridge batch``) and the server's worker process, so all produce the same output
layout, which ``engine.jobfolder.JobFolder`` owns (its docstring lists it). The server's
worker passes an already-loaded prior so the model stays in memory between jobs.

``engine.jobrun`` (the body) is imported when a job runs, not when this module is: the
CLI and the server import ``JobCallbacks`` / ``JobResult`` from here without loading torch.
It is a one-way import (``jobrun`` never imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.callbacks import JobCallbacks, ProgressEvent
from engine.jobfolder import JobFolder

if TYPE_CHECKING:  # pragma: no cover
    from engine.checkpoint import Checkpoint
    from engine.job import TextureJob
    from engine.mesh import Mesh
    from engine.priors.base import DiffusionPrior

__all__ = ["JobCallbacks", "JobResult", "ProgressEvent", "run_texture_job"]


@dataclass(frozen=True)
class JobResult:
    out_dir: Path
    texture_png: Path
    glb: Path
    preview_png: Path
    steps_done: int
    model_name: str


def run_texture_job(
    job: "TextureJob",
    out_dir: str | Path,
    *,
    mesh: "Mesh | None" = None,
    prior: "DiffusionPrior | None" = None,
    callbacks: JobCallbacks | None = None,
    resume: bool = False,
    start: "Checkpoint | None" = None,
) -> JobResult:
    """Run ``job`` and write the job folder ``out_dir``.

    mesh: an already-loaded mesh (else ``load_mesh(job.mesh)``).
    prior: an already-loaded prior (else ``load_prior(job.model, job.device)``).
    resume: continue from the folder's checkpoint (same spec; see ``engine.jobrun``).
    start: continue from this already-read checkpoint instead (the batch reads it to
        record the step it resumes from; the file is then not read a second time).
    Raises ``JobCancelled`` (checkpoint written, job.json status "cancelled") or another
    ``TexbridgeError``; job.json records status "failed" and the error.
    """
    from engine.jobrun import execute

    folder = JobFolder(out_dir)
    if resume and start is None:
        from engine.checkpoint import load_checkpoint

        start = load_checkpoint(folder.checkpoint)
    steps_done, model_name = execute(job, folder, mesh=mesh, prior=prior, callbacks=callbacks or JobCallbacks(), start=start)
    return JobResult(folder.root, folder.texture_png, folder.glb, folder.preview_png, steps_done, model_name)
