"""The job supervisor: a FIFO queue run one job at a time in a worker process.

A dispatcher thread picks the oldest queued job, hands it to the worker
(``server.worker``) and persists everything the worker reports (progress, stage,
previews, the outcome) through the store before notifying event streams.

Failure handling:
- the worker dies (crash, OOM killer, ``kill -9``): the job goes back to the queue and
  resumes from its last checkpoint in a fresh worker; after ``max_worker_crashes``
  deaths it is failed with the reason;
- the server dies: on the next start, jobs left ``running`` are requeued the same way;
- cancel: a flag file the loop checks every step; after ``cancel_grace_s`` the worker is
  killed and the job is cancelled anyway.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from server.config import ServerConfig
from server.store import TERMINAL, JobStore
from server.worker import CANCEL_FLAG, SUSPEND_FLAG, worker_main

#: Seconds a running job gets to checkpoint when the server stops cleanly.
SHUTDOWN_GRACE_S = 10.0


def has_checkpoint(job_dir: Path) -> bool:
    """True when the runner left a complete checkpoint (``checkpoints/latest.*``, not a temp file)."""
    folder = job_dir / "checkpoints"
    if not folder.is_dir():
        return False
    return any(p.name.startswith("latest.") and not p.name.endswith(".tmp") and p.is_file() for p in folder.iterdir())


class EngineBusy(Exception):
    """The worker is running a job; the request needs an idle engine."""


class JobConflict(Exception):
    """The job's state does not allow the request (message says why)."""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the out-of-memory killer)" if -code == getattr(signal, "SIGKILL", 9) else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with code {code}"


class _WorkerHandle:
    def __init__(self, device: str):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, os.getpid(), device), name="texbridge-worker", daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def kill(self) -> int | None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        try:
            self.conn.close()
        except OSError:
            pass
        return self.proc.exitcode


