"""``texbridge batch``: sharding, per-asset job folders, skip-done, resume, failure isolation."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.commands.batch import in_shard, parse_shard
from engine.errors import JobCancelled, SpecError
from engine.job import TextureJob
from engine.jobstate import JobState
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
    assert summary["crate.npz"]["status"] == JobState.SUCCEEDED.value and summary["crate.npz"]["resumed"] is True
    assert summary["box.npz"]["status"] == "succeeded" and summary["box.npz"]["resumed"] is False
    assert summary["broken.obj"]["status"] == "failed" and "broken.obj" in capsys.readouterr().err
    for name in ("crate", "box"):
        rec = json.loads((out / name / "job.json").read_text())
        assert rec["status"] == "succeeded" and rec["steps_done"] == 3
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
        "asset": "box.npz", "out": str(out / "box"), "status": "skipped", "reason": "succeeded", "attempts": 0}
    assert (out / "box" / "texture.png").stat().st_mtime_ns == mtime

    # A job.json written before the state vocabulary was unified says "done": still finished.
    for name in ("crate", "box"):
        rec = json.loads((out / name / "job.json").read_text())
        (out / name / "job.json").write_text(json.dumps({**rec, "status": "done"}))
    main(["batch", str(src), "--prompts", str(prompts), "--prompt", "x", "--out", str(out), "--skip-done"] + opts)
    summary = {r["asset"]: r for r in json.loads((out / "batch_summary.json").read_text())["assets"]}
    assert summary["crate.npz"]["status"] == summary["box.npz"]["status"] == "skipped"
    assert (out / "box" / "texture.png").stat().st_mtime_ns == mtime

    # Only failures -> exit 1; no prompt at all -> usage error 2.
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.obj").write_text("garbage\n")
    assert main(["batch", str(only_bad), "--prompt", "x", "--out", str(tmp_path / "o2")] + opts) == 1
    assert main(["batch", str(src), "--out", str(tmp_path / "o3")] + opts) == 2


def test_manifest_is_validated_whole_before_anything_runs(tmp_path, tiny_sd_dir, capsys):
    src = tmp_path / "assets"
    src.mkdir()
    for name in ("chair", "table", "lamp"):
        save_mesh_npz(cube_mesh(), src / f"{name}.npz")
    good = tmp_path / "good.csv"
    good.write_text('mesh,prompt\nchair.npz,"an oak chair, worn",steps=2,view_dependent_prompts=false\n'
                    "# a comment row\n\ntable,a glass table,cfg_scale=7.5,stage_two_start=none\n")
    from engine.batch.manifest import plan_batch

    plan = {a.name: a for a in plan_batch(src, tmp_path / "o", str(good), "a lamp", {"seed": 4})}
    assert plan["chair.npz"].job.prompt == "an oak chair, worn" and plan["chair.npz"].job.steps == 2
    assert plan["chair.npz"].job.view_dependent_prompts is False and plan["chair.npz"].job.seed == 4
    assert plan["table.npz"].job.cfg_scale == 7.5 and plan["table.npz"].job.stage_two_start is None
    assert plan["lamp.npz"].job.prompt == "a lamp" and plan["lamp.npz"].out == str(tmp_path / "o" / "lamp")

    bad = tmp_path / "bad.csv"
    bad.write_text("mesh,prompt\n"
                   "chair.npz,a chair,steps=-1\n"        # row 2: out of range
                   "table.npz,a table,colour=red\n"      # row 3: unknown field
                   "sofa.npz,a sofa\n"                   # row 4: no such mesh
                   "lamp.npz,a lamp,steps\n"             # row 5: not field=value
                   "chair\n")                            # row 6: one column
    out = tmp_path / "out"
    assert main(["batch", str(src), "--prompts", str(bad), "--out", str(out), "--model", str(tiny_sd_dir)]) == 2
    err = capsys.readouterr().err
    assert "5 bad row(s)" in err and "nothing was run" in err
    for expected in ("row 2 (chair.npz): steps=-1 is out of range", "row 3: unknown job field 'colour'",
                     "row 4: no mesh named 'sofa.npz'", "row 5: column 'steps' is not field=value",
                     "row 6: need at least two columns"):
        assert expected in err
    assert not out.exists()  # nothing scheduled, not even the summary

    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"chair": {"prompt": "x", "texture_size": 100}, "table": 3}))
    assert main(["batch", str(src), "--prompts", str(bad_json), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 bad row(s)" in err and "texture_size=100 is not a power of two" in err and "entry 'table'" in err


def test_ray_flag_without_ray_installed_exits_2_with_the_install_command(tmp_path, monkeypatch, capsys):
    import sys

    src = tmp_path / "assets"
    src.mkdir()
    save_mesh_npz(cube_mesh(), src / "crate.npz")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    assert main(["batch", str(src), "--prompt", "a crate", "--out", str(tmp_path / "out"), "--ray"]) == 2
    assert 'pip install "texbridge[ray]"' in capsys.readouterr().err
    assert main(["batch", str(src), "--prompt", "a crate", "--out", str(tmp_path / "out"), "--stage-inputs"]) == 2
    assert "only apply with --ray" in capsys.readouterr().err
