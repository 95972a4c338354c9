"""The spec schema has one source, ``TextureJob``'s field metadata (engine/jobschema.py).

The main test adds a field to a copy of engine/job.py, and nothing else, and finds it in
``texbridge texture --help``, in the OpenAPI document and in a real job's ``job.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import jobschema
from engine.errors import SpecError
from engine.job import TextureJob

REPO = Path(__file__).resolve().parents[2]
DUMMY = '    dummy_knob: int = spec_field(3, lo=0, hi=9, help="a dummy knob for the schema test")\n'


def _copy_with_dummy_field(dst: Path) -> Path:
    """Copy engine/ and server/ and add one field to engine/job.py, nothing else.

    engine/raster/ is linked, not copied: the field never touches it, and numba's on-disk
    kernel cache is keyed by the source file's path, so a copied raster package would
    JIT-compile every kernel afresh (about 14 s of this test's 24 s here).
    """
    for pkg in ("engine", "server"):
        shutil.copytree(REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "raster"))
    (dst / "engine" / "raster").symlink_to(REPO / "engine" / "raster", target_is_directory=True)
    job_py = dst / "engine" / "job.py"
    lines = job_py.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("    preview_every: int = spec_field("))
    lines.insert(at + 1, DUMMY)
    job_py.write_text("".join(lines))
    return dst


#: One interpreter for the four checks (help, OpenAPI, a bad value, a real job): each start
#: imports torch, so one process instead of four keeps this test cheap.
DRIVER = r"""
import contextlib, io, json, sys
from engine.cli import main
from server.app import openapi_document
out = {}
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        main(["texture", "--help"])
    except SystemExit as exc:
        out["help_code"] = exc.code
out["help"] = buf.getvalue()
out["knob"] = openapi_document()["components"]["schemas"]["TextureJobSpec"]["properties"]["dummy_knob"]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    out["bad_code"] = main(["texture", "m.obj", "--prompt", "x", "--dummy-knob", "12", "--quiet"])
out["bad_err"] = err.getvalue()
with contextlib.redirect_stdout(io.StringIO()):
    out["job_code"] = main(sys.argv[1:])
print("RESULT " + json.dumps(out))
"""


def test_a_new_field_reaches_the_cli_the_openapi_document_and_job_json(tmp_path):
    tree = _copy_with_dummy_field(tmp_path / "tree")
    out = tmp_path / "job"
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ran = subprocess.run(
        [sys.executable, "-c", DRIVER, "texture", str(REPO / "engine" / "assets" / "sample_mesh.obj"), "--prompt",
         "red bricks", "--model", "embedded", "--device", "cpu", "--steps", "1", "--texture-size", "64",
         "--dummy-knob", "7", "--out", str(out), "--quiet"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout.split("RESULT ", 1)[1])

    assert got["help_code"] == 0
    assert "--dummy-knob N" in got["help"] and "a dummy knob for the schema test (0..9; default: 3)" in " ".join(got["help"].split())

    knob = got["knob"]
    assert (knob["type"], knob["default"], knob["minimum"], knob["maximum"]) == ("integer", 3, 0, 9)

    assert got["job_code"] == 0
    assert json.loads((out / "job.json").read_text())["spec"]["dummy_knob"] == 7

    assert got["bad_code"] == 2 and "dummy_knob=12 is out of range; allowed: 0..9" in got["bad_err"]


def test_every_field_is_declared_with_its_schema():
    names = [fs.name for fs in jobschema.fields(TextureJob)]
    assert names[:2] == ["prompt", "mesh"] and len(names) == len(set(names))
    assert all(fs.help for fs in jobschema.fields(TextureJob))


def test_generated_flags_parse_into_job_fields():
    p = argparse.ArgumentParser()
    jobschema.add_job_arguments(p, TextureJob)
    args = p.parse_args(["--cfg", "12.5", "--lr", "0.05", "--recipe", "PAPER-3D", "--no-view-prompts", "--steps", "40"])
    over = jobschema.job_overrides(args, TextureJob)
    assert over == {"cfg_scale": 12.5, "learning_rate": 0.05, "recipe": "paper-3d", "view_dependent_prompts": False,
                    "steps": 40}
    job = TextureJob(prompt="x", **over)
    assert job.recipe.value == "paper-3d" and job.view_dependent_prompts is False
    assert jobschema.job_overrides(p.parse_args([]), TextureJob) == {}


@pytest.mark.parametrize("fields, message", [
    ({"cfg_scale": "high"}, "cfg_scale='high' must be a number in 0..1000"),
    ({"view_dependent_prompts": "yes"}, "view_dependent_prompts='yes' must be true or false"),
    ({"backend": "opengl"}, "allowed: auto, numba, nvdiffrast"),
    ({"views": "top"}, "allowed: auto, orbit, closeup"),
    ({"seed": None}, "seed must not be null"),
    ({"render_size": 8}, "allowed: 16..4096"),
])
def test_the_one_validator_names_what_is_allowed(fields, message):
    with pytest.raises(SpecError) as err:
        TextureJob(prompt="x", **fields)
    assert message in str(err.value)


def test_a_checkpoint_older_than_a_field_still_resumes():
    """A field added after a job was checkpointed counts as its default on resume."""
    from engine.jobrun import check_resume

    job = TextureJob(prompt="x", steps=20)
    saved = job.to_dict()
    del saved["encoder"], saved["control_scale"]  # written before these fields existed
    check_resume(job, saved)
    with pytest.raises(SpecError, match="differs from the checkpoint's in steps"):
        check_resume(job, {**saved, "steps": 30})
    with pytest.raises(SpecError, match="control_scale"):
        check_resume(job.replace(control_scale=0.5), saved)