class JobManager:
    """Owns the worker and the dispatcher thread. Thread-safe public methods."""

    def __init__(self, config: ServerConfig, store: JobStore, notify: Callable[[str], None]):
        self.config = config
        self.store = store
        self.notify = notify
        self.jobs_dir = config.data_dir / "jobs"
        self._lock = threading.RLock()  # guards picking a job vs cancel/delete
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._commands: list[tuple[str, Future]] = []
        self._thread: threading.Thread | None = None
        self._worker: _WorkerHandle | None = None
        self.running_job: str | None = None
        self.device: str = config.device
        self.versions: dict[str, str] = {}
        self.loaded_model: str | None = None

    # -- lifecycle -----------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def start(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="texbridge-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def recover(self) -> None:
        """Requeue jobs a previous server left ``running`` (they resume from their checkpoint)."""
        for job_id in self.store.ids_in_state("running"):
            self._after_worker_death(job_id, "the engine process stopped while this job was running")

    @property
    def worker_pid(self) -> int | None:
        w = self._worker
        return w.pid if w is not None and w.proc.is_alive() else None

    # -- requests from the API -----------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.store.get(job_id)
            if job is None or job["state"] in TERMINAL:
                return job
            if job["state"] == "queued":
                self.store.finish(job_id, "cancelled")
            else:
                self.store.request_cancel(job_id)
                try:
                    (self.job_dir(job_id) / CANCEL_FLAG).touch()
                except OSError:
                    pass  # the grace-period kill still stops it
        self.notify(job_id)
        return self.store.get(job_id)

    def delete(self, job_id: str) -> bool:
        import shutil

        with self._lock:
            job = self.store.get(job_id)
            if job is None:
                return False
            if job["state"] == "running":
                raise JobConflict("job is running; cancel it first (POST /v1/jobs/{id}/cancel), then delete it")
            self.store.delete(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self.notify(job_id)
        return True

    def unload(self, timeout: float = 60.0) -> dict[str, Any]:
        job_id = self.running_job
        # A job whose terminal event is already stored counts as done: the dispatcher
        # frees the worker right after storing it and then runs this command.
        row = self.store.get(job_id) if job_id is not None else None
        if row is not None and row["state"] == "running":
            raise EngineBusy("a job is running; cancel it or wait for it before unloading the model")
        fut: Future = Future()
        with self._wake:
            self._commands.append(("unload", fut))
            self._wake.notify_all()
        return fut.result(timeout)

    # -- dispatcher ----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # the dispatcher must outlive any single failure
                traceback.print_exc()
                job_id, self.running_job = self.running_job, None
                worker, self._worker = self._worker, None
                if worker is not None:  # its messages must not leak into the next job
                    worker.kill()
                if job_id is not None:
                    self.store_error(job_id, exc)
                    self.notify(job_id)
                time.sleep(0.5)

    def _step(self) -> None:
        """One dispatcher round: pending commands, then the next queued job (or a short wait)."""
        self._run_commands()
        with self._lock:
            row = self.store.next_queued()
            if row is not None:
                job_id = row["id"]
                resume = has_checkpoint(self.job_dir(job_id))
                self.store.mark_running(job_id, resume)
                self.running_job = job_id
        if row is None:
            self._ensure_worker_or_none()
            with self._wake:
                if not self._commands and not self._stop.is_set():
                    self._wake.wait(0.5)
            return
        self.notify(job_id)
        self._run_job(row, resume)
        self.running_job = None

    def _ensure_worker_or_none(self) -> None:
        """Keep a warm worker (spawned eagerly so its imports overlap with the queue)
        and read the messages it sends while idle (hello, unload results)."""
        if self._stop.is_set():
            return
        w = self._worker
        if w is not None:
            try:
                while w.conn.poll(0):
                    kind, data = w.conn.recv()
                    self._handle_info(kind, data)
            except (EOFError, OSError):
                pass
            if w.proc.is_alive():
                return
            self._worker = None
            w.kill()
            self.loaded_model = None
        try:
            self._worker = _WorkerHandle(self.config.device)
        except OSError:
            self._worker = None

    def _run_commands(self) -> None:
        with self._wake:
            commands, self._commands = self._commands, []
        for name, fut in commands:
            try:
                if name == "unload":
                    fut.set_result(self._unload_now())
            except Exception as exc:  # pragma: no cover
                fut.set_exception(exc)

    def _unload_now(self) -> dict[str, Any]:
        w = self._worker
        if w is None or not w.proc.is_alive():
            self.loaded_model = None
            return {"unloaded": None}
        try:
            w.conn.send(("unload", {}))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if w.conn.poll(0.2):
                    kind, data = w.conn.recv()
                    if kind == "unloaded":
                        self.loaded_model = None
                        return {"unloaded": data.get("model")}
                    self._handle_info(kind, data)
                elif not w.proc.is_alive():
                    break
        except (EOFError, OSError):
            pass
        self._worker = None
        w.kill()
        self.loaded_model = None
        return {"unloaded": None}

    def _handle_info(self, kind: str, data: dict[str, Any]) -> bool:
        if kind == "hello":
            self.device = data.get("device", self.device)
            self.versions = dict(data.get("versions", {}))
            return True
        if kind == "loaded":
            self.loaded_model = data.get("model")
            return True
        return False

    def _payload(self, row, resume: bool) -> dict[str, Any]:
        import json

        spec = json.loads(row["spec"])
        return {"job_id": row["id"], "job_dir": str(self.job_dir(row["id"])), "spec": spec, "model": spec.get("model", "auto"), "resume": resume}

    def _run_job(self, row, resume: bool) -> None:
        job_id = row["id"]
        if self._worker is None or not self._worker.proc.is_alive():
            if self._worker is not None:
                self._worker.kill()
            self._worker = _WorkerHandle(self.config.device)
        w = self._worker
        suspend_flag = self.job_dir(job_id) / SUSPEND_FLAG
        suspend_flag.unlink(missing_ok=True)
        try:
            w.conn.send(("run", self._payload(row, resume)))
        except (OSError, ValueError):
            pass  # detected as a death below
        cancel_deadline: float | None = None
        stop_deadline: float | None = None
        while True:
            if self._stop.is_set() and stop_deadline is None:
                # clean shutdown: ask the loop to checkpoint and stop (it answers "suspended")
                stop_deadline = time.monotonic() + SHUTDOWN_GRACE_S
                try:
                    suspend_flag.touch()
                except OSError:
                    stop_deadline = 0.0
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                self._suspend(job_id, w)
                return
            if cancel_deadline is None:
                raw = self.store.raw(job_id)
                if raw is not None and raw["cancel_requested"]:
                    cancel_deadline = time.monotonic() + self.config.cancel_grace_s
            elif time.monotonic() > cancel_deadline:
                self._worker = None
                w.kill()
                self.store.finish(job_id, "cancelled", data={"killed": True})
                self.notify(job_id)
                return
            try:
                ready = w.conn.poll(0.2)
                message = w.conn.recv() if ready else None
            except (EOFError, OSError):
                message, ready = None, False
                dead = True
            else:
                dead = not ready and not w.proc.is_alive()
            if dead:
                self._worker = None
                code = w.kill()
                self.loaded_model = None
                self._after_worker_death(job_id, describe_exit(code))
                return
            if message is None:
                continue
            kind, data = message
            if self._handle_info(kind, data):
                continue
            if kind == "suspended":
                self._suspend(job_id, w)
                return
            if self._handle_job_message(job_id, kind, data):
                return

    def _suspend(self, job_id: str, w: _WorkerHandle) -> None:
        """Clean shutdown: the job goes back to the queue (not counted as a crash) and
        resumes from its checkpoint on the next start."""
        self._worker = None
        w.kill()
        (self.job_dir(job_id) / SUSPEND_FLAG).unlink(missing_ok=True)
        self.store.requeue_after_crash(job_id, "the engine was stopped; the job resumes on the next start", count=False)
        self.notify(job_id)

    def _handle_job_message(self, job_id: str, kind: str, data: dict[str, Any]) -> bool:
        """Persist one worker message; True when the job reached a terminal state."""
        try:
            if kind in ("progress", "stage"):
                self.store.record(job_id, kind, data)
            elif kind == "preview":
                root = self.job_dir(job_id).resolve()
                path = (root / str(data["path"])).resolve()
                if root in path.parents:
                    self.store.add_preview(job_id, int(data["step"]), path.relative_to(root).as_posix())
            elif kind == "succeeded":
                if (self.job_dir(job_id) / "texture.png").is_file():  # the final texture is the last version
                    self.store.add_preview(job_id, int(data.get("steps_done", 0)), "texture.png")
                self.store.finish(job_id, "succeeded", data=data)
            elif kind == "failed":
                self.store.finish(job_id, "failed", error=str(data.get("error", "unknown error")))
            elif kind == "cancelled":
                self.store.finish(job_id, "cancelled")
            else:
                return False
        except Exception as exc:  # e.g. the disk holding the database is full
            self.store_error(job_id, exc)
            return kind in ("succeeded", "failed", "cancelled")
        finally:
            self.notify(job_id)
        return kind in ("succeeded", "failed", "cancelled")

    def store_error(self, job_id: str, exc: Exception) -> None:
        try:
            self.store.finish(job_id, "failed", error=f"the server could not run or record this job ({type(exc).__name__}: {exc}); "
                              "check free disk space and the server log, then resubmit")
        except Exception:
            pass

    def _after_worker_death(self, job_id: str, reason: str) -> None:
        raw = self.store.raw(job_id)
        if raw is None:
            return
        if raw["cancel_requested"]:
            self.store.finish(job_id, "cancelled")
        else:
            crashes = self.store.requeue_after_crash(job_id, reason)
            if crashes >= self.config.max_worker_crashes:
                self.store.finish(
                    job_id,
                    "failed",
                    error=f"the engine worker died {crashes} times while running this job (last: {reason}); "
                    "lower texture_size/render_size or check the server log",
                )
        self.notify(job_id)
