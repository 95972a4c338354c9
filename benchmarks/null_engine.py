"""A zero-work runner for ``benchmarks/server_throughput.py`` (not used by the tests).

The benchmark measures the server itself (queue, store, event streaming), so its worker is
pointed at this module through the server config's ``runner`` field (``RUNNER``; see
``server.config.WorkerRunner``): the real engine cannot run a step in zero time. It follows the
runner's callback contract (progress every step, a snapshot every ``preview_every``) and
writes the final texture, through ``engine.jobfolder``.
"""

from __future__ import annotations

import numpy as np

from engine.jobfolder import JobFolder, atomic_write
from engine.runner import JobResult, ProgressEvent
from server.config import WorkerRunner

RUNNER = WorkerRunner(run_job="benchmarks.null_engine:run_texture_job", load_prior="benchmarks.null_engine:load_prior")


class NullPrior:
    def __init__(self, name: str):
        self.name = name
        self.preferred_views = "orbit"
        self.preferred_render_size = 64

    def unload(self) -> None:
        pass


def load_prior(model, device="auto", dtype=None):
    return NullPrior(str(model))


def run_texture_job(job, out_dir, *, mesh=None, prior=None, callbacks=None, resume=False):
    from engine.export import encode_png

    folder = JobFolder(out_dir)
    folder.prepare()
    tex = np.full((job.texture_size, job.texture_size, 3), 0.5, np.float32)
    png = encode_png(tex, 8, 1)
    for step in range(1, job.steps + 1):
        if callbacks and callbacks.on_progress:
            callbacks.on_progress(ProgressEvent(step, job.steps, 1, 500, 0.1, 0.2, 1000.0, 0.0))
        if callbacks and step % job.preview_every == 0:
            if callbacks.on_preview:
                callbacks.on_preview(step, tex)
            if callbacks.on_snapshot:
                callbacks.on_snapshot(step, folder.write_snapshot(step, png))
    atomic_write(folder.texture_png, png)
    return JobResult(folder.root, folder.texture_png, folder.glb, folder.preview_png, job.steps, prior.name)
