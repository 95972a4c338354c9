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
  killed and the job is cancelled anyway;
- the store cannot write (full disk, lock held elsewhere): transitions are retried and
  kept in memory meanwhile (``server.statewrites``); a check every
  ``reliability.check_interval_s`` (and at start-up) writes them, and requeues or fails
  any job marked running that no worker runs;
- a job whose checkpoint would not fit on its disk fails before it starts
  (``engine.diskspace``); the engine checks again before each checkpoint.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from engine.diskspace import DiskFull, checkpoint_bytes, require_free, texture_bytes
from engine.jobfolder import JobFolder
from engine.jobstate import JobState
from server.config import ServerConfig
from server.statewrites import StateWrites, log, unavailable
from server.store import TERMINAL, JobStore
from server.workerproc import WorkerHandle, WorkerKeeper, describe_exit

#: Seconds a running job gets to checkpoint when the server stops cleanly.
SHUTDOWN_GRACE_S = 10.0

__all__ = ["EngineBusy", "JobConflict", "JobManager", "describe_exit"]


class EngineBusy(Exception):
    """The worker is running a job; the request needs an idle engine."""


class JobConflict(Exception):
    """The job's state does not allow the request (message says why)."""


class JobManager(WorkerKeeper):
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
        self._worker: WorkerHandle | None = None
        self.running_job: str | None = None
        self.device: str = config.device
        self.versions: dict[str, str] = {}
        self.loaded_model: str | None = None
        self.writes = StateWrites(store, config.reliability)
        self._cancel_wanted: set[str] = set()  # cancel requests the store could not record
        self._checker: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def folder(self, job_id: str) -> JobFolder:
        """The job's folder (``engine.jobfolder``: every path inside it is named there)."""
        return JobFolder(self.job_dir(job_id))

    def start(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.check(startup=True)
        self._thread = threading.Thread(target=self._loop, name="texbridge-dispatcher", daemon=True)
        self._thread.start()
        self._checker = threading.Thread(target=self._check_loop, name="texbridge-check", daemon=True)
        self._checker.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        if self._checker is not None:
            self._checker.join(10)
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _check_loop(self) -> None:
        while not self._stop.wait(self.config.reliability.check_interval_s):
            try:
                self.check()
            except Exception:  # the check must outlive any single failure
                log.exception("supervisor check failed; it runs again in %g s", self.config.reliability.check_interval_s)

    def check(self, startup: bool = False) -> None:
        """Write the states kept in memory, then requeue (from the checkpoint, within the crash
        limit) or fail every job marked running that no worker is running."""
        for job_id in self.writes.flush():
            self.notify(job_id)
        reason = ("the engine process stopped while this job was running" if startup
                  else "the job was marked running but no engine worker was running it")
        with self._lock:
            for job_id in self.store.ids_in_state(JobState.RUNNING.value):
                if job_id != self.running_job and self.writes.pending(job_id) is None:
                    log.warning("job %s: %s; requeueing it from its checkpoint", job_id, reason)
                    self._after_worker_death(job_id, reason, attempts=None if startup else 1)

    def view(self, job_id: str) -> dict[str, Any] | None:
        """The job as the server knows it (a state not yet written to the store included)."""
        return self.writes.overlay(self.store.get(job_id))

    def list_view(self) -> list[dict[str, Any]]:
        return [self.writes.overlay(j) for j in self.store.list()]

    def queue_length(self) -> int:
        return len(set(self.store.ids_in_state(JobState.QUEUED.value)) - self.writes.pending_ids())

    # -- requests from the API -----------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.view(job_id)
            if job is None or job["state"] in TERMINAL:
                return job
            if job["state"] == JobState.QUEUED or job_id != self.running_job:
                self.writes.finish(job_id, JobState.CANCELLED.value)  # queued, or marked running with no worker: it ends now
            else:
                ok, _ = self.writes.attempt(job_id, "record its cancel request", self.store.request_cancel, job_id)
                if not ok:
                    self._cancel_wanted.add(job_id)
                try:
                    self.folder(job_id).cancel_flag.touch()
                except OSError as exc:
                    log.warning("job %s: cannot write its cancel flag (%s); its worker is killed after %g s",
                                job_id, exc, self.config.cancel_grace_s)
        self.notify(job_id)
        return self.view(job_id)

    def delete(self, job_id: str) -> bool:
        import shutil

        with self._lock:
            job = self.view(job_id)
            if job is None:
                return False
            if job["state"] == JobState.RUNNING:
                raise JobConflict("job is running; cancel it first (POST /v1/jobs/{id}/cancel), then delete it")
            ok, _ = self.writes.attempt(job_id, "delete it", self.store.delete, job_id)
            if not ok:
                raise unavailable(self.writes, self.store.path, self.config.reliability.store_headroom_bytes, "delete jobs",
                                  exc=self.writes.last_failure)
            self.writes.drop(job_id)
            self._cancel_wanted.discard(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self.notify(job_id)
        return True

    def unload(self, timeout: float = 60.0) -> dict[str, Any]:
        job_id = self.running_job
        # A job whose terminal event is already stored counts as done: the dispatcher
        # frees the worker right after storing it and then runs this command.
        row = self.view(job_id) if job_id is not None else None
        if row is not None and row["state"] == JobState.RUNNING:
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
                log.exception("dispatcher error (job %s)", self.running_job)
                worker, self._worker = self._worker, None
                if worker is not None:  # its messages must not leak into the next job
                    worker.kill()
                with self._lock:
                    job_id = self.running_job
                    if job_id is not None:
                        self.store_error(job_id, exc)
                    self.running_job = None
                if job_id is not None:
                    self.folder(job_id).remove_temp_files()
                    self.notify(job_id)
                time.sleep(0.5)

    def _step(self) -> None:
        """One dispatcher round: pending commands, then the next queued job (or a short wait)."""
        self._run_commands()
        started = False
        wait = 0.5
        with self._lock:
            row = self.store.next_queued(exclude=self.writes.pending_ids())
            if row is not None:
                job_id = row["id"]
                problem = self._space_problem(row)
                if problem is not None:  # fail before anything is written
                    log.warning("job %s: %s", job_id, problem)
                    self.writes.finish(job_id, JobState.FAILED.value, error=problem)
                    self.notify(job_id)
                    wait = 0.0  # on to the next queued job
                else:
                    resume = self.folder(job_id).has_checkpoint()
                    started, _ = self.writes.attempt(job_id, "mark it running", self.store.mark_running, job_id, resume, attempts=1)
                    if started:
                        self.running_job = job_id
                    else:  # the job stays queued; try again after a check interval
                        wait = self.config.reliability.check_interval_s
        if not started:
            self._ensure_worker_or_none()
            with self._wake:
                if wait and not self._commands and not self._stop.is_set():
                    self._wake.wait(wait)
            return
        self.notify(job_id)
        self._run_job(row, resume)
        with self._lock:
            self.running_job = None
        self.folder(job_id).remove_temp_files()  # what a killed writer left (its worker is done)

    def _space_problem(self, row) -> str | None:
        """``disk full: ...`` when the job's checkpoint would not fit in its folder, else None."""
        size = int(json.loads(row["spec"]).get("texture_size", 0) or 0)
        try:
            require_free(self.job_dir(row["id"]), checkpoint_bytes(texture_bytes(size)))
        except DiskFull as exc:
            return str(exc)
        return None

    def _run_commands(self) -> None:
        with self._wake:
            commands, self._commands = self._commands, []
        for name, fut in commands:
            try:
                if name == "unload":
                    fut.set_result(self._unload_now())
            except Exception as exc:  # pragma: no cover
                fut.set_exception(exc)

    def _payload(self, row, resume: bool) -> dict[str, Any]:
        spec = json.loads(row["spec"])
        return {"job_id": row["id"], "job_dir": str(self.job_dir(row["id"])), "spec": spec, "model": spec.get("model", "auto"), "resume": resume}

    def _run_job(self, row, resume: bool) -> None:
        job_id = row["id"]
        w = self._live_worker()
        suspend_flag = self.folder(job_id).suspend_flag
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
                if job_id in self._cancel_wanted or (raw is not None and raw["cancel_requested"]):
                    cancel_deadline = time.monotonic() + self.config.cancel_grace_s
            elif time.monotonic() > cancel_deadline:
                self._worker = None
                w.kill()
                self.writes.finish(job_id, JobState.CANCELLED.value, data={"killed": True})
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

    def _suspend(self, job_id: str, w: WorkerHandle) -> None:
        """Clean shutdown: the job goes back to the queue (not counted as a crash) and
        resumes from its checkpoint on the next start."""
        self._worker = None
        w.kill()
        self.folder(job_id).suspend_flag.unlink(missing_ok=True)
        self.writes.attempt(job_id, "requeue it for the next start", self.store.requeue_after_crash, job_id,
                            "the engine was stopped; the job resumes on the next start", count=False)
        self.notify(job_id)  # if that failed, the next start's check requeues it

    def _handle_job_message(self, job_id: str, kind: str, data: dict[str, Any]) -> bool:
        """Persist one worker message; True when the job reached a terminal state.

        A progress/stage/preview event the store cannot take is logged and dropped (the job
        goes on); a terminal state is retried, then kept in memory (``StateWrites``)."""
        if kind in ("progress", "stage"):
            self.writes.attempt(job_id, f"record a {kind} event", self.store.record, job_id, kind, data, attempts=1)
        elif kind == "preview":
            folder = self.folder(job_id)
            rel = folder.relative(str(data["path"]))  # only files inside the job folder are served
            if rel is not None:
                self.writes.attempt(job_id, "record a preview", self.store.add_preview, job_id, int(data["step"]),
                                    rel, attempts=1)
        elif kind == JobState.SUCCEEDED:
            folder = self.folder(job_id)
            if folder.texture_png.is_file():  # the final texture is the last version
                self.writes.attempt(job_id, "record its final texture", self.store.add_preview, job_id,
                                    int(data.get("steps_done", 0)), folder.relative(folder.texture_png))
            self.writes.finish(job_id, JobState.SUCCEEDED.value, data=data)
        elif kind == JobState.FAILED:
            detail = {k: data[k] for k in ("kind", "field", "problem", "fix") if data.get(k)}  # engine error fields
            self.writes.finish(job_id, JobState.FAILED.value, error=str(data.get("error", "unknown error")), data=detail)
        elif kind == JobState.CANCELLED:
            self.writes.finish(job_id, JobState.CANCELLED.value)
        else:
            return False
        self.notify(job_id)
        return kind in TERMINAL

    def store_error(self, job_id: str, exc: Exception) -> None:
        self.writes.finish(job_id, JobState.FAILED.value, error=f"the server could not run or record this job ({type(exc).__name__}: "
                           f"{exc}); check free disk space and the server log, then resubmit")

    def _after_worker_death(self, job_id: str, reason: str, attempts: int | None = None) -> None:
        """The job's worker is gone: cancel it (if asked), else requeue it (from its checkpoint)
        or fail it after ``max_worker_crashes``. A requeue the store cannot take is logged;
        the job stays marked running and the next check tries again."""
        raw = self.store.raw(job_id)
        if raw is None or raw["state"] != JobState.RUNNING:
            return
        self.folder(job_id).remove_temp_files()
        if raw["cancel_requested"] or job_id in self._cancel_wanted:
            self.writes.finish(job_id, JobState.CANCELLED.value, attempts=attempts)
        else:
            ok, crashes = self.writes.attempt(job_id, f"requeue it ({reason})", self.store.requeue_after_crash, job_id,
                                              reason, attempts=attempts)
            if not ok:
                log.error("job %s: it stays marked running with no worker until the store can write; the check "
                          "retries every %g s", job_id, self.config.reliability.check_interval_s)
            elif crashes >= self.config.max_worker_crashes:
                self.writes.finish(
                    job_id,
                    JobState.FAILED.value,
                    error=f"the engine worker died {crashes} times while running this job (last: {reason}); "
                    "lower texture_size/render_size or check the server log",
                    attempts=attempts,
                )
        self.notify(job_id)
