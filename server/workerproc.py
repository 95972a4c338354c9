"""The server's side of the worker process: spawning and killing it, and naming how it died.
(What a stopped job left in its folder is ``engine.jobfolder.JobFolder``'s to answer.)"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from typing import Any

from server.config import ServerConfig
from server.worker import worker_main

log = logging.getLogger("texbridge.server")


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


class WorkerHandle:
    """One spawned worker process and the server's end of its pipe."""

    def __init__(self, config: ServerConfig):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        args = (child, os.getpid(), config.device, config.runner, config.limits.mesh_config())
        self.proc = ctx.Process(target=worker_main, args=args, name="texbridge-worker", daemon=True)
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


class WorkerKeeper:
    """The worker a ``JobManager`` keeps warm between jobs (mixin).

    Uses the manager's ``config``, ``_stop`` and ``_worker``; keeps ``device``, ``versions``
    and ``loaded_model`` as the worker last reported them."""

    @property
    def worker_pid(self) -> int | None:
        w = self._worker
        return w.pid if w is not None and w.proc.is_alive() else None

    def _live_worker(self) -> WorkerHandle:
        """The warm worker, or a fresh one if it died."""
        if self._worker is None or not self._worker.proc.is_alive():
            if self._worker is not None:
                self._worker.kill()
            self._worker = WorkerHandle(self.config)
        return self._worker

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
            self._worker = WorkerHandle(self.config)
        except OSError as exc:
            log.warning("cannot start a worker process (%s); the next job starts one", exc)
            self._worker = None

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
