"""Texture one batch asset in its job folder: the unit of work of the sequential loop and of
every Ray actor (``engine.batch.ray_backend``). It calls the same runner as ``texbridge texture``.

An attempt: decide whether to resume (job.json not done and a checkpoint present -> continue
from it), note who works on it in ``<job>/batch_attempt.json`` (attempt, node, pid, GPU, the
step it resumed from), run ``run_texture_job`` with a prior kept loaded between assets, and
return the asset's record for ``batch_summary.json``. The record is also stored under
``"batch"`` in the asset's job.json, so job.json shows which attempt finished and from which
step it resumed. User errors (bad mesh, bad spec) come back as a failed record, never raised:
they are not retried. Only a dead process (the caller sees no record) is retried.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine.batch.manifest import AssetSpec
from engine.errors import JobCancelled, TexbridgeError
from engine.runner import CHECKPOINT, JOB_JSON, JobCallbacks, ProgressEvent

#: The state words of a batch asset. DONE is the word job.json uses for a finished job
#: (the server says "succeeded"; one constant here so the unification is a one-line change).
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
RUNNING = "running"
QUEUED = "queued"
STATES = (DONE, FAILED, SKIPPED, CANCELLED, RUNNING, QUEUED)

ATTEMPT_JSON = "batch_attempt.json"


def job_status(out: str | Path) -> str | None:
    """The status in ``out/job.json`` (None without one, or when it cannot be read)."""
    try:
        return json.loads((Path(out) / JOB_JSON).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


def outputs(out: str | Path) -> dict[str, str]:
    out = Path(out)
    return {"glb": str(out / "textured.glb"), "texture": str(out / "texture.png"),
            "preview": str(out / "preview.png"), "job_json": str(out / JOB_JSON)}


def base_record(asset: AssetSpec, status: str, **extra) -> dict:
    """A summary record: the same keys for every asset and state."""
    rec = {"asset": asset.name, "out": asset.out, "status": status,
           "prompt": asset.job.prompt if asset.job is not None else None,
           "node": None, "gpu": None, "attempts": 0, "seconds": 0.0, "error": None}
    rec.update(extra)
    return rec


def resume_point(out: Path) -> tuple[bool, int]:
    """(resume, step it resumes from): resume when job.json is not done and a checkpoint exists."""
    status = job_status(out)
    if status is None:
        return False, 0
    if status == DONE:  # a rerun of a finished asset (skip-done off) starts over
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return False, 0
    if not (out / CHECKPOINT).is_file():
        return False, 0
    from engine.checkpoint import load_checkpoint

    try:
        return True, int(load_checkpoint(out / CHECKPOINT).step)
    except Exception:  # a torn or foreign checkpoint: start over rather than fail the asset
        return False, 0


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


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
        from engine.priors.loading import load_prior, resolve_device

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
        """Run one attempt at ``asset``; returns its summary record (status done/failed/cancelled)."""
        from engine.mesh import load_mesh
        from engine.runner import run_texture_job

        out, job = Path(asset.out), asset.job
        rec = base_record(asset, RUNNING, node=self.node, attempts=attempt, pid=os.getpid(),
                          resumed=False, resumed_from_step=0, steps=None)
        t0 = time.perf_counter()
        prior = None
        try:
            out.mkdir(parents=True, exist_ok=True)
            resume, from_step = resume_point(out)
            rec.update(resumed=resume, resumed_from_step=from_step)
            _write_json(out / ATTEMPT_JSON, {"attempt": attempt, "node": self.node, "pid": os.getpid(),
                                             "resumed_from_step": from_step,
                                             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            mesh = _load_staged(asset, mesh_bytes) if mesh_bytes is not None else load_mesh(asset.mesh)
            prior = self._prior_for(job.model, job.device)  # a broken mesh fails before any model is loaded
            rec["gpu"] = self._gpu_label(prior)
            result = run_texture_job(job, out, mesh=mesh, prior=prior, resume=resume,
                                     callbacks=JobCallbacks(should_cancel=should_cancel, on_progress=on_progress))
            rec.update(status=DONE, steps=result.steps_done, outputs=outputs(out))
        except JobCancelled as exc:
            rec.update(status=CANCELLED, error=str(exc))
        except TexbridgeError as exc:
            rec.update(status=FAILED, error=str(exc))
        except Exception as exc:  # one asset's crash must not stop the batch
            rec.update(status=FAILED, error=f"{type(exc).__name__}: {exc}")
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        _annotate_job_json(out, rec)
        return rec


def _load_staged(asset: AssetSpec, data: bytes):
    """A mesh sent through Ray's object store: written to a private temp file, then loaded."""
    from engine.mesh import load_mesh

    with tempfile.TemporaryDirectory(prefix="texbridge-stage-") as tmp:
        path = Path(tmp) / Path(asset.mesh).name
        path.write_bytes(data)
        return load_mesh(path)


def _annotate_job_json(out: Path, rec: dict) -> None:
    """Add the batch's view of the attempt to job.json (under "batch")."""
    p = out / JOB_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    data["batch"] = {k: rec.get(k) for k in ("attempts", "node", "gpu", "pid", "resumed", "resumed_from_step",
                                             "steps", "seconds", "status")}
    if rec.get("steps") is not None:
        data["batch"]["steps_run"] = rec["steps"] - rec.get("resumed_from_step", 0)
    _write_json(p, data)
