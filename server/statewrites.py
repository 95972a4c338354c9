"""Job state that is never lost silently, and the store's disk-space checks.

``StateWrites`` persists a job's transition (to succeeded, failed or cancelled) with
retries. A transition the store cannot take (its disk is full, another process holds
its lock) is kept in memory: the API, health and event streams report it from there
(the terminal event gets the id the store will give it), and the supervisor check
writes it as soon as the store can write. Every failed write is logged with the job id.

While the store cannot write, or its filesystem has less free space than a submit
needs, ``submit_problem`` answers 507 (disk full) or 503 with a message naming the
filesystem and the space needed.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.diskspace import disk_full_message, existing_ancestor, free_bytes
from server.config import Reliability
from server.store import TERMINAL, JobStore, iso

log = logging.getLogger("texbridge.server")

#: Errors that mean "the store (or its disk) cannot write right now", not a bug.
STORE_ERRORS = (sqlite3.Error, OSError)


class StoreUnavailable(Exception):
    """The store cannot write; ``status`` is 507 (disk full) or 503, the message says what to do."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def is_disk_full(exc: BaseException | None) -> bool:
    """True for ENOSPC/EDQUOT anywhere in the exception chain, or SQLite's "database or disk is full"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if isinstance(exc, sqlite3.Error) and ("disk is full" in str(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem holding ``path``."""
    p = existing_ancestor(path)
    dev = p.stat().st_dev
    while p.parent != p and p.parent.stat().st_dev == dev:
        p = p.parent
    return p


@dataclass(frozen=True)
class Pending:
    """A terminal transition the store could not take yet (``seq``: the id its event gets)."""

    state: str
    error: str | None
    data: dict[str, Any]
    seq: int
    finished_at: float


class StateWrites:
    """Retried state writes; transitions that could not be written are kept in memory."""

    def __init__(self, store: JobStore, reliability: Reliability):
        self.store = store
        self.reliability = reliability
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._failure: BaseException | None = None  # the last store write failed with this (None after a success)

    # -- writing -------------------------------------------------------------------
    def attempt(self, job_id: str, what: str, fn: Callable[..., Any], *args: Any, attempts: int | None = None,
                **kwargs: Any) -> tuple[bool, Any]:
        """Call the store write ``fn`` up to ``attempts`` times; (True, result) or (False, None).

        Each failure is logged with the job id and ``what`` was being done."""
        n = max(1, attempts or self.reliability.write_attempts)
        delay = self.reliability.write_retry_delay_s
        for i in range(n):
            try:
                result = fn(*args, **kwargs)
            except STORE_ERRORS as exc:
                self.note_failure(job_id, what, exc, f" (try {i + 1} of {n})")
                if i + 1 < n:
                    time.sleep(delay)
                    delay *= 2
            else:
                self._failure = None
                return True, result
        return False, None

    def note_failure(self, job_id: str, what: str, exc: BaseException, detail: str = "") -> None:
        """Log a failed store write with the job id; the store counts as failing until a write succeeds."""
        self._failure = exc
        log.warning("job %s: could not %s%s: %s: %s", job_id, what, detail, type(exc).__name__, exc)

    def finish(self, job_id: str, state: str, error: str | None = None, data: dict[str, Any] | None = None,
               attempts: int | None = None) -> bool:
        """Move a job to a terminal state: in the store, else in memory until a later ``flush``.

        True when the store holds it."""
        at = time.time()
        ok, _ = self.attempt(job_id, f"record that it {state}", self.store.finish, job_id, state, error=error, data=data,
                             at=at, attempts=attempts)
        if ok:
            with self._lock:
                self._pending.pop(job_id, None)
            return True
        with self._lock:
            if job_id in self._pending:
                return False
            try:
                raw = self.store.raw(job_id)
            except STORE_ERRORS as exc:  # pragma: no cover - reads work on a full disk (WAL)
                log.error("job %s: cannot read it to keep its %s state (%s); the check retries", job_id, state, exc)
                raw = None
            if raw is None or raw["state"] in TERMINAL:
                return raw is not None
            self._pending[job_id] = Pending(state, error, dict(data or {}), int(raw["last_event"]) + 1, at)
        log.error("job %s: its %s state is kept in memory and reported from there; it is written to the store as soon "
                  "as the store can write (checked every %g s)", job_id, state, self.reliability.check_interval_s)
        return False

    def flush(self) -> list[str]:
        """Write every transition kept in memory (one try each); returns the ids written."""
        with self._lock:
            items = list(self._pending.items())
        done: list[str] = []
        for job_id, p in items:
            ok, _ = self.attempt(job_id, f"write its {p.state} state kept in memory", self.store.finish, job_id, p.state,
                                 error=p.error, data=p.data, at=p.finished_at, attempts=1)
            if ok:
                with self._lock:
                    self._pending.pop(job_id, None)
                log.warning("job %s: its %s state is now in the store", job_id, p.state)
                done.append(job_id)
        return done

    # -- reading -------------------------------------------------------------------
    def pending(self, job_id: str) -> Pending | None:
        with self._lock:
            return self._pending.get(job_id)

    def pending_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pending)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._pending.pop(job_id, None)

    def overlay(self, job: dict[str, Any] | None) -> dict[str, Any] | None:
        """``job`` (a public Job dict) as the server knows it: a state kept in memory wins."""
        p = self.pending(job["id"]) if job is not None else None
        if p is None:
            return job
        return dict(job, state=p.state, error=p.error, finished_at=iso(p.finished_at))

    def event(self, job_id: str) -> tuple[int, str, str] | None:
        """The terminal event of a state kept in memory: (id, type, data JSON), as the store will write it."""
        p = self.pending(job_id)
        if p is None:
            return None
        return p.seq, p.state, json.dumps(JobStore.terminal_payload(p.state, p.error, p.data))

    @property
    def last_failure(self) -> BaseException | None:
        """The error of the last store write, None when it succeeded."""
        return self._failure

    def failure(self) -> BaseException | None:
        """Why the store cannot write, while a job's state is kept in memory (else None)."""
        with self._lock:
            if not self._pending:
                return None
        return self._failure or sqlite3.OperationalError("a job's state is not written yet (the next check writes it)")


