"""``texbridge texture`` end to end on CPU with the tiny SD folder (in-process CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.export import save_texture_png
from engine.mesh import load_mesh, save_mesh_npz
from tests.helpers.cube import INNER_CELL, cell_slice, cube_mesh

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("mesh") / "crate.npz"
    save_mesh_npz(cube_mesh(inner=True), p)
    return p


def _sorted_face_uvs(uvs: np.ndarray) -> np.ndarray:
    rows = np.round(uvs.reshape(len(uvs), -1), 4)
    return rows[np.lexsort(rows.T[::-1])]


def test_texture_command_writes_the_layout(mesh_file, tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "job"
    code = main(["texture", str(mesh_file), "--prompt", "a wooden crate", "--model", str(tiny_sd_dir),
                 "--steps", "30", "--texture-size", str(SIZE), "--render-size", "64", "--device", "cpu",
                 "--seed", "7", "--lr", "0.05", "--recipe", "paper-3d", "--out", str(out), "--quiet"])
    assert code == 0
    assert "model: " + str(tiny_sd_dir.resolve()) in capsys.readouterr().out
    for name in ("job.json", "texture.png", "textured.glb", "preview.png", "checkpoints/latest.pt"):
        assert (out / name).is_file(), name
    assert len(list((out / "progress").glob("step_*.png"))) == 3  # steps 10, 20, 30
    rec = json.loads((out / "job.json").read_text())
    assert rec["status"] == "succeeded" and rec["steps_done"] == 30 and rec["spec"]["seed"] == 7
    assert rec["spec"]["recipe"] == "paper-3d"
    r = rec["resolved"]  # the recipe's values, with --lr overriding its 0.01
    assert (r["recipe"], r["cfg_scale"], r["stage_two_scale"], r["stage_two_time_weight"]) == ("paper-3d", 100.0, 1.0, False)
    assert (r["stage_two_start"], r["anneal_after_step"], r["anneal_t_max"], r["learning_rate"]) == (24, 6, 0.5, 0.05)

    # The GLB reloads with the original UVs.
    original = cube_mesh(inner=True)
    glb = load_mesh(out / "textured.glb")
    assert glb.num_triangles == original.num_triangles and not glb.unwrapped
    assert np.allclose(_sorted_face_uvs(glb.uvs), _sorted_face_uvs(original.uvs), atol=1e-4)

    tex = np.asarray(Image.open(out / "texture.png").convert("RGB")).astype(int)
    save_texture_png(np.full((SIZE, SIZE, 3), 0.5, np.float32), tmp_path / "gray.png")
    gray = int(np.asarray(Image.open(tmp_path / "gray.png"))[0, 0, 0])
    # Seen faces changed; the inner quad (cell 10), which no view sees, kept its initial value.
    seen = np.concatenate([tex[cell_slice(q, SIZE)].reshape(-1, 3) for q in range(4)])
    assert np.abs(seen - gray).max() >= 8 and np.mean(np.abs(seen - gray) > 0) > 0.5
    assert np.all(tex[cell_slice(INNER_CELL, SIZE)] == gray)

    # Resuming a finished job does no steps and rewrites the outputs.
    assert main(["texture", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "job.json").read_text())["steps_done"] == 30


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--steps", "-5"], 2, "allowed: 1..1000000"),
        (["--texture-size", "1000"], 2, "not a power of two"),
        (["--prompt", ""], 2, "prompt is empty"),
        (["--model", "someone/not-cached"], 5, "huggingface-cli download someone/not-cached"),
    ],
)
def test_errors_exit_with_documented_codes(mesh_file, tmp_path, capsys, argv, code, message):
    base = ["texture", str(mesh_file), "--prompt", "x", "--device", "cpu", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(base + argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_bad_recipe_exits_2_with_the_allowed_names(mesh_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["texture", str(mesh_file), "--prompt", "x", "--recipe", "paper-4d", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--recipe" in err and "auto" in err and "paper-2d" in err and "paper-3d" in err


def test_missing_mesh_exit_code(tmp_path, tiny_sd_dir, capsys):
    code = main(["texture", str(tmp_path / "nope.obj"), "--prompt", "x", "--model", str(tiny_sd_dir),
                 "--device", "cpu", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 3 and "error: " in capsys.readouterr().err
