"""scripts/gpu_check.sh without a GPU: --dry-run checks the wheels and prints the plan; the
report (one JSON, one log) is written even when every step is skipped."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
STEPS = ("install", "environment", "sd_size_models", "nvdiffrast_build", "raster_parity", "step_cost",
         "whole_job", "gpu_tests", "server_job")


def _requirements() -> list[tuple[str, str]]:
    lines = (REPO / "scripts" / "gpu_wheels.txt").read_text().splitlines()
    return [tuple(ln.strip().split("==")) for ln in lines if ln.strip() and not ln.startswith("#")]


def _dummy_wheels(folder: Path) -> Path:
    folder.mkdir()
    for name, ver in _requirements():
        norm = re.sub(r"[-.]", "_", name.lower())
        (folder / f"{norm}-{ver}-py3-none-any.whl").write_bytes(b"")
    return folder


def _run(*args: str, wheels: Path, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, GPU_WHEELS=str(wheels), **env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=e, capture_output=True, text=True, timeout=120)


def test_the_wheel_list_is_pinned_and_covers_what_the_gpu_image_lacks():
    names = {n for n, _ in _requirements()}
    assert all(v and v[0].isdigit() for _, v in _requirements())
    for needed in ("diffusers", "transformers", "huggingface-hub", "safetensors", "trimesh", "xatlas", "fastapi",
                   "starlette", "pydantic", "pydantic-core", "uvicorn", "python-multipart", "tqdm", "pillow",
                   "diffrp-nvdiffrast", "pytest", "httpx"):
        assert needed in names, needed
    assert not names & {"torch", "numpy", "numba"}  # the GPU image has these


def test_dry_run_without_the_wheels_fails_and_names_the_fetch_command(tmp_path):
    r = _run("--dry-run", wheels=tmp_path / "nowhere")
    assert r.returncode != 0
    assert "bash scripts/fetch_gpu_wheels.sh" in r.stderr and "diffusers==0.42.1" in r.stderr
    wheels = _dummy_wheels(tmp_path / "some")
    next(wheels.glob("trimesh-*")).unlink()
    r = _run("--dry-run", wheels=wheels)
    assert r.returncode != 0 and "1 wheel(s) missing" in r.stderr and "trimesh==" in r.stderr


def test_dry_run_with_the_wheels_prints_the_plan(tmp_path):
    r = _run("--dry-run", wheels=_dummy_wheels(tmp_path / "w"))
    assert r.returncode == 0, r.stderr
    for name in STEPS:
        assert name in r.stdout
    assert "--memory full,low --encoder full,tiny" in r.stdout and "gpu_check.json" in r.stdout


def test_a_run_out_of_time_still_writes_one_json_and_one_log(tmp_path):
    out = tmp_path / "out"
    r = _run(str(out), wheels=_dummy_wheels(tmp_path / "w"), GPU_CHECK_BUDGET_S="0")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert {s["rc"] for s in report["steps"].values()} == {"skipped"}
    assert "whole_job" in report and "raster_parity" in report
    assert "skipped (deadline)" in (out / "gpu_check.log").read_text()


def test_bad_option_is_exit_2(tmp_path):
    r = _run("--fast", wheels=tmp_path)
    assert r.returncode == 2 and "allowed: --dry-run" in r.stderr
