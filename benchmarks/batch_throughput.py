"""Batch throughput: ``texbridge batch`` with ``--ray`` (CPU actors) against the sequential loop.

    python benchmarks/batch_throughput.py [--assets 8] [--actors 2] [--steps 60]

Sequential runs twice (torch's default threads, then 1 thread). All runs are the real command in a fresh process (imports and model load included) on the
same tiny-model assets. Ray runs on a local cluster on 127.0.0.1 started beforehand (its
start-up is printed apart). Prints assets per minute for both and the overhead per asset:

- overhead/asset = (ray wall x actors - sum of the assets' texturing seconds) / assets:
  actor time not spent texturing (process start, connecting, actor start, model load, dispatch);
- dispatch/asset = the same without the actors' start-up: what the scheduler itself costs.
Goal: overhead under 1 s per asset, and --ray not slower than sequential.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.mesh import save_mesh_npz  # noqa: E402
from tests.helpers.cube import cube_mesh  # noqa: E402
from tests.helpers.ray_cluster import LocalRayCluster  # noqa: E402
from tests.helpers.tiny_sd import build_tiny_sd  # noqa: E402


def run_batch(args: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "engine.cli", "batch", *args], cwd=REPO, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"batch failed ({res.returncode}):\n{res.stderr[-3000:]}")
    out = Path(args[args.index("--out") + 1])
    return wall, json.loads((out / "batch_summary.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=8)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tbbench-") as tmp:
        tmp = Path(tmp)
        model = build_tiny_sd(tmp / "model")
        src = tmp / "assets"
        src.mkdir()
        for i in range(a.assets):
            save_mesh_npz(cube_mesh(), src / f"asset_{i:02d}.npz")
        job = ["--prompt", "a wooden crate", "--model", str(model), "--steps", str(a.steps), "--texture-size", "128",
               "--render-size", "64", "--device", "cpu", "--quiet"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}

        seq_wall, seq = run_batch([str(src), "--out", str(tmp / "seq"), *job], env)
        # The same with one torch thread, as each actor has (on a busy machine extra threads can cost more than they give).
        seq1_wall, _ = run_batch([str(src), "--out", str(tmp / "seq1"), *job], {**env, "OMP_NUM_THREADS": "1"})

        t0 = time.perf_counter()
        cluster = LocalRayCluster(num_cpus=a.actors).start()
        cluster_s = time.perf_counter() - t0
        try:
            ray_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.token_path)}
            ray_wall, ray = run_batch([str(src), "--out", str(tmp / "ray"), "--ray", cluster.address,
                                       "--actors", str(a.actors), *job], ray_env)
        finally:
            cluster.stop()
        n = a.assets
        assert seq["totals"]["succeeded"] == n and ray["totals"]["succeeded"] == n, "not every asset finished"
        busy = sum(r["seconds"] for r in ray["assets"])
        starts = ray["ray"]["actor_start_s"]
        overhead = (ray_wall * a.actors - busy) / n
        dispatch = (ray["wall_s"] * a.actors - busy - sum(starts)) / n
        print(f"assets: {n} tiny-model jobs, {a.steps} steps, texture 128, render 64, CPU ({os.cpu_count()} cores)")
        print(f"sequential: {seq_wall:6.1f} s  {n / seq_wall * 60:6.1f} assets/min  "
              f"(texturing {sum(r['seconds'] for r in seq['assets']):.1f} s)")
        print(f"sequential, 1 thread: {seq1_wall:6.1f} s  {n / seq1_wall * 60:6.1f} assets/min")
        print(f"ray ({a.actors} CPU actors): {ray_wall:6.1f} s  {n / ray_wall * 60:6.1f} assets/min  "
              f"(texturing {busy:.1f} actor-s; actor start {', '.join(f'{s:.1f}' for s in starts)} s; "
              f"cluster start {cluster_s:.1f} s, not counted)")
        print(f"overhead per asset: {overhead:.2f} s (incl. process and actor start); dispatch per asset: {dispatch:.2f} s")
        print(f"ray / sequential speed: {seq_wall / ray_wall:.2f}x (1 thread: {seq1_wall / ray_wall:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
