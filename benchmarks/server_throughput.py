"""Engine-server overheads, printed as numbers (no engine work: ``benchmarks/null_engine.py``
runs zero-second steps, so what is measured is the server itself).

    python benchmarks/server_throughput.py [--jobs 20] [--steps 200]

Prints: start-up time (process start -> discovery file), submit latency, event throughput
(persisted + streamed progress events per second), SSE replay rate, texture fetch latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.null_engine import RUNNER as NULL_ENGINE  # noqa: E402
from tests.server.conftest import TINY_SPEC, EngineServer, read_events, submit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        srv = EngineServer(Path(tmp), "null-model", runner=NULL_ENGINE).start()
        startup = time.perf_counter() - t0
        try:
            with srv.client() as c:
                warm = submit(c, dict(TINY_SPEC, steps=1)).json()  # wait for the worker to be up
                read_events(c, warm["id"])
                lat, ids = [], []
                for i in range(args.jobs):
                    t = time.perf_counter()
                    r = submit(c, dict(TINY_SPEC, steps=args.steps, preview_every=10, checkpoint_every=50, seed=i))
                    lat.append(time.perf_counter() - t)
                    ids.append(r.json()["id"])
                t = time.perf_counter()
                n_events = sum(len(read_events(c, jid, timeout=600)) for jid in ids)
                live = time.perf_counter() - t
                t = time.perf_counter()
                replayed = sum(len(read_events(c, jid)) for jid in ids)
                replay = time.perf_counter() - t
                tex = []
                for jid in ids[:5]:
                    t = time.perf_counter()
                    c.get(f"/v1/jobs/{jid}/texture", params={"format": "rgba8"})
                    tex.append(time.perf_counter() - t)
        finally:
            srv.stop()
    print(f"server start-up (process -> discovery file): {startup:.2f} s")
    print(f"submit latency: median {statistics.median(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms ({args.jobs} jobs)")
    print(f"live events: {n_events} in {live:.2f} s = {n_events / live:.0f} events/s (stored, then streamed)")
    print(f"SSE replay: {replayed} events in {replay:.2f} s = {replayed / replay:.0f} events/s")
    print(f"texture fetch (rgba8, 64x64): median {statistics.median(tex) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
