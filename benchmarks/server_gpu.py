"""One server job on the GPU with the tiny model: the worker keeps the model, unload frees VRAM.

Starts ``texbridge serve --device cuda`` (as the GPU-tier test does, through
``tests.server.conftest.EngineServer``), runs two tiny-model jobs, and measures with
``nvidia-smi`` the worker's GPU memory after them and after ``POST /v1/unload``:

    python benchmarks/server_gpu.py --json server_gpu.json

Prints ``SKIP: <reason>`` and exits 0 without CUDA or nvidia-smi.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def worker_mib(pid: int) -> float | None:
    """GPU memory nvidia-smi reports for ``pid`` (MiB), None when it holds none."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) == pid:
            return float(parts[1])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    reason = None if torch.cuda.is_available() else "CUDA not available"
    if reason is None and shutil.which("nvidia-smi") is None:
        reason = "nvidia-smi not available"
    if reason:
        print(f"SKIP: {reason}")
        if args.json:
            Path(args.json).write_text(json.dumps({"skipped": reason}))
        return 0
    from tests.helpers.tiny_sd import build_tiny_sd
    from tests.server.conftest import TINY_SPEC, EngineServer, read_events, submit

    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny_sd")
        srv = EngineServer(Path(tmp), str(model), device="cuda").start(timeout=120)
        try:
            with srv.client(timeout=120) as c:
                for i in (1, 2):
                    t0 = time.perf_counter()
                    job = submit(c, dict(TINY_SPEC, steps=20)).json()
                    last = read_events(c, job["id"], timeout=600)[-1][1]
                    res[f"job{i}"] = {"state": last, "wall_s": time.perf_counter() - t0,
                                      "job_json": c.get(f"/v1/jobs/{job['id']}/results/job.json").json()}
                h = c.get("/v1/health").json()
                pid = h.get("worker_pid")
                res["health"] = {k: h.get(k) for k in ("device", "loaded_model", "worker_pid")}
                res["worker_mib_loaded"] = worker_mib(pid)
                res["unload"] = c.post("/v1/unload").json()
                time.sleep(2)
                res["worker_mib_after_unload"] = worker_mib(pid)
                res["loaded_model_after_unload"] = c.get("/v1/health").json().get("loaded_model")
        finally:
            srv.stop()
    for i in (1, 2):
        t = res[f"job{i}"]["job_json"].get("timings", {})
        print(f"job {i}: {res[f'job{i}']['state']}, wall {res[f'job{i}']['wall_s']:.1f} s, load_model {t.get('load_model_s')}")
    print(f"worker GPU memory: loaded {res['worker_mib_loaded']} MiB, after unload {res['worker_mib_after_unload']} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