def unavailable(writes: StateWrites, store_path: Path, need: int, doing: str,
                exc: BaseException | None = None) -> StoreUnavailable:
    """The error for a request that needs the store while it cannot write (``exc``: why; default
    the last failed write)."""
    exc = exc if exc is not None else (writes.last_failure or writes.failure())
    folder = store_path.parent
    if is_disk_full(exc):
        free = free_bytes(folder)
        return StoreUnavailable(
            f"{disk_full_message(need, folder, free)} (filesystem mounted at {mount_point(folder)}): the job store "
            f"cannot be written ({exc}), so the engine cannot {doing}; free space there and retry", 507)
    return StoreUnavailable(f"the job store {store_path} cannot be written right now ({type(exc).__name__}: {exc}), so "
                            f"the engine cannot {doing}; retry in a few seconds (see the server log)", 503)


def submit_problem(writes: StateWrites, store_path: Path, jobs_dir: Path, upload_bytes: int,
                   headroom: int) -> StoreUnavailable | None:
    """Why a submit of ``upload_bytes`` cannot be stored now (507/503), or None."""
    store_dir = store_path.parent
    same = existing_ancestor(jobs_dir).stat().st_dev == store_dir.stat().st_dev
    checks = [(jobs_dir, upload_bytes + (headroom if same else 0))]
    if not same:
        checks.append((store_dir, headroom))
    for folder, need in checks:
        free = free_bytes(folder)
        if free < need:
            return StoreUnavailable(
                f"{disk_full_message(need, folder, free)} (filesystem mounted at {mount_point(folder)}): the engine "
                "cannot store new jobs; free space there and resubmit", 507)
    if writes.failure() is not None:
        return unavailable(writes, store_path, headroom, "store new jobs")
    return None
