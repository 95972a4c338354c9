"""The optimization loop on a real tiny SD prior, real rasterizer and renderer (CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.cameras import OrbitConfig, sample_orbit
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import JobCancelled
from engine.guidance.config import GuidanceConfig
from engine.optimize import OptimizeConfig, gray_texture, optimize_texture
from engine.priors.loading import load_prior
from engine.raster import RasterContext
from engine.render import ViewCache
from engine.callbacks import JobCallbacks
from engine.views import CachedViews
from tests.helpers.cube import cell_slice, cube_mesh

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def views():
    cams = sample_orbit(OrbitConfig(), 16, torch.Generator().manual_seed(0))
    return CachedViews(ViewCache.build(RasterContext(device="cpu"), cube_mesh(), cams, 64))


def _run(prior, views, tmp, steps, resume=False, callbacks=None, guidance=None, cfg_extra=None, **kw):
    """The loop as a caller drives it: checkpoints saved from ``on_checkpoint`` into
    ``tmp/latest.pt``; a resume reads that file and hands it over as the start."""
    guidance = guidance or GuidanceConfig(stage_two_start=12)
    cfg = OptimizeConfig(steps=steps, learning_rate=0.05, checkpoint_every=5, preview_every=5, seed=3, **(cfg_extra or {}))
    cb = dataclasses.replace(callbacks or JobCallbacks(), on_checkpoint=lambda ck: save_checkpoint(ck, tmp / "latest.pt"))
    start = load_checkpoint(tmp / "latest.pt") if resume else None
    kw.setdefault("init_texture", None if resume else gray_texture(SIZE))
    return optimize_texture(prior=prior, views=views, guidance=guidance, config=cfg, prompt="a wooden crate",
                            start=start, callbacks=cb, **kw)


def test_resume_is_bit_identical_across_stage_switch(prior, views, tmp_path):
    stages = []
    straight = _run(prior, views, tmp_path / "a", 20, callbacks=JobCallbacks(on_stage=stages.append))
    assert stages == [1, 2]
    first = _run(prior, views, tmp_path / "b", 10)
    assert first.steps_done == 10 and load_checkpoint(tmp_path / "b" / "latest.pt").step == 10
    events, stages_b = [], []
    resumed = _run(prior, views, tmp_path / "b", 20, resume=True,
                   callbacks=JobCallbacks(on_progress=events.append, on_stage=stages_b.append))
    assert [e.step for e in events] == list(range(11, 21))
    assert [e.stage for e in events] == [1, 1] + [2] * 8  # steps 10, 11 stage 1; 12.. stage 2
    assert stages_b == [1, 2]
    assert resumed.steps_done == 20
    assert np.array_equal(straight.texture, resumed.texture)
    assert not np.allclose(straight.texture, 0.5)  # it did optimize


def test_lr_schedule_is_a_function_of_the_step():
    c = OptimizeConfig(steps=11, learning_rate=0.1, lr_final_fraction=0.2)
    lrs = [c.lr_at(s) for s in range(11)]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.02) and lrs[5] == pytest.approx(0.06)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert {OptimizeConfig(steps=11, learning_rate=0.1).lr_at(s) for s in range(11)} == {0.1}  # default: constant


def test_resume_keeps_the_lr_schedule(prior, views, tmp_path):
    """A job cancelled part-way and resumed follows the same schedule: bit-identical result."""
    sched = {"lr_final_fraction": 0.1}
    straight = _run(prior, views, tmp_path / "a", 14, cfg_extra=sched)
    assert load_checkpoint(tmp_path / "a" / "latest.pt").optimizer["param_groups"][0]["lr"] == pytest.approx(
        OptimizeConfig(steps=14, learning_rate=0.05, **sched).lr_at(13))
    done = []
    with pytest.raises(JobCancelled):
        _run(prior, views, tmp_path / "b", 14, cfg_extra=sched,
             callbacks=JobCallbacks(on_progress=done.append, should_cancel=lambda: len(done) >= 7))
    assert load_checkpoint(tmp_path / "b" / "latest.pt").step == 7
    resumed = _run(prior, views, tmp_path / "b", 14, cfg_extra=sched, resume=True)
    assert np.array_equal(straight.texture, resumed.texture)
    constant = _run(prior, views, tmp_path / "c", 14)
    assert not np.array_equal(straight.texture, constant.texture)


def test_texture_stays_in_unit_range_and_previews(prior, views, tmp_path):
    previews = []
    r = _run(prior, views, tmp_path, 10, callbacks=JobCallbacks(on_preview=lambda s, t: previews.append((s, t))))
    assert [s for s, _ in previews] == [5, 10]
    assert previews[0][1].shape == (SIZE, SIZE, 3) and previews[0][1].dtype == np.float32
    assert r.texture.min() >= 0.0 and r.texture.max() <= 1.0
    assert set(r.timings) == {"render", "encode", "guidance", "backward", "optimizer"}


def test_cancel_within_one_step_leaves_resumable_checkpoint(prior, views, tmp_path):
    seen = []

    def cancel():
        return len(seen) >= 7

    with pytest.raises(JobCancelled):
        _run(prior, views, tmp_path, 20, callbacks=JobCallbacks(on_progress=seen.append, should_cancel=cancel))
    assert len(seen) == 7  # no step ran after the cancel was requested
    assert load_checkpoint(tmp_path / "latest.pt").step == 7
    r = _run(prior, views, tmp_path, 9, resume=True)
    assert r.steps_done == 9


def test_texel_mask_limits_changes(prior, views, tmp_path):
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    rows, cols = cell_slice(0, SIZE)  # the front face's cell only
    mask[rows, cols] = True
    init = torch.rand(SIZE, SIZE, 3, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    r = _run(prior, views, tmp_path, 6, init_texture=init, texel_mask=mask,
             guidance=GuidanceConfig(edit_source_prompt="a plain box"))
    init_q = torch.sigmoid(torch.logit(init.clamp(1e-4, 1 - 1e-4))).numpy()
    outside = ~mask.numpy()
    assert np.allclose(r.texture[outside], init_q[outside], atol=1e-6)
    assert np.abs(r.texture[mask.numpy()] - init_q[mask.numpy()]).max() > 1e-3


@pytest.mark.gpu
def test_cuda_fp16_steps(tiny_sd_dir, tmp_path):
    """fp16 prior on CUDA, texture and G-buffers on the GPU, CPU generator: a few finite steps."""
    p = load_prior(str(tiny_sd_dir), "cuda")
    assert p.dtype == torch.float16
    cams = sample_orbit(OrbitConfig(), 8, torch.Generator().manual_seed(0))
    v = ViewCache.build(RasterContext(device="cuda"), cube_mesh(), cams, 64)
    saved = []
    r = optimize_texture(prior=p, views=v, guidance=GuidanceConfig(stage_two_start=2),
                         config=OptimizeConfig(steps=4, views_per_step=4, learning_rate=0.05, seed=0),
                         prompt="a wooden crate", init_texture=gray_texture(SIZE),
                         callbacks=JobCallbacks(on_checkpoint=saved.append))
    assert np.isfinite(r.texture).all() and not np.allclose(r.texture, 0.5)
    resumed = optimize_texture(prior=p, views=v, guidance=GuidanceConfig(stage_two_start=2),
                               config=OptimizeConfig(steps=6, views_per_step=4, learning_rate=0.05, seed=0),
                               prompt="a wooden crate", start=saved[-1])
    assert resumed.steps_done == 6
