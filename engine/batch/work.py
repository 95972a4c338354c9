"""Texture one batch asset in its job folder: the unit of work of the sequential loop and of
every Ray actor (``engine.batch.ray_backend``). It calls the same runner as ``texbridge texture``.

An attempt: decide whether to resume (job.json not succeeded and a checkpoint present ->
continue from it; the checkpoint is read once, here, and handed to the runner), note who
works on it in the folder's batch attempt file (attempt, node, pid, GPU, the step it
resumed from), run ``run_texture_job`` with a prior kept loaded between assets, and
return the asset's record for ``batch_summary.json``. The record is also stored under
``"batch"`` in the asset's job.json, so job.json shows which attempt finished and from which
step it resumed. User errors (bad mesh, bad spec) come back as a failed record, never raised:
they are not retried. Only a dead process (the caller sees no record) is retried.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine.batch.manifest import AssetSpec
from engine.errors import JobCancelled, TexbridgeError
from engine.jobfolder import JobFolder, write_json_atomic
from engine.jobstate import JobState
from engine.runner import JobCallbacks, ProgressEvent

#: The status words of a batch asset: the job states (``engine.jobstate``, the same words
#: as job.json and the server) plus SKIPPED, an asset this run did not texture.
SUCCEEDED = JobState.SUCCEEDED.value
FAILED = JobState.FAILED.value
CANCELLED = JobState.CANCELLED.value
RUNNING = JobState.RUNNING.value
QUEUED = JobState.QUEUED.value
SKIPPED = "skipped"
ASSET_STATUSES = (SUCCEEDED, FAILED, SKIPPED, CANCELLED, RUNNING, QUEUED)


def job_status(out: str | Path) -> JobState | None:
    """The state in the asset's job.json (an old "done" reads as succeeded); None without one."""
    return JobFolder(out).state()


def base_record(asset: AssetSpec, status: str, **extra) -> dict:
    """A summary record: the same keys for every asset and state."""
    rec = {"asset": asset.name, "out": asset.out, "status": status,
           "prompt": asset.job.prompt if asset.job is not None else None,
           "node": None, "gpu": None, "attempts": 0, "seconds": 0.0, "error": None}
    rec.update(extra)
    return rec


def resume_point(folder: JobFolder):
    """The checkpoint to resume from (read once; the runner gets this object), or None:
    resume when job.json is not succeeded and a readable checkpoint exists."""
    status = folder.state()
    if status is None:
        return None
    if status is JobState.SUCCEEDED:  # a rerun of a finished asset (skip-done off) starts over
        folder.clear_checkpoints()
        return None
    if not folder.has_checkpoint():
        return None
    from engine.checkpoint import load_checkpoint

    try:
        return load_checkpoint(folder.checkpoint)
    except Exception:  # a torn or foreign checkpoint: start over rather than fail the asset
        return None


class AssetWorker:
    """Textures assets one after another, keeping the last prior loaded.

    node / gpu: where this worker runs (recorded per asset); ``gpu`` is filled from the
    prior's device when it is None and the job runs on CUDA.
    """

    def __init__(self, node: str | None = None, gpu: str | None = None) -> None:
        self.node = node or socket.gethostname()
        self.gpu = gpu
        self._prior = None
        self._prior_key: tuple[str, str] | None = None

    def _prior_for(self, model: str, device: str):
        from engine.environment import resolve_device
        from engine.priors.loading import load_prior

        if self._prior is None or self._prior_key != (model, device):
            self.unload()
            self._prior = load_prior(model, resolve_device(device))
            self._prior_key = (model, device)
        return self._prior

    def unload(self) -> None:
        if self._prior is not None:
            self._prior.unload()
        self._prior, self._prior_key = None, None

    def _gpu_label(self, prior) -> str | None:
        if prior is None or prior.device.type != "cuda":
            return None
        import torch

        name = torch.cuda.get_device_name(prior.device)
        return f"{self.gpu}: {name}" if self.gpu else name

    def texture(self, asset: AssetSpec, attempt: int = 1, *, should_cancel: Callable[[], bool] | None = None,
                mesh_bytes: bytes | None = None, on_progress: Callable[[ProgressEvent], None] | None = None) -> dict:
        """Run one attempt at ``asset``; returns its summary record (status succeeded/failed/cancelled)."""
        from engine.mesh import load_mesh
        from engine.runner import run_texture_job

        out, job = Path(asset.out), asset.job
        folder = JobFolder(out)
        rec = base_record(asset, RUNNING, node=self.node, attempts=attempt, pid=os.getpid(),
                          resumed=False, resumed_from_step=0, steps=None)
        t0 = time.perf_counter()
        prior = None
        try:
            out.mkdir(parents=True, exist_ok=True)
            start = resume_point(folder)
            from_step = int(start.step) if start is not None else 0
            rec.update(resumed=start is not None, resumed_from_step=from_step)
            write_json_atomic(folder.batch_attempt, {"attempt": attempt, "node": self.node, "pid": os.getpid(),
                                             "resumed_from_step": from_step,
                                             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            mesh = _load_staged(asset, mesh_bytes) if mesh_bytes is not None else load_mesh(asset.mesh)
            prior = self._prior_for(job.model, job.device)  # a broken mesh fails before any model is loaded
            rec["gpu"] = self._gpu_label(prior)
            result = run_texture_job(job, out, mesh=mesh, prior=prior, start=start,
                                     callbacks=JobCallbacks(should_cancel=should_cancel, on_progress=on_progress))
            rec.update(status=SUCCEEDED, steps=result.steps_done, outputs=folder.outputs())
        except JobCancelled as exc:
            rec.update(status=CANCELLED, error=str(exc))
        except TexbridgeError as exc:
            rec.update(status=FAILED, error=str(exc))
        except Exception as exc:  # one asset's crash must not stop the batch
            rec.update(status=FAILED, error=f"{type(exc).__name__}: {exc}")
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        _annotate_job_json(folder, rec)
        return rec


def _load_staged(asset: AssetSpec, data: bytes):
    """A mesh sent through Ray's object store: written to a private temp file, then loaded."""
    from engine.mesh import load_mesh

    with tempfile.TemporaryDirectory(prefix="texbridge-stage-") as tmp:
        path = Path(tmp) / Path(asset.mesh).name
        path.write_bytes(data)
        return load_mesh(path)


def _annotate_job_json(folder: JobFolder, rec: dict) -> None:
    """Add the batch's view of the attempt to job.json (under "batch")."""
    data = folder.read_record()
    if data is None:
        return
    data["batch"] = {k: rec.get(k) for k in ("attempts", "node", "gpu", "pid", "resumed", "resumed_from_step",
                                             "steps", "seconds", "status")}
    if rec.get("steps") is not None:
        data["batch"]["steps_run"] = rec["steps"] - rec.get("resumed_from_step", 0)
    folder.write_record(data)
