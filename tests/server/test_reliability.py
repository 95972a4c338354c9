"""Faults that must never leave a job stuck (issue 15), with a real server, the real engine
(tiny model) and the real SQLite store:

- a full disk during a job (a small tmpfs in a private mount namespace: ``unshare -m``
  as root, which is how CI runs; skipped with the reason where that is refused);
- a job marked running with no worker, while the store cannot write (its worker frozen
  with SIGSTOP, then killed, while another process holds the store's write lock);
- a reconnect to a finished job's event stream at or past its last event.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import (
    TINY_SPEC,
    EngineServer,
    after_start,
    checkpoint_step,
    pid_alive,
    read_events,
    submit,
    wait_for,
)

CHECK_INTERVAL_S = 2.0  # server.config.Reliability.check_interval_s
LONG = dict(TINY_SPEC, steps=400, preview_every=1000)  # still running whenever the test acts
GUARD = re.compile(r"^disk full: need \d+\.\d MB in (\S+), (\d+\.\d) MB free; free disk space there and resubmit$")


# -- SSE ---------------------------------------------------------------------------------------

def _raw_stream(client: httpx.Client, job_id: str, last_id: int) -> tuple[list[str], float]:
    """Lines (comments included) of a reconnect with ``Last-Event-ID: last_id``, and the seconds until it ended."""
    t0 = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(last_id)},
                       timeout=httpx.Timeout(15.0)) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    return lines, time.monotonic() - t0


def test_reconnect_at_or_past_the_last_event_ends_at_once(client):
    job = submit(client).json()
    events = read_events(client, job["id"])
    assert events[-1][1] == "succeeded"
    final = events[-1][0]
    for last_id in (final, final + 1, final + 1000):
        lines, took = _raw_stream(client, job["id"], last_id)
        assert lines == [] and took < 2.0, (last_id, lines, took)  # no events, no keepalives: closed
    # one before the end still gets exactly the terminal event, then the end
    again = read_events(client, job["id"], last_id=final - 1, timeout=5)
    assert again == [events[-1]]


# -- a job marked running with no worker ------------------------------------------------------

@contextmanager
def _store_locked(path: Path):
    """Hold the store's write lock from another process's connection (its writes then fail)."""
    db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def _strand(srv: EngineServer, c: httpx.Client, job_id: str, times: int) -> None:
    """Kill the (frozen) worker while the caller holds the store's lock; returns once the server
    logged (for the ``times``-th time) that the job stays marked running with no worker."""
    pid = c.get("/v1/health").json()["worker_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 20)
    marker = f"job {job_id}: it stays marked running with no worker"
    wait_for(lambda: srv.log.read_text().count(marker) >= times, 60)


def test_job_running_with_no_worker_is_requeued_then_cancel_and_delete_work(tmp_path, tiny_sd_dir):
    srv = EngineServer(tmp_path, str(tiny_sd_dir)).start()
    store = srv.data / "store.sqlite3"
    try:
        with srv.client() as c:
            jid = submit(c, dict(LONG, checkpoint_every=2)).json()["id"]
            first = read_events(c, jid, until=after_start(lambda e: e[1] == "progress" and e[2]["step"] >= 3))
            assert checkpoint_step(srv.data / "jobs" / jid) >= 2

            # 1. the requeue after the worker's death cannot be written: the job is stranded
            os.kill(c.get("/v1/health").json()["worker_pid"], signal.SIGSTOP)
            with _store_locked(store):
                _strand(srv, c, jid, times=1)
                assert c.get(f"/v1/jobs/{jid}").json()["state"] == "running"
                assert c.get("/v1/health").json()["running_job"] is None
            released = time.monotonic()
            wait_for(lambda: any(t == "queued" for seq, t in _events(srv, jid) if seq > first[-1][0]),
                     CHECK_INTERVAL_S + 5, interval=0.05)
            assert time.monotonic() - released <= CHECK_INTERVAL_S + 5  # within the check interval (+ slack)
            second = read_events(c, jid, last_id=first[-1][0],
                                 until=after_start(lambda e: e[1] == "progress"))
            requeued = [e for e in second if e[1] == "queued"]
            assert len(requeued) == 1 and requeued[0][2]["retry"] is True and requeued[0][2]["crashes"] == 1
            assert "no engine worker was running it" in requeued[0][2]["reason"]
            started = [e for e in second if e[1] == "started"]
            assert started[0][2] == {"attempt": 2, "resume": True, "step": started[0][2]["step"]}
            resumed_at = [e[2]["step"] for e in second if e[1] == "progress"][0]
            assert resumed_at > 1 and (resumed_at - 1) % 2 == 0  # from its checkpoint, not from zero

            # 2. stranded again; cancel ends it at once (kept in memory), delete works once the store writes
            os.kill(c.get("/v1/health").json()["worker_pid"], signal.SIGSTOP)
            with _store_locked(store):
                _strand(srv, c, jid, times=2)
                t0 = time.monotonic()
                r = c.post(f"/v1/jobs/{jid}/cancel")
                assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
                assert time.monotonic() - t0 < 10  # no grace period, no worker to wait for
                assert c.get(f"/v1/jobs/{jid}").json()["state"] == "cancelled"
                tail = read_events(c, jid, last_id=second[-1][0], timeout=5)
                assert tail[-1][1] == "cancelled"
                d = c.delete(f"/v1/jobs/{jid}")
                assert d.status_code == 503 and "cannot be written" in d.json()["error"], d.text
            wait_for(lambda: _row(srv, jid)[0] == "cancelled", CHECK_INTERVAL_S + 5)  # written by the check
            assert _events(srv, jid)[-1] == (tail[-1][0], "cancelled")  # the id the stream already gave
            assert c.delete(f"/v1/jobs/{jid}").status_code == 204
            assert c.get(f"/v1/jobs/{jid}").status_code == 404 and not (srv.data / "jobs" / jid).exists()
            nxt = submit(c).json()
            assert read_events(c, nxt["id"])[-1][1] == "succeeded"  # the engine is fine
    finally:
        assert srv.stop() == 0


_QUERY = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
print(json.dumps(db.execute(sys.argv[2], json.loads(sys.argv[3])).fetchall()))
db.close()
"""


