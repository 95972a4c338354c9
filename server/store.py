"""The job store: SQLite (WAL) holding jobs, their events and preview versions.

Every state change is written together with its event in one transaction, before any
client sees it, so an event stream replayed from ``Last-Event-ID`` is exact and a
server killed at any moment restarts from a consistent state. One connection guarded
by a lock (the server's writes are few and short).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine.jobstate import TERMINAL, JobState

#: The event types that end a job's stream: the terminal state words (``engine.jobstate``).
TERMINAL_EVENTS = TERMINAL
QUEUED, RUNNING = JobState.QUEUED.value, JobState.RUNNING.value

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    preview_version INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    spec TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    last_event INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS previews (
    job_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (job_id, version)
);
"""


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DuplicateKey(Exception):
    """An idempotency key is already taken; ``job`` is the first job."""

    def __init__(self, job: dict[str, Any]):
        super().__init__(job["id"])
        self.job = job


class JobStore:
    """SQLite-backed jobs/events/previews. All methods are thread-safe."""

    def __init__(self, path: Path, busy_timeout_s: float = 30.0):
        """busy_timeout_s: how long a write waits for a lock another process holds before it fails."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers -------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error) under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # also after a failed COMMIT (disk full)
                    self._db.execute("ROLLBACK")
                raise

    @staticmethod
    def _emit(db: sqlite3.Connection, job_id: str, type_: str, data: dict[str, Any]) -> int:
        row = db.execute("SELECT last_event FROM jobs WHERE id=?", (job_id,)).fetchone()
        seq = int(row["last_event"]) + 1
        db.execute("UPDATE jobs SET last_event=? WHERE id=?", (seq, job_id))
        db.execute(
            "INSERT INTO events (job_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
            (job_id, seq, type_, json.dumps(data), time.time()),
        )
        return seq

    def _get(self, db: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        return db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()

    @staticmethod
    def to_public(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            "id": row["id"],
            "state": row["state"],
            "created_at": iso(row["created_at"]),
            "started_at": iso(row["started_at"]),
            "finished_at": iso(row["finished_at"]),
            "step": row["step"],
            "total_steps": row["total_steps"],
            "stage": row["stage"],
            "preview_version": row["preview_version"],
            "error": row["error"],
            "spec": json.loads(row["spec"]),
            "attempts": row["attempts"],
        }

    # -- jobs ----------------------------------------------------------------------
    def create_job(self, job_id: str, spec: dict[str, Any], total_steps: int, idempotency_key: str | None) -> dict[str, Any]:
        """Insert a queued job and its ``queued`` event. Raises ``DuplicateKey`` for a reused key."""
        with self._lock:
            try:
                with self._tx() as db:
                    db.execute(
                        "INSERT INTO jobs (id, state, created_at, total_steps, spec, idempotency_key) VALUES (?, ?, ?, ?, ?, ?)",
                        (job_id, QUEUED, time.time(), total_steps, json.dumps(spec), idempotency_key),
                    )
                    self._emit(db, job_id, QUEUED, {"state": QUEUED})
            except sqlite3.IntegrityError:
                existing = self.find_by_key(idempotency_key) if idempotency_key else None
                if existing is None:
                    raise
                raise DuplicateKey(existing) from None
            return self.get(job_id)

    def find_by_key(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self.to_public(self._db.execute("SELECT * FROM jobs WHERE idempotency_key=?", (key,)).fetchone())

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.to_public(self._get(self._db, job_id))

    def raw(self, job_id: str) -> sqlite3.Row | None:
        with self._lock:
            return self._get(self._db, job_id)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq DESC").fetchall()
        return [self.to_public(r) for r in rows]

    def next_queued(self, exclude: frozenset[str] | set[str] = frozenset()) -> sqlite3.Row | None:
        """The oldest queued job whose id is not in ``exclude``."""
        with self._lock:
            if not exclude:
                return self._db.execute("SELECT * FROM jobs WHERE state=? ORDER BY seq LIMIT 1", (QUEUED,)).fetchone()
            marks = ",".join("?" * len(exclude))
            return self._db.execute(
                f"SELECT * FROM jobs WHERE state=? AND id NOT IN ({marks}) ORDER BY seq LIMIT 1", (QUEUED, *exclude)
            ).fetchone()

    def count_state(self, state: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (state,)).fetchone()[0])

    def ids_in_state(self, state: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state=? ORDER BY seq", (state,))]

    def mark_running(self, job_id: str, resume: bool) -> dict[str, Any]:
        with self._tx() as db:
            now = time.time()
            db.execute(
                "UPDATE jobs SET state=?, attempts=attempts+1, started_at=COALESCE(started_at, ?) WHERE id=?",
                (RUNNING, now, job_id),
            )
            row = self._get(db, job_id)
            self._emit(db, job_id, "started", {"attempt": row["attempts"], "resume": resume, "step": row["step"]})
        return self.get(job_id)

    def record(self, job_id: str, type_: str, data: dict[str, Any]) -> int:
        """Persist a progress/stage event (and the job's step/stage) in one transaction."""
        with self._tx() as db:
            if type_ == "progress":
                db.execute(
                    "UPDATE jobs SET step=?, total_steps=?, stage=? WHERE id=?",
                    (int(data["step"]), int(data["total_steps"]), int(data["stage"]), job_id),
                )
            elif type_ == "stage":
                db.execute("UPDATE jobs SET stage=? WHERE id=?", (int(data["stage"]), job_id))
            return self._emit(db, job_id, type_, data)

    def add_preview(self, job_id: str, step: int, path: str) -> int:
        """Record a texture snapshot (``path`` relative to the job folder); returns its version (1, 2, ...)."""
        with self._tx() as db:
            version = int(self._get(db, job_id)["preview_version"]) + 1
            db.execute("INSERT INTO previews (job_id, version, step, path) VALUES (?, ?, ?, ?)", (job_id, version, step, path))
            db.execute("UPDATE jobs SET preview_version=? WHERE id=?", (version, job_id))
            self._emit(db, job_id, "preview", {"version": version, "step": step})
            return version

    def preview(self, job_id: str, version: int | None) -> sqlite3.Row | None:
        with self._lock:
            if version is None:
                return self._db.execute(
                    "SELECT * FROM previews WHERE job_id=? ORDER BY version DESC LIMIT 1", (job_id,)
                ).fetchone()
            return self._db.execute("SELECT * FROM previews WHERE job_id=? AND version=?", (job_id, version)).fetchone()

    @staticmethod
    def terminal_payload(state: str, error: str | None, data: dict[str, Any] | None) -> dict[str, Any]:
        """The data of a terminal event."""
        payload = dict(data or {})
        payload["state"] = state
        if error is not None:
            payload["error"] = error
        return payload

    def finish(self, job_id: str, state: str, error: str | None = None, data: dict[str, Any] | None = None,
               at: float | None = None) -> None:
        """Move a job to a terminal state (finished ``at``, default now) and emit the matching terminal event."""
        assert state in TERMINAL
        with self._tx() as db:
            row = self._get(db, job_id)
            if row is None or row["state"] in TERMINAL:
                return
            db.execute("UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=?",
                       (state, error, time.time() if at is None else at, job_id))
            self._emit(db, job_id, state, self.terminal_payload(state, error, data))

    def requeue_after_crash(self, job_id: str, reason: str, count: bool = True) -> int:
        """Put a running job back in the queue after its worker died; returns its crash count.

        count: False for a clean server stop (not held against the job).
        """
        with self._tx() as db:
            db.execute("UPDATE jobs SET state=?, crashes=crashes+? WHERE id=?", (QUEUED, 1 if count else 0, job_id))
            row = self._get(db, job_id)
            self._emit(db, job_id, QUEUED, {"state": QUEUED, "retry": True, "reason": reason, "crashes": row["crashes"]})
            return int(row["crashes"])

    def request_cancel(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))

    def delete(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM events WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM previews WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    # -- events --------------------------------------------------------------------
    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[tuple[int, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, type, data FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?", (job_id, after, limit)
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]
