"""``texbridge batch --ray`` on a real local Ray cluster (127.0.0.1, 2 CPUs, token auth on).

The cluster is started once for this module and stopped at its end; every test checks that
its actors are gone, and the module checks that no Ray process is left at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.mesh import save_mesh_npz
from tests.helpers.cube import cube_mesh

pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    from tests.helpers.ray_cluster import LocalRayCluster

    c = LocalRayCluster(num_cpus=2).start()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(c.token_path))
    try:
        assert c.listening_addresses() <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, c.listening_addresses()  # loopback only
        yield c
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        c.stop()
        assert c.leftover() == {}, f"Ray processes left behind: {c.leftover()}"


def actor_processes() -> list[int]:
    from tests.helpers.ray_cluster import ray_processes

    return [pid for pid, cmd in ray_processes().items() if "TextureActor" in cmd]


def assert_no_actors_left() -> None:
    deadline = time.time() + 20
    while actor_processes() and time.time() < deadline:
        time.sleep(0.25)
    assert actor_processes() == []


def opts(tiny_sd_dir, steps: bool = True) -> list[str]:
    return ["--model", str(tiny_sd_dir)] + (["--steps", "3"] if steps else []) + [
        "--texture-size", "64", "--render-size", "64", "--device", "cpu", "--quiet"]


def read_summary(out: Path) -> tuple[dict, dict]:
    data = json.loads((out / "batch_summary.json").read_text())
    return data, {r["asset"]: r for r in data["assets"]}


def test_without_an_address_it_starts_a_local_instance_on_loopback_and_stops_it(tiny_sd_dir, tmp_path):
    """Runs first, before the module's cluster exists; in a child process with its own HOME
    (so Ray's token goes to HOME/.ray/auth_token), like a user's first ``--ray``."""
    from tests.helpers.ray_cluster import ray_processes

    before = set(ray_processes())
    src = tmp_path / "assets"
    src.mkdir()
    save_mesh_npz(cube_mesh(), src / "crate.npz")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "engine.cli", "batch", str(src), "--prompt", "a crate", "--out", str(out),
                          "--ray", "--actors", "1"] + opts(tiny_sd_dir), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    data, recs = read_summary(out)
    assert data["ray"]["started_local_instance"] is True and data["ray"]["actors"] == 1
    assert recs["crate.npz"]["status"] == "succeeded" and recs["crate.npz"]["node"] == "127.0.0.1"
    assert (tmp_path / "home" / ".ray" / "auth_token").is_file()  # token auth was on
    deadline = time.time() + 20
    while set(ray_processes()) - before and time.time() < deadline:
        time.sleep(0.25)
    assert set(ray_processes()) - before == set(), "the local Ray instance was left running"


def test_five_assets_on_two_actors_then_a_second_run_does_no_work(cluster, tiny_sd_dir, tmp_path):
    src = tmp_path / "assets"
    src.mkdir()
    for i in range(5):
        save_mesh_npz(cube_mesh(), src / f"a{i}.npz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("mesh,prompt\n" + "".join(f'a{i}.npz,"crate {i}, wooden",seed={i}\n' for i in range(5)))
    out = tmp_path / "out"
    args = ["batch", str(src), "--prompts", str(manifest), "--out", str(out), "--ray", cluster.address,
            "--report", str(out / "index.html")] + opts(tiny_sd_dir)

    assert main(args) == 0
    data, recs = read_summary(out)
    assert sorted(recs) == [f"a{i}.npz" for i in range(5)]
    assert data["mode"] == "ray" and data["totals"]["succeeded"] == 5 and data["assets_per_hour"] > 0
    assert data["ray"]["actors"] == 2 and data["ray"]["address"] == cluster.address
    for i in range(5):
        r, job_dir = recs[f"a{i}.npz"], out / f"a{i}"
        assert r["status"] == "succeeded" and r["attempts"] == 1 and r["node"] == "127.0.0.1" and r["seconds"] > 0
        assert r["outputs"]["glb"] == str(job_dir / "textured.glb")
        job = json.loads((job_dir / "job.json").read_text())
        assert job["status"] == "succeeded" and job["steps_done"] == 3
        assert job["spec"]["seed"] == i and job["spec"]["prompt"] == f"crate {i}, wooden"
        assert all((job_dir / f).is_file() for f in ("texture.png", "textured.glb", "preview.png"))
    assert len({r["pid"] for r in recs.values()}) == 2  # both actors textured assets
    page = (out / "index.html").read_text()
    assert all(f'src="a{i}/preview.png"' in page and f'href="a{i}/textured.glb"' in page for i in range(5))
    assert "crate 3, wooden" in page
    assert_no_actors_left()

    # The same command again: everything skipped (the default with --ray), nothing rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("a*/*") if p.is_file()}
    assert main(args) == 0
    data, recs = read_summary(out)
    assert data["totals"]["skipped"] == 5 and {r["reason"] for r in recs.values()} == {"succeeded"}
    assert "ray" not in data  # no actor was started
    assert {p: p.stat().st_mtime_ns for p in out.glob("a*/*") if p.is_file()} == mtimes


def test_killed_actor_is_retried_from_its_checkpoint_and_a_bad_mesh_fails_alone(cluster, tiny_sd_dir, tmp_path):
    src = tmp_path / "assets"
    src.mkdir()
    save_mesh_npz(cube_mesh(), src / "long.npz")
    save_mesh_npz(cube_mesh(), src / "short.npz")
    (src / "broken.obj").write_text("v 0 0\nf 1 2 9\n")
    steps = 150
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"long": {"prompt": "a long job", "steps": steps, "checkpoint_every": 10,
                                            "preview_every": 10},
                                   "short": {"prompt": "a short job", "steps": 3}}))
    out = tmp_path / "out"
    killed: dict = {}

    def kill_long_mid_asset() -> None:
        snap = out / "long" / "progress" / "step_000020.png"
        deadline = time.time() + 90
        while not snap.is_file() and time.time() < deadline:
            time.sleep(0.005)
        attempt = json.loads((out / "long" / "batch_attempt.json").read_text())
        killed["seen_step"] = max(int(p.stem.split("_")[1]) for p in (out / "long" / "progress").glob("step_*.png"))
        killed["pid"] = attempt["pid"]
        os.kill(attempt["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_long_mid_asset, daemon=True)
    killer.start()
    code = main(["batch", str(src), "--prompts", str(prompts), "--prompt", "a plain object", "--out", str(out),
                 "--ray", cluster.address, "--stage-inputs", "--retries", "2"]
                + opts(tiny_sd_dir, steps=False))  # steps per asset from the manifest
    killer.join(5)
    assert code == 6  # one asset failed, the others done
    data, recs = read_summary(out)
    assert killed["seen_step"] >= 20

    long = recs["long.npz"]
    assert long["status"] == "succeeded" and long["attempts"] == 2 and long["pid"] != killed["pid"]
    job = json.loads((out / "long" / "job.json").read_text())
    assert job["status"] == "succeeded" and job["steps_done"] == steps and job["resumed"] is True
    resumed_from = job["batch"]["resumed_from_step"]
    # It went on from a checkpoint taken at most one interval before the last snapshot seen
    # before the kill: fewer steps were re-run than had been completed.
    assert resumed_from >= killed["seen_step"] - 10 and resumed_from % 10 == 0
    assert killed["seen_step"] - resumed_from < killed["seen_step"]
    assert job["batch"]["steps_run"] == steps - resumed_from and job["batch"]["attempts"] == 2

    broken = recs["broken.obj"]
    assert broken["status"] == "failed" and broken["attempts"] == 1 and "broken.obj" in broken["error"]
    assert recs["short.npz"]["status"] == "succeeded" and recs["short.npz"]["attempts"] == 1
    assert data["totals"] == {"assets": 3, "succeeded": 2, "failed": 1, "skipped": 0, "cancelled": 0, "running": 0,
                              "queued": 0}
    assert_no_actors_left()


def test_ctrl_c_cancels_running_assets_with_a_checkpoint(cluster, tiny_sd_dir, tmp_path):
    src = tmp_path / "assets"
    src.mkdir()
    for name in ("a", "b", "c"):
        save_mesh_npz(cube_mesh(), src / f"{name}.npz")
    out = tmp_path / "out"
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "engine.cli", "batch", str(src), "--prompt", "a crate", "--out", str(out),
           "--ray", cluster.address] + opts(tiny_sd_dir)
    cmd[cmd.index("--steps") + 1] = "100000"
    cmd += ["--checkpoint-every", "1000"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not list(out.glob("*/progress/step_*.png")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    data, recs = read_summary(out)
    assert data["cancelled"] is True
    started = [r for r in recs.values() if r["attempts"]]
    assert started and all(r["status"] == "cancelled" for r in recs.values())
    for r in started:  # each running asset wrote a checkpoint; job.json says cancelled
        assert (Path(r["out"]) / "checkpoints" / "latest.pt").is_file()
        assert json.loads((Path(r["out"]) / "job.json").read_text())["status"] == "cancelled"
    assert_no_actors_left()
