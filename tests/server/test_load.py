"""Load: 20 jobs submitted at once all finish, strictly in order, and a client that keeps
disconnecting and reconnecting with Last-Event-ID loses no event (real engine, tiny jobs)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tests.server.conftest import TINY_SPEC, read_events, submit


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_twenty_jobs_in_order_with_reconnecting_clients(server):
    spec = dict(TINY_SPEC, steps=2, preview_every=1)
    with server.client() as c:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: submit(c, dict(spec, seed=i)), range(20)))
        assert [r.status_code for r in responses] == [201] * 20
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 20
        # submission order as the server saw it (list is newest first)
        order = [j["id"] for j in reversed(c.get("/v1/jobs").json()["jobs"]) if j["id"] in ids]

        # follow every job in 3-event pieces, reconnecting with Last-Event-ID each time
        pieced: dict[str, list] = {}
        reconnects = 0
        for jid in order:
            got: list = []
            while not got or got[-1][1] not in ("succeeded", "failed", "cancelled"):
                got += read_events(c, jid, last_id=got[-1][0] if got else None, stop_after=3)
                reconnects += 1
            pieced[jid] = got
        assert reconnects > 20 * 3

        jobs = {j["id"]: j for j in c.get("/v1/jobs").json()["jobs"]}
        for jid in order:
            assert jobs[jid]["state"] == "succeeded" and jobs[jid]["step"] == 2
            full = read_events(c, jid)  # a fresh replay of the stored stream
            assert pieced[jid] == full, jid
            assert [e[0] for e in full] == list(range(1, len(full) + 1))
            assert [e[2]["step"] for e in full if e[1] == "progress"] == [1, 2]
            assert [e[2]["version"] for e in full if e[1] == "preview"] == [1, 2, 3]  # every step, then the final texture
        # FIFO, one at a time: each job starts after the previous one finished
        for prev, nxt in zip(order, order[1:]):
            assert _ts(jobs[nxt]["started_at"]) >= _ts(jobs[prev]["finished_at"]), (prev, nxt)
        assert c.get("/v1/health").json()["queue_length"] == 0
