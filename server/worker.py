"""The worker: a child process that runs the engine, one job at a time.

Started by ``server.supervisor`` with the multiprocessing *spawn* context, so the server
process never imports torch. It keeps the diffusion prior loaded between jobs and talks
to the server over a ``Pipe`` with ``(kind, data)`` tuples:

server -> worker: ``("run", {job_id, job_dir, spec, model, resume})``, ``("unload", {})``,
    ``("shutdown", {})``.
worker -> server: ``("hello", {device, versions, pid})``, ``("loaded", {model})``,
    ``("progress", ProgressEvent fields)``, ``("stage", {stage})``, ``("preview", {step, path})``,
    ``("succeeded", {steps_done, model_name})``, ``("failed", {error})``, ``("cancelled", {})``,
    ``("suspended", {})`` (stopped for a clean server shutdown), ``("unloaded", {model})``.

The worker dies with the server (``PR_SET_PDEATHSIG`` plus a parent-pid watchdog), so a
killed server never leaves a process holding the GPU. Cancel is a flag file in the job
folder (``JobFolder.cancel_flag``) that ``should_cancel`` checks every step; each progress
snapshot the runner writes (``on_snapshot``) is kept as a texture version under
``JobFolder.previews_dir`` (a hard link: no re-encoding, no guessed path).
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from server.config import WorkerRunner

if TYPE_CHECKING:  # pragma: no cover
    from engine.mesh import MeshConfig


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def _resolve(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if "No space left on device" in str(exc) or "database or disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_space_error(exc: BaseException | None) -> BaseException | None:
    """The engine's ``DiskFull`` in the exception chain (a later write on the full disk may
    have raised over it), or None."""
    from engine.diskspace import DiskFull

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class _Worker:
    def __init__(self, conn, device: str, runner: WorkerRunner, mesh_config: "MeshConfig | None"):
        self.conn = conn
        self.device = device
        self.prior = None
        self.prior_model: str | None = None
        self.run_job = _resolve(runner.run_job)
        self.load_prior = _resolve(runner.load_prior)
        if mesh_config is None:  # only without a server (the engine's defaults)
            from engine.mesh import MeshConfig

            mesh_config = MeshConfig()
        self.mesh_config = mesh_config  # the server's limits (``Limits.mesh_config``), checked at submit

    def send(self, kind: str, data: dict[str, Any]) -> None:
        self.conn.send((kind, data))

    def unload(self) -> str | None:
        model = self.prior_model
        if self.prior is not None:
            try:
                self.prior.unload()
            except Exception:  # freeing must not kill the worker
                traceback.print_exc()
        self.prior = None
        self.prior_model = None
        gc.collect()
        torch = sys.modules.get("torch")  # nothing to free if torch was never imported
        if torch is not None:
            try:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # pragma: no cover
                pass
        return model

    def ensure_prior(self, model: str):
        if self.prior is not None and self.prior_model == model:
            return self.prior
        self.unload()
        self.prior = self.load_prior(model, self.device)
        self.prior_model = model
        self.send("loaded", {"model": getattr(self.prior, "name", model)})
        return self.prior

    def describe_failure(self, exc: Exception, user_error: type) -> dict[str, Any]:
        """The ``failed`` message: ``error`` (the server's wording) and, for an engine error,
        its ``kind``, ``field``, ``problem`` and ``fix`` (``server.errors.error_body``)."""
        from server.errors import error_body

        guard = _disk_space_error(exc)
        if guard is not None:  # the engine's own check ("disk full: need N MB in DIR, M MB free; ...")
            return error_body(guard)
        if isinstance(exc, user_error) and not _disk_full(exc):
            return error_body(exc)
        return {"error": self._failure_text(exc)}

    def _failure_text(self, exc: Exception) -> str:
        if _disk_full(exc):
            return f"disk full while writing the job's files ({exc}); free disk space and resubmit"
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            self.unload()
            return "out of memory while running the job; use a smaller texture_size/render_size/views_per_step or free memory"
        traceback.print_exc()
        return f"engine error: {type(exc).__name__}: {exc}"

    def run(self, payload: dict[str, Any]) -> None:
        from engine.errors import JobCancelled, TexbridgeError
        from engine.job import TextureJob
        from engine.jobfolder import JobFolder
        from engine.mesh import load_mesh
        from engine.runner import JobCallbacks

        folder = JobFolder(payload["job_dir"])
        counter = {"n": 0}

        def on_progress(event) -> None:
            self.send("progress", dataclasses.asdict(event))

        def on_stage(stage: int) -> None:
            self.send("stage", {"stage": int(stage)})

        def on_snapshot(step: int, snapshot: Path) -> None:
            counter["n"] += 1  # the runner's own file, shared (a resume replaces its inode, not ours)
            kept = folder.keep_preview(step, snapshot, counter["n"])
            self.send("preview", {"step": int(step), "path": folder.relative(kept)})

        if folder.cancel_flag.exists():
            self.send("cancelled", {})
            return
        if folder.suspend_flag.exists():
            self.send("suspended", {})
            return
        try:
            job = TextureJob.from_dict(payload["spec"])
            prior = self.ensure_prior(payload["model"])
            mesh = load_mesh(job.mesh, self.mesh_config)  # the server's limits, not the engine's defaults
            callbacks = JobCallbacks(on_progress=on_progress, on_stage=on_stage, on_snapshot=on_snapshot,
                                     should_cancel=folder.stop_requested)
            result = self.run_job(job, folder.root, mesh=mesh, prior=prior, callbacks=callbacks,
                                  resume=bool(payload.get("resume")))
        except JobCancelled:
            suspended = folder.suspend_flag.exists() and not folder.cancel_flag.exists()
            self.send("suspended" if suspended else "cancelled", {})
        except Exception as exc:  # every failure is reported; only the process dying is a crash
            self.send("failed", self.describe_failure(exc, TexbridgeError))
        else:
            self.send(
                "succeeded",
                {"steps_done": int(getattr(result, "steps_done", 0)), "model_name": str(getattr(result, "model_name", ""))},
            )


def worker_main(conn, parent_pid: int, device: str, runner: WorkerRunner | None = None,
                mesh_config: "MeshConfig | None" = None) -> None:
    """Entry point of the worker process (spawned): ``runner`` and ``mesh_config`` come from
    the server's config (``ServerConfig.runner``, ``Limits.mesh_config()``)."""
    from engine.environment import resolve_device, versions

    _die_with_parent(parent_pid)
    try:
        resolved = str(resolve_device(device))
    except Exception:  # e.g. cuda asked for without CUDA: each job then fails with the engine's message
        resolved = device
    worker = _Worker(conn, resolved, runner or WorkerRunner(), mesh_config)
    worker.send("hello", {"device": resolved, "versions": versions(), "pid": os.getpid()})
    while True:
        try:
            kind, data = conn.recv()
        except (EOFError, OSError):
            break
        if kind == "run":
            worker.run(data)
        elif kind == "unload":
            worker.send("unloaded", {"model": worker.unload()})
        elif kind == "shutdown":
            break
    worker.unload()
