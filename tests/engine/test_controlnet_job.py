"""``texbridge texture --controlnet`` end to end with the tiny pipeline and the tiny ControlNet."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.job import TextureJob
from engine.mesh import save_mesh_npz
from tests.helpers.cube import cube_mesh
from tests.helpers.tiny_controlnet import build_mismatched_controlnet, build_tiny_controlnet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("mesh") / "cube.npz"
    save_mesh_npz(cube_mesh(), p)
    return p


@pytest.fixture(scope="module")
def controlnet_dir(tiny_sd_dir, tmp_path_factory):
    return build_tiny_controlnet(tmp_path_factory.mktemp("cn") / "controlnet", tiny_sd_dir)


def _argv(mesh_file, model, out, *extra):
    return ["texture", str(mesh_file), "--prompt", "a stone statue", "--model", str(model), "--steps", "4",
            "--texture-size", "64", "--render-size", "64", "--device", "cpu", "--preview-every", "2",
            "--out", str(out), "--quiet", *extra]


def test_texture_with_a_controlnet_writes_the_job_folder(mesh_file, tiny_sd_dir, controlnet_dir, tmp_path):
    out = tmp_path / "job"
    assert main(_argv(mesh_file, tiny_sd_dir, out, "--controlnet", str(controlnet_dir), "--control", "depth")) == 0
    for name in ("job.json", "texture.png", "textured.glb", "preview.png", "checkpoints/latest.pt"):
        assert (out / name).is_file(), name
    assert len(list((out / "progress").glob("step_*.png"))) == 2
    rec = json.loads((out / "job.json").read_text())
    assert rec["status"] == "succeeded" and rec["steps_done"] == 4
    spec = rec["spec"]
    assert (spec["controlnet"], spec["control"], spec["control_scale"]) == (str(controlnet_dir), "depth", 1.0)
    assert rec["controlnet"] == {"model": str(controlnet_dir.resolve()), "control": "depth", "control_scale": 1.0}
    assert rec["resolved"]["controlnet"] == {"model": str(controlnet_dir), "control": "depth", "control_scale": 1.0}
    assert "load_controlnet_s" in rec["timings"]
    # Resuming the finished job keeps the same ControlNet settings (they are part of the math).
    assert main(["texture", "--resume", str(out), "--quiet"]) == 0


def test_normal_control_and_scale_flags(mesh_file, tiny_sd_dir, controlnet_dir, tmp_path):
    out = tmp_path / "job"
    argv = _argv(mesh_file, tiny_sd_dir, out, "--controlnet", str(controlnet_dir), "--control", "normal",
                 "--control-scale", "0.5", "--steps", "2")
    assert main(argv) == 0
    rec = json.loads((out / "job.json").read_text())
    assert rec["controlnet"]["control"] == "normal" and rec["controlnet"]["control_scale"] == 0.5


def test_mismatched_controlnet_fails_before_any_step(mesh_file, tiny_sd_dir, tmp_path, capsys):
    bad = build_mismatched_controlnet(tmp_path / "cn16")
    out = tmp_path / "job"
    assert main(_argv(mesh_file, tiny_sd_dir, out, "--controlnet", str(bad))) == 2
    err = capsys.readouterr().err
    assert str(bad.resolve()) in err and str(tiny_sd_dir.resolve()) in err and "cross_attention_dim" in err
    rec = json.loads((out / "job.json").read_text())
    assert rec["status"] == "failed" and "does not fit" in rec["error"]
    assert not (out / "checkpoints" / "latest.pt").exists() and not list(out.glob("progress/step_*.png"))


def test_embedded_with_a_controlnet_exits_2(mesh_file, controlnet_dir, tmp_path, capsys):
    assert main(_argv(mesh_file, "embedded", tmp_path / "job", "--controlnet", str(controlnet_dir))) == 2
    assert "Stable Diffusion" in capsys.readouterr().err


def test_bad_control_values_exit_2(mesh_file, tiny_sd_dir, controlnet_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse: the flag's choices come from ControlKind
        main(_argv(mesh_file, tiny_sd_dir, tmp_path / "a", "--controlnet", str(controlnet_dir), "--control", "canny"))
    assert e.value.code == 2 and "choose from 'depth', 'normal'" in capsys.readouterr().err
    with pytest.raises(Exception, match="allowed: depth, normal"):
        TextureJob.from_dict({"prompt": "x", "controlnet": "a/b", "control": "canny"})
    with pytest.raises(Exception, match="control_scale"):
        TextureJob(prompt="x", controlnet="a/b", control_scale=-1.0)
