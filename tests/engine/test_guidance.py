"""Exact-math tests of the guidance gradients with a linear noise model written here.

The fake prior below stands in for a denoiser only so that every gradient has a
closed form: eps(x_t, t, e) = a * x_t + b * t + mean(e).
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.guidance.config import DEFAULT_CFG, PAPER_SOURCE_MODIFIER, PAPER_TARGET_MODIFIER, GuidanceConfig
from engine.guidance.gradients import (
    add_noise,
    bridge_gradient,
    cfg_combine,
    compute_guidance,
    nfsd_gradient,
    sds_gradient,
)
from engine.guidance.method import GuidanceMethod
from engine.guidance.schedule import stage_for_step, stage_prompts, timestep_range, view_suffix, weight
from engine.errors import SpecError

A, B = 0.3, 0.001


class LinearPrior:
    """eps = A x_t + B t + mean(embedding); embedding of a prompt = its length (1, 2, 3)."""

    name = "linear-test"
    device = torch.device("cpu")
    dtype = torch.float32
    resolution = 16
    latent_channels = 4
    num_train_timesteps = 1000
    prediction_type = "epsilon"

    def __init__(self):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.calls = []

    def encode_prompts(self, prompts):
        return torch.stack([torch.full((2, 3), float(len(p))) for p in prompts])

    def predict_noise(self, latents, t, embeddings):
        self.calls.append(latents.shape[0])
        return A * latents + B * t.float().reshape(-1, 1, 1, 1) + embeddings.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)

    def encode_images(self, images):  # pragma: no cover - not used here
        raise NotImplementedError

    def unload(self):  # pragma: no cover
        pass


def _emb(v, n=2):
    return torch.full((n, 2, 3), float(v))


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 3, generator=g)
    noise = torch.randn(2, 4, 3, 3, generator=g)
    return LinearPrior(), x0, noise


def _xt(prior, x0, noise, t):
    ab = float(prior.alphas_cumprod[t])
    return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise, 1 - ab


def test_add_noise_and_weight(setup):
    prior, x0, noise = setup
    t = torch.tensor([100, 900])
    xt = add_noise(prior.alphas_cumprod, x0, noise, t)
    for i, ti in enumerate([100, 900]):
        exp, w = _xt(prior, x0[i], noise[i], ti)
        assert torch.allclose(xt[i], exp, atol=1e-6)
        assert weight(prior.alphas_cumprod, t)[i].item() == pytest.approx(w, rel=1e-6)
    assert weight(prior.alphas_cumprod, t).shape == (2, 1, 1, 1)


def test_cfg_combine():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    assert cfg_combine(u, c, 7.5).item() == pytest.approx(1 + 7.5 * 2)
    assert cfg_combine(u, c, 1.0).item() == pytest.approx(3.0)
    assert cfg_combine(u, c, 0.0).item() == pytest.approx(1.0)


def test_sds_formula(setup):
    prior, x0, noise = setup
    t, s = 400, 40.0
    tt = torch.tensor([t, t])
    g = sds_gradient(prior, x0, noise, tt, _emb(5.0), _emb(2.0), s)
    xt, w = _xt(prior, x0, noise, t)
    eps_u = A * xt + B * t + 2.0
    eps_c = A * xt + B * t + 5.0
    expected = w * (eps_u + s * (eps_c - eps_u) - noise)
    assert torch.allclose(g, expected, atol=1e-5)
    assert prior.calls == [4]  # CFG pair in one call of 2B


@pytest.mark.parametrize("t", [100, 600])
def test_nfsd_formula(setup, t):
    prior, x0, noise = setup
    s = 7.5
    tt = torch.tensor([t, t])
    g = nfsd_gradient(prior, x0, noise, tt, _emb(5.0), _emb(2.0), _emb(11.0), s, small_t=200)
    xt, w = _xt(prior, x0, noise, t)
    eps_u, eps_c, eps_n = (A * xt + B * t + v for v in (2.0, 5.0, 11.0))
    delta_d = eps_u if t < 200 else eps_u - eps_n
    expected = w * (delta_d + s * (eps_c - eps_u))
    assert torch.allclose(g, expected, atol=1e-5)
    assert prior.calls == [6]


def test_bridge_formula(setup):
    prior, x0, noise = setup
    t, s = 700, 40.0
    tt = torch.tensor([t, t])
    g = bridge_gradient(prior, x0, noise, tt, _emb(9.0), _emb(4.0), s)
    xt, w = _xt(prior, x0, noise, t)
    expected = w * s * ((A * xt + B * t + 9.0) - (A * xt + B * t + 4.0))
    assert torch.allclose(g, expected, atol=1e-4)
    # Same as the difference of two CFG predictions sharing the unconditional term.
    eps_u = A * xt + B * t + 0.0
    cfg_t = cfg_combine(eps_u, A * xt + B * t + 9.0, s)
    cfg_s = cfg_combine(eps_u, A * xt + B * t + 4.0, s)
    assert torch.allclose(g, w * (cfg_t - cfg_s), atol=1e-4)


def test_stage_is_function_of_step():
    c = GuidanceConfig(method=GuidanceMethod.BRIDGE, stage_two_start=10)
    assert [stage_for_step(c, s) for s in (0, 9, 10, 11, 500)] == [1, 1, 2, 2, 2]
    assert stage_for_step(GuidanceConfig(method=GuidanceMethod.SDS, stage_two_start=0), 50) == 1
    assert stage_for_step(GuidanceConfig(method=GuidanceMethod.NFSD, stage_two_start=0), 50) == 1
    edit = GuidanceConfig(method=GuidanceMethod.BRIDGE, stage_two_start=10, edit_source_prompt="a gray wall")
    assert stage_for_step(edit, 0) == 2


def test_timestep_range_and_anneal():
    c = GuidanceConfig()
    assert timestep_range(c, 0, 1000) == (20, 980)
    a = GuidanceConfig(anneal_after_step=100)
    assert timestep_range(a, 99, 1000) == (20, 980)
    assert timestep_range(a, 100, 1000) == (20, 500)


def test_view_suffixes_follow_angles():
    c = GuidanceConfig()
    assert view_suffix(c, 0, 10) == ", front view"
    assert view_suffix(c, 30, 0) == ", front view"
    assert view_suffix(c, -45, 0) == ", front view"
    assert view_suffix(c, 90, 0) == ", side view"
    assert view_suffix(c, -100, 20) == ", side view"
    assert view_suffix(c, 180, 0) == ", back view"
    assert view_suffix(c, -170, 0) == ", back view"
    assert view_suffix(c, 540, 0) == ", back view"
    assert view_suffix(c, 0, 75) == ", overhead view"
    assert view_suffix(GuidanceConfig(view_dependent_prompts=False), 180, 0) == ""


def test_stage_prompts():
    c = GuidanceConfig()
    p1 = stage_prompts(c, "a dog", 1, ", side view")
    assert (p1.cond, p1.uncond) == ("a dog, side view", "")
    p2 = stage_prompts(c, "a dog", 2, ", back view")
    assert p2.target == "a dog" + PAPER_TARGET_MODIFIER + ", back view"
    assert p2.source == "a dog" + PAPER_SOURCE_MODIFIER + ", back view"
    e = stage_prompts(GuidanceConfig(edit_source_prompt="red bricks"), "mossy bricks", 2, "")
    assert (e.target, e.source) == ("mossy bricks", "red bricks")


def test_default_cfg_per_method():
    assert GuidanceConfig(method=GuidanceMethod.BRIDGE).scale == 40.0 == DEFAULT_CFG[GuidanceMethod.SDS]
    assert GuidanceConfig(method=GuidanceMethod.NFSD).scale == 7.5
    assert GuidanceConfig(cfg_scale=12).scale == 12.0
    with pytest.raises(SpecError, match="allowed: sds, nfsd, bridge"):
        GuidanceConfig(method="vsd")


def test_compute_guidance_dispatches_by_stage():
    prior = LinearPrior()
    c = GuidanceConfig(stage_two_start=3, view_dependent_prompts=False, cfg_scale=10)
    x0 = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(5)
    r = compute_guidance(c, prior, "cat", x0, 3, [0.0], [0.0], g)
    assert r.stage == 2 and 20 <= r.t <= 980
    _, w = _xt(prior, x0, x0, r.t)
    tgt, src = len("cat" + PAPER_TARGET_MODIFIER), len("cat" + PAPER_SOURCE_MODIFIER)
    assert torch.allclose(r.grad, torch.full_like(x0, w * 10 * (tgt - src)), atol=1e-4)
    # Same generator state -> same t and noise (determinism); stage 1 at step 2.
    r1 = compute_guidance(c, prior, "cat", x0, 2, [0.0], [0.0], torch.Generator().manual_seed(5))
    assert r1.stage == 1 and r1.t == r.t
    assert r.loss == pytest.approx(0.5 * float(r.grad.pow(2).mean()))
