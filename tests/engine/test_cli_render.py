"""CLI: ``texbridge render`` and ``texbridge doctor``; bad input gives one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.assets import SAMPLE_MESH
from engine.cli import main
from engine.export import save_texture_png


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_render_writes_contact_sheet(tmp_path, capsys):
    from PIL import Image

    tex = np.zeros((32, 32, 3), np.float32)
    tex[..., 0] = 1.0
    save_texture_png(tex, tmp_path / "red.png")
    code, out, err = run_cli(capsys, "render", str(SAMPLE_MESH), "--texture", str(tmp_path / "red.png"),
                             "--out", str(tmp_path / "sheet.png"), "--size", "48", "--backend", "numba", "--device", "cpu")
    assert code == 0, err
    assert "wrote" in out and "3072 triangles" in out
    with Image.open(tmp_path / "sheet.png") as im:
        a = np.asarray(im)
    assert a.shape == (96, 192, 3)
    assert (a[24, 24] == [255, 0, 0]).all() and (a[0, 0] == [255, 255, 255]).all()


BAD_CASES = [
    ("missing.obj", None, "mesh file not found"),
    ("m.fbx", "x", "unsupported mesh format"),
    ("empty.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "has no faces"),
    ("nan.obj", "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("oob.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "indices out of range"),
    ("ext.gltf", '{"asset": {"version": "2.0"}, "buffers": [{"uri": "a.bin", "byteLength": 4}]}', "external file"),
    ("corrupt.glb", "definitely not binary glTF", "cannot read"),
]


@pytest.mark.parametrize("name,content,needle", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_mesh_one_line_error(tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "render", str(path), "--out", str(tmp_path / "s.png"), "--backend", "numba")
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "s.png").exists()


def test_too_many_triangles_and_nvdiffrast_missing(tmp_path, capsys):
    code, _, err = run_cli(capsys, "render", str(SAMPLE_MESH), "--out", str(tmp_path / "s.png"), "--backend", "numba",
                           "--max-triangles", "100")
    assert code == 3 and "more than the limit of 100" in err and len(err.strip().splitlines()) == 1
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        code, _, err = run_cli(capsys, "render", str(SAMPLE_MESH), "--out", str(tmp_path / "s.png"), "--backend", "nvdiffrast")
        assert code == 4 and 'pip install "texbridge[cuda]"' in err and len(err.strip().splitlines()) == 1


def test_doctor_lists_environment(capsys):
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0
    for key in ("python", "torch", "cuda available", "numba backend", "nvdiffrast backend", "auto backend", "trimesh"):
        assert any(line.startswith(key) for line in out.splitlines()), key


def test_console_script_error_has_no_traceback(tmp_path):
    """The real entry point in a fresh process: one line on stderr, exit code 3."""
    r = subprocess.run(
        [sys.executable, "-c", "from server.cli import main; raise SystemExit(main())", "render",
         str(tmp_path / "nope.obj"), "--out", str(tmp_path / "s.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [f"error: mesh file not found: {tmp_path / 'nope.obj'}; check the path"]


@pytest.mark.parametrize("args,needle", [
    (["--views", "0"], "views=0 is out of range; allowed: --views 1..64"),
    (["--size", "8"], "size=8 is out of range; allowed: --size 16..4096"),
    (["--out", "/nonexistent-dir/s.png"], "output folder does not exist"),
    (["--backend", "bogus"], "invalid choice"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, needle):
    """README: exit code 2 for bad arguments (argparse's and the command's own checks)."""
    argv = ["render", str(SAMPLE_MESH), "--out", str(tmp_path / "s.png"), "--backend", "numba", *args]
    try:
        code, _, err = run_cli(capsys, *argv)
    except SystemExit as exc:  # argparse exits itself
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and needle in err
    assert not (tmp_path / "s.png").exists()