def _sql(srv: EngineServer, query: str, *args) -> list[tuple]:
    """Rows of ``query`` on the server's store, read by another process (in the server's mount
    namespace when it has its own: SQLite resolves /proc/<pid>/root to this namespace's path)."""
    import json
    import sys

    prefix = ["nsenter", "-t", str(srv.proc.pid), "-m", "--"] if isinstance(srv, NamespacedServer) else []
    out = subprocess.run([*prefix, sys.executable, "-c", _QUERY, str(srv.data / "store.sqlite3"), query, json.dumps(args)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [tuple(r) for r in json.loads(out)]


def _row(srv: EngineServer, job_id: str) -> tuple:
    rows = _sql(srv, "SELECT state, error FROM jobs WHERE id=?", job_id)
    return rows[0] if rows else (None, None)


def _events(srv: EngineServer, job_id: str) -> list[tuple[int, str]]:
    return _sql(srv, "SELECT seq, type FROM events WHERE job_id=? ORDER BY seq", job_id)


# -- a full disk ------------------------------------------------------------------------------

def _unshare_refused(probe: Path) -> str | None:
    """Why a private mount namespace with a tmpfs cannot be made here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root for 'unshare -m' and a tmpfs mount (CI runs as root)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "the 'unshare' and 'nsenter' tools (util-linux) are not installed"
    probe.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                        str(probe)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"unshare -m / mount tmpfs refused here: {r.stderr.strip() or r.returncode}"
    return None


class NamespacedServer(EngineServer):
    """The server in its own mount namespace, its data dir (store + job folders) a small tmpfs.

    The test reaches that tmpfs through ``/proc/<pid>/root``; it vanishes with the server."""

    def __init__(self, root: Path, model: str, size: str, jobs_only: bool = False):
        super().__init__(root, model)
        self.size = size
        self.mount = self.data / "jobs" if jobs_only else self.data  # jobs_only: the store stays on the real disk
        self.mount.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        script = f'mount -t tmpfs -o size={self.size},mode=0700 tmpfs "$0" && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(self.mount), *super().command()]

    def inside(self, path: Path) -> Path:
        return Path(f"/proc/{self.proc.pid}/root{path}")


def _fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


def test_full_disk_fails_the_job_refuses_submits_and_recovers(tmp_path, tiny_sd_dir):
    refused = _unshare_refused(tmp_path / "probe")
    if refused:
        pytest.skip(refused)
    srv = NamespacedServer(tmp_path, str(tiny_sd_dir), size="16m").start()
    disk = srv.inside(srv.data)
    assert disk.is_dir() and os.stat(disk).st_dev != os.stat(srv.data).st_dev  # the tmpfs, seen from outside
    try:
        with srv.client() as c:
            ok = submit(c).json()
            assert read_events(c, ok["id"])[-1][1] == "succeeded"
            ok_png = c.get(f"/v1/jobs/{ok['id']}/results/texture.png").content
            big = submit(c, dict(LONG, checkpoint_every=1)).json()  # a checkpoint every step
            behind = submit(c, LONG).json()  # queued behind it: it starts while the disk is full
            first = read_events(c, big["id"], until=after_start(lambda e: e[1] == "progress" and e[2]["step"] >= 2))

            _fill(disk / "filler")
            assert shutil.disk_usage(disk).free < 64 * 1024
            t0 = time.monotonic()
            rest = read_events(c, big["id"], last_id=first[-1][0], timeout=60)
            assert rest[-1][1] == "failed" and time.monotonic() - t0 < 15, rest[-3:]
            error = rest[-1][2]["error"]
            # the checkpoint guard ("disk full: need ..."), or, when the disk filled during a write, that write's error
            assert GUARD.match(error) or error.startswith("disk full while writing the job's files"), error
            got = c.get(f"/v1/jobs/{big['id']}").json()
            assert got["state"] == "failed" and got["error"] == error and got["finished_at"] is not None

            # the next job fails at once, before it writes anything, with the exact message
            tail = read_events(c, behind["id"], timeout=30)
            assert [e[1] for e in tail] == ["queued", "failed"], tail
            m = GUARD.match(tail[-1][2]["error"])
            assert m and m.group(1) == str(srv.data / "jobs" / behind["id"]) and float(m.group(2)) < 0.1, tail[-1]
            assert sorted(p.name for p in (disk / "jobs" / behind["id"]).iterdir()) == ["inputs"]
            health = c.get("/v1/health").json()
            assert health["running_job"] is None and health["queue_length"] == 0

            r = submit(c)
            assert r.status_code == 507, r.text
            assert r.json()["error"].startswith("disk full: need ") and f"filesystem mounted at {srv.data}" in r.json()["error"]

            (disk / "filler").unlink()  # space is back: the states kept in memory are written
            for job, events in ((big, rest), (behind, tail)):
                wait_for(lambda: _row(srv, job["id"])[0] == "failed", CHECK_INTERVAL_S + 5)
                assert _row(srv, job["id"]) == ("failed", events[-1][2]["error"])
                assert _events(srv, job["id"])[-1] == (events[-1][0], "failed")  # the id the stream gave
            again = submit(c)
            assert again.status_code == 201, again.text
            assert read_events(c, again.json()["id"])[-1][1] == "succeeded"
            # nothing was lost from earlier jobs, and no temp file is left anywhere
            assert c.get(f"/v1/jobs/{ok['id']}").json()["state"] == "succeeded"
            assert c.get(f"/v1/jobs/{ok['id']}/results/texture.png").content == ok_png
            states = {j["id"]: j["state"] for j in c.get("/v1/jobs").json()["jobs"]}
            assert states == {ok["id"]: "succeeded", big["id"]: "failed", behind["id"]: "failed",
                              again.json()["id"]: "succeeded"}
            assert checkpoint_step(disk / "jobs" / big["id"]) >= 2  # its last good checkpoint is intact
            temps = [str(p) for p in disk.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
            assert temps == []
    finally:
        assert srv.stop() == 0


def test_state_kept_in_memory_matches_what_the_store_writes_later(tmp_path):
    """StateWrites over a real SQLite store whose lock another process holds: the failed state is
    reported from memory with the event id the store gives it once it can write again."""
    from server.config import Reliability
    from server.statewrites import StateWrites, submit_problem
    from server.store import JobStore

    store = JobStore(tmp_path / "store.sqlite3", busy_timeout_s=0.2)
    writes = StateWrites(store, Reliability(write_attempts=2, write_retry_delay_s=0.05))
    store.create_job("a" * 32, {"prompt": "x"}, 10, None)
    store.mark_running("a" * 32, False)
    try:
        with _store_locked(tmp_path / "store.sqlite3"):
            assert writes.finish("a" * 32, "failed", error="disk full: need 1.0 MB in /x, 0.0 MB free") is False
            assert store.get("a" * 32)["state"] == "running"  # the store could not take it ...
            shown = writes.overlay(store.get("a" * 32))  # ... the server reports it anyway
            assert shown["state"] == "failed" and shown["error"].startswith("disk full") and shown["finished_at"]
            seq, kind, data = writes.event("a" * 32)
            assert (seq, kind) == (3, "failed")  # queued=1, started=2
            refused = submit_problem(writes, store.path, tmp_path, 1000, 1024)
            assert refused is not None and refused.status == 503 and "cannot be written" in str(refused)
            assert writes.flush() == []  # still locked
        assert writes.flush() == ["a" * 32]
        assert writes.pending("a" * 32) is None and writes.failure() is None
        assert submit_problem(writes, store.path, tmp_path, 1000, 1024) is None  # submits are welcome again
        job = store.get("a" * 32)
        assert (job["state"], job["error"], job["finished_at"]) == ("failed", shown["error"], shown["finished_at"])
        assert store.events_after("a" * 32, 2) == [(seq, kind, data)]  # same id, same data as streamed
    finally:
        store.close()


def test_full_job_disk_fails_only_that_job(tmp_path, tiny_sd_dir):
    """Job folders on a 1 MB tmpfs, the store on the real disk: a job whose checkpoint cannot fit
    fails at once with the exact message; the other jobs and the store are untouched."""
    refused = _unshare_refused(tmp_path / "probe")
    if refused:
        pytest.skip(refused)
    srv = NamespacedServer(tmp_path, str(tiny_sd_dir), size="1m", jobs_only=True).start()
    try:
        with srv.client() as c:
            ok = submit(c).json()
            assert read_events(c, ok["id"])[-1][1] == "succeeded"
            before = c.get(f"/v1/jobs/{ok['id']}/results/texture.png").content
            big = submit(c, dict(TINY_SPEC, texture_size=512)).json()  # an 18 MB checkpoint on a 1 MB disk
            evs = read_events(c, big["id"])
            assert [e[1] for e in evs] == ["queued", "failed"]
            m = GUARD.match(evs[-1][2]["error"])
            assert m and m.group(1) == str(srv.data / "jobs" / big["id"]), evs[-1]
            assert evs[-1][2]["error"].startswith("disk full: need 18.0 MB in ")
            assert c.get(f"/v1/jobs/{big['id']}").json()["error"] == evs[-1][2]["error"]
            assert c.get(f"/v1/jobs/{ok['id']}/results/texture.png").content == before
            assert {j["id"] for j in c.get("/v1/jobs").json()["jobs"]} == {ok["id"], big["id"]}
            assert c.delete(f"/v1/jobs/{big['id']}").status_code == 204
            again = submit(c).json()
            assert read_events(c, again["id"])[-1][1] == "succeeded"
    finally:
        assert srv.stop() == 0
