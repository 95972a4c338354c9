"""``texbridge batch``: sharding, per-asset job folders, skip-done, resume, failure isolation."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.commands.batch import in_shard, parse_shard
from engine.errors import JobCancelled, SpecError
from engine.job import TextureJob
from engine.mesh import save_mesh_npz
from engine.runner import JobCallbacks, run_texture_job
from tests.helpers.cube import cube_mesh


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sharding_is_a_deterministic_partition():
    names = [f"asset_{i:03d}.glb" for i in range(200)]
    shards = [[n for n in names if in_shard(n, (i, 4))] for i in range(4)]
    assert sorted(sum(shards, [])) == names  # every asset in exactly one shard
    assert all(20 < len(s) < 80 for s in shards)
    assert shards == [[n for n in names if in_shard(n, (i, 4))] for i in range(4)]  # stable
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(SpecError, match="I/N|0 <= I < N"):
            parse_shard(bad)


def test_batch_resumes_skips_and_survives_a_failure(tmp_path, tiny_sd_dir, capsys):
    src = tmp_path / "assets"
    src.mkdir()
    save_mesh_npz(cube_mesh(), src / "crate.npz")
    save_mesh_npz(cube_mesh(), src / "box.npz")
    (src / "broken.obj").write_text("v 0 0\nf 1 2 9\n")
    (src / "notes.txt").write_text("not a mesh")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"crate.npz": "a wooden crate", "box": {"prompt": "a cardboard box", "seed": 3}}))
    out = tmp_path / "out"
    opts = ["--model", str(tiny_sd_dir), "--steps", "3", "--texture-size", "64", "--render-size", "64",
            "--device", "cpu", "--quiet"]

    # An interrupted run of one asset (cancelled after one step) ...
    crate = TextureJob(prompt="a wooden crate", mesh=str(src / "crate.npz"), model=str(tiny_sd_dir), steps=3,
                       texture_size=64, render_size=64, device="cpu")
    done = []
    with pytest.raises(JobCancelled):
        run_texture_job(crate, out / "crate", callbacks=JobCallbacks(on_progress=done.append, should_cancel=lambda: bool(done)))

    # ... is resumed by the batch; the broken mesh fails without stopping the others.
    code = main(["batch", str(src), "--prompts", str(prompts), "--prompt", "a plain object", "--out", str(out)] + opts)
    assert code == 6
    summary = {r["asset"]: r for r in json.loads((out / "batch_summary.json").read_text())["assets"]}
    assert set(summary) == {"crate.npz", "box.npz", "broken.obj"}
    assert summary["crate.npz"]["status"] == "done" and summary["crate.npz"]["resumed"] is True
    assert summary["box.npz"]["status"] == "done" and summary["box.npz"]["resumed"] is False
    assert summary["broken.obj"]["status"] == "failed" and "broken.obj" in capsys.readouterr().err
    for name in ("crate", "box"):
        rec = json.loads((out / name / "job.json").read_text())
        assert rec["status"] == "done" and rec["steps_done"] == 3
        assert all((out / name / f).is_file() for f in ("texture.png", "textured.glb", "preview.png"))
    assert json.loads((out / "box" / "job.json").read_text())["spec"]["seed"] == 3
    assert json.loads((out / "box" / "job.json").read_text())["spec"]["prompt"] == "a cardboard box"

    # Finished assets are skipped with --skip-done.
    mtime = (out / "box" / "texture.png").stat().st_mtime_ns
    code = main(["batch", str(src), "--prompts", str(prompts), "--prompt", "x", "--out", str(out), "--skip-done",
                 "--shard", "0/1"] + opts)
    assert code == 6
    summary = {r["asset"]: r for r in json.loads((out / "batch_summary.json").read_text())["assets"]}
    assert {k: summary["box.npz"][k] for k in ("asset", "out", "status", "reason", "attempts")} == {
        "asset": "box.npz", "out": str(out / "box"), "status": "skipped", "reason": "done", "attempts": 0}
    assert (out / "box" / "texture.png").stat().st_mtime_ns == mtime

    # Only failures -> exit 1; no prompt at all -> usage error 2.
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.obj").write_text("garbage\n")
    assert main(["batch", str(only_bad), "--prompt", "x", "--out", str(tmp_path / "o2")] + opts) == 1
    assert main(["batch", str(src), "--out", str(tmp_path / "o3")] + opts) == 2
