"""run_texture_job: job folder layout, job.json, cancel/resume, refine with a face mask.

Real tiny SD prior, real rasterizer/renderer/export; a cube mesh built from arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import JobCancelled, SpecError
from engine.export import save_texture_png
from engine.job import TextureJob
from engine.runner import JobCallbacks, run_texture_job
from tests.helpers.cube import cell_slice, cube_mesh

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


def _job(tiny_sd_dir, **kw):
    base = dict(prompt="a wooden crate", model=str(tiny_sd_dir), steps=8, texture_size=SIZE, render_size=64,
                device="cpu", checkpoint_every=4, preview_every=4, seed=1)
    return TextureJob(**{**base, **kw})


def test_cancel_then_resume_finishes_and_records(prior, tiny_sd_dir, tmp_path, monkeypatch):
    job = _job(tiny_sd_dir, stage_two_start=3)
    steps = []
    cb = JobCallbacks(on_progress=lambda e: steps.append(e.step), should_cancel=lambda: len(steps) >= 5)
    with pytest.raises(JobCancelled):
        run_texture_job(job, tmp_path, mesh=cube_mesh(), prior=prior, callbacks=cb)
    rec = json.loads((tmp_path / "job.json").read_text())
    assert rec["status"] == "cancelled" and (tmp_path / "checkpoints" / "latest.pt").is_file()
    # A spec that changes the math is refused on resume.
    with pytest.raises(SpecError, match="differs from the checkpoint's in seed"):
        run_texture_job(job.replace(seed=2), tmp_path, mesh=cube_mesh(), prior=prior, resume=True)
    events, snapshots, reads = [], [], []
    real_load = torch.load

    def counting_load(f, *args, **kw):  # every checkpoint read goes through torch.load
        reads.append(str(f))
        return real_load(f, *args, **kw)

    monkeypatch.setattr(torch, "load", counting_load)
    res = run_texture_job(job, tmp_path, mesh=cube_mesh(), prior=prior, resume=True,
                          callbacks=JobCallbacks(on_progress=events.append,
                                                 on_snapshot=lambda step, path: snapshots.append((step, path.read_bytes()))))
    assert reads == [str(tmp_path / "checkpoints" / "latest.pt")]  # resume reads the checkpoint once
    assert [e.step for e in events] == [6, 7, 8] and res.steps_done == 8
    # The snapshot callback hands over the file the runner wrote (its bytes are the PNG on disk).
    assert [s for s, _ in snapshots] == [8]
    assert snapshots[0][1] == (tmp_path / "progress" / "step_000008.png").read_bytes()
    assert snapshots[0][1].startswith(b"\x89PNG")
    rec = json.loads((tmp_path / "job.json").read_text())
    assert rec["status"] == "succeeded" and rec["resumed"] is True and rec["steps_done"] == 8
    assert rec["model"] == prior.name == res.model_name
    assert rec["spec"] == job.to_dict() and rec["device"]["type"] == "cpu"
    assert {"torch", "diffusers", "texbridge"} <= set(rec["versions"])
    assert {"optimize_s", "export_s", "total_s"} <= set(rec["timings"])
    r = rec["resolved"]
    assert (r["recipe"], r["method"], r["cfg_scale"], r["stage_two_start"]) == ("paper-2d", "bridge", 40.0, 3)
    assert (r["learning_rate"], r["betas"], r["eps"], r["views"], r["render_size"]) == (0.01, [0.9, 0.99], 1e-15, "orbit", 64)
    assert sorted(p.name for p in (tmp_path / "progress").iterdir()) == ["step_000004.png", "step_000008.png"]


def test_refine_with_face_mask_changes_only_selected_faces(prior, tiny_sd_dir, tmp_path):
    rng = np.random.default_rng(0)
    init = (rng.random((SIZE, SIZE, 3)) * 0.6 + 0.2).astype(np.float32)
    save_texture_png(init, tmp_path / "init.png")
    init8 = np.asarray(Image.open(tmp_path / "init.png").convert("RGB"))
    face_mask = np.zeros(12, bool)
    face_mask[0:2] = True  # the front quad (UV cell 0)
    mesh = cube_mesh(face_mask=face_mask)
    job = _job(tiny_sd_dir, steps=6, edit_source_prompt="a plain cardboard box", prompt="a box covered in moss",
               init_texture=str(tmp_path / "init.png"), learning_rate=0.2)
    run_texture_job(job, tmp_path / "out", mesh=mesh, prior=prior)
    out8 = np.asarray(Image.open(tmp_path / "out" / "texture.png").convert("RGB"))
    for q in range(1, 6):  # the other faces' cells: untouched
        r, c = cell_slice(q, SIZE)
        assert np.array_equal(out8[r, c], init8[r, c]), f"face {q} changed"
    r, c = cell_slice(0, SIZE)
    assert np.abs(out8[r, c].astype(int) - init8[r, c]).max() >= 2
