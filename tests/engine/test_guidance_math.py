"""Guidance mathematics that a wrong implementation would get wrong.

Each test fails for one specific mistake (named in its docstring), through the public
functions the loop calls. The stand-in denoiser below is a closed-form function (no
network can be trained or downloaded for a unit test) in which the prompt embedding,
x_t and t interact, so swapping prompts, using t - 1 or alpha-bar[t - 1], or changing a
prompt's suffix all change the gradient:

    eps(x_t, t, e) = (A x_t + B t) (1 + m / 10) + m,  m = mean(e),  e(prompt) = len(prompt).
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.guidance.config import PAPER_SOURCE_MODIFIER, PAPER_TARGET_MODIFIER, GuidanceConfig
from engine.guidance.gradients import bridge_gradient, compute_guidance, sds_gradient
from engine.guidance.method import GuidanceMethod
from engine.guidance.recipe import Recipe, recipe_values
from engine.guidance.schedule import sample_timestep, stage_prompts, timestep_range, view_suffix
from engine.job import TextureJob
from tests.engine.test_guidance import LinearPrior

A, B = 0.3, 0.002


class CoupledPrior(LinearPrior):
    """eps = (A x_t + B t)(1 + m/10) + m with m = len(prompt); records the prompts it encodes."""

    name = "coupled-test"

    def __init__(self):
        super().__init__()
        self.prompts: list[str] = []
        self.timesteps: list[int] = []

    def encode_prompts(self, prompts):
        self.prompts.extend(prompts)
        return torch.stack([torch.full((2, 3), float(len(p))) for p in prompts])

    def predict_noise(self, latents, t, embeddings):
        self.timesteps.extend(int(v) for v in t)
        m = embeddings.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        return (A * latents + B * t.float().reshape(-1, 1, 1, 1)) * (1 + m / 10) + m


def eps(x_t: torch.Tensor, t: int, prompt: str) -> torch.Tensor:
    m = float(len(prompt))
    return (A * x_t + B * t) * (1 + m / 10) + m


def draws(seed: int, lo: int, hi: int, shape) -> tuple[int, torch.Tensor]:
    """t first, then the noise, from one generator (the documented order)."""
    g = torch.Generator().manual_seed(seed)
    t = int(torch.randint(lo, hi + 1, (1,), generator=g).item())
    return t, torch.randn(shape, generator=g)


def noisy(prior, x0, noise, t):
    ab = float(prior.alphas_cumprod[t])
    return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise, 1.0 - ab


X0 = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(3))


def test_sds_through_compute_guidance_with_view_prompts():
    """Catches: cond/uncond swapped, noise drawn before t, the view suffix missing or misplaced."""
    prior = CoupledPrior()
    c = GuidanceConfig(method=GuidanceMethod.SDS, cfg_scale=7.0)
    r = compute_guidance(c, prior, "red bricks", X0, 0, [90.0], [5.0], torch.Generator().manual_seed(11))
    t, noise = draws(11, *timestep_range(c, 0, 1000), X0.shape)
    assert r.t == t
    x_t, w = noisy(prior, X0, noise, t)
    e_u, e_c = eps(x_t, t, ""), eps(x_t, t, "red bricks, side view")
    expected = w * (e_u + 7.0 * (e_c - e_u) - noise)
    assert torch.allclose(r.grad, expected, atol=1e-4)
    swapped = w * (e_c + 7.0 * (e_u - e_c) - noise)
    assert not torch.allclose(r.grad, swapped, atol=1e-2)


def test_bridge_uses_t_and_alpha_bar_t_not_t_minus_one():
    """Catches: alpha-bar[t-1] in x_t or w(t), and the denoiser given t-1."""
    prior = CoupledPrior()
    t = 600
    noise = torch.randn(X0.shape, generator=torch.Generator().manual_seed(4))
    g = bridge_gradient(prior, X0, noise, torch.tensor([t]), torch.full((1, 2, 3), 9.0), torch.full((1, 2, 3), 4.0), 3.0)
    assert prior.timesteps == [t, t]
    x_t, w = noisy(prior, X0, noise, t)
    expected = w * 3.0 * (eps(x_t, t, "x" * 9) - eps(x_t, t, "x" * 4))
    assert torch.allclose(g, expected, atol=1e-5)
    x_prev, w_prev = noisy(prior, X0, noise, t - 1)
    assert not torch.allclose(g, w_prev * 3.0 * (eps(x_prev, t - 1, "x" * 9) - eps(x_prev, t - 1, "x" * 4)), atol=1e-6)


def test_bridge_without_time_weight_is_the_plain_difference():
    """The 3D recipe's stage 2: 1 * (eps_tgt - eps_src), no w(t)."""
    prior = CoupledPrior()
    t = 300
    noise = torch.randn(X0.shape, generator=torch.Generator().manual_seed(5))
    g = bridge_gradient(prior, X0, noise, torch.tensor([t]), torch.full((1, 2, 3), 9.0), torch.full((1, 2, 3), 4.0),
                        1.0, time_weight=False)
    x_t, _ = noisy(prior, X0, noise, t)
    assert torch.allclose(g, eps(x_t, t, "x" * 9) - eps(x_t, t, "x" * 4), atol=1e-5)


def test_sds_gradient_denoiser_sees_t():
    """Catches: the denoiser given t - 1 in SDS."""
    prior = CoupledPrior()
    noise = torch.randn(X0.shape, generator=torch.Generator().manual_seed(6))
    sds_gradient(prior, X0, noise, torch.tensor([250]), torch.full((1, 2, 3), 5.0), torch.full((1, 2, 3), 0.0), 2.0)
    assert prior.timesteps == [250, 250]


def test_timestep_draw_includes_t_max():
    """Catches: randint excluding the upper end (hi = round(0.98 T) must be drawable)."""
    assert sample_timestep(980, 980, torch.Generator().manual_seed(0)) == 980
    g = torch.Generator().manual_seed(1)
    seen = {sample_timestep(978, 980, g) for _ in range(200)}
    assert seen == {978, 979, 980}


def test_nfsd_negative_prompt_has_no_view_suffix():
    """Catches: the view suffix appended to NFSD's negative prompt (directly and via compute_guidance)."""
    c = GuidanceConfig(method=GuidanceMethod.NFSD)
    p = stage_prompts(c, "blue tiles", 1, ", back view")
    assert p.negative == c.nfsd_negative_prompt and p.cond == "blue tiles, back view" and p.uncond == ""
    prior = CoupledPrior()
    r = compute_guidance(c, prior, "blue tiles", X0, 0, [180.0], [0.0], torch.Generator().manual_seed(2))
    assert set(prior.prompts) == {"blue tiles, back view", "", c.nfsd_negative_prompt}
    t, noise = draws(2, *timestep_range(c, 0, 1000), X0.shape)
    x_t, w = noisy(prior, X0, noise, t)
    e_u, e_c, e_n = eps(x_t, t, ""), eps(x_t, t, "blue tiles, back view"), eps(x_t, t, c.nfsd_negative_prompt)
    delta_d = e_u if t < 200 else e_u - e_n
    assert torch.allclose(r.grad, w * (delta_d + 7.5 * (e_c - e_u)), atol=1e-3)


def test_bridge_stage_two_prompts_with_view_suffix_through_compute_guidance():
    """Stage 2 encodes prompt + modifier + suffix for target and source (suffix after modifiers)."""
    prior = CoupledPrior()
    c = GuidanceConfig(stage_two_start=0, cfg_scale=10.0)
    compute_guidance(c, prior, "cat", X0, 0, [0.0], [80.0], torch.Generator().manual_seed(0))
    assert prior.prompts == ["cat" + PAPER_TARGET_MODIFIER + ", overhead view", "cat" + PAPER_SOURCE_MODIFIER + ", overhead view"]
    assert view_suffix(c, 0.0, 80.0) == ", overhead view"


def test_recipes_resolve_to_the_authors_numbers():
    r2, v2 = recipe_values(Recipe.PAPER_2D)
    assert r2 is Recipe.PAPER_2D
    assert (v2.cfg_scale, v2.stage_two_scale, v2.stage_two_time_weight, v2.stage_two_fraction) == (40.0, None, True, 0.5)
    assert v2.target_modifier == ", detailed high resolution, high quality, sharp" and v2.anneal_fraction is None
    _, v3 = recipe_values(Recipe.PAPER_3D)
    assert (v3.cfg_scale, v3.stage_two_scale, v3.stage_two_time_weight, v3.stage_two_fraction) == (100.0, 1.0, False, 0.8)
    assert v3.target_modifier == "" and (v3.anneal_fraction, v3.anneal_t_max) == (0.2, 0.5)
    for v in (v2, v3):
        assert v.source_modifier == PAPER_SOURCE_MODIFIER
        assert (v.learning_rate, v.betas, v.eps) == (0.01, (0.9, 0.99), 1e-15)
        assert v.lr_final_fraction == 1.0  # both of the authors' recipes keep the learning rate constant
        assert (v.steps, v.views_per_step) == (1000, None)  # the 2D count; the device's views per step


def test_auto_picks_by_the_priors_views():
    from engine.cameras import ViewMode

    assert recipe_values(Recipe.AUTO, ViewMode.CLOSEUP)[0] is Recipe.EMBEDDED
    assert recipe_values(Recipe.AUTO, ViewMode.ORBIT)[0] is Recipe.PAPER_2D
    r = TextureJob(prompt="x").resolve(ViewMode.CLOSEUP, 64)
    assert (r.recipe, r.values.learning_rate, r.views, r.render_size) == (Recipe.EMBEDDED, 0.1, ViewMode.CLOSEUP, 64)
    assert (r.values.cfg_scale, r.values.lr_final_fraction, r.values.stage_two_fraction) == (7.5, 0.3, 0.5)
    edit = TextureJob(prompt="blue bricks", edit_source_prompt="red bricks").resolve(ViewMode.CLOSEUP, 64)
    assert edit.values.lr_final_fraction == 1.0  # refine keeps the learning rate constant
    assert TextureJob(prompt="b", edit_source_prompt="a", lr_final_fraction=0.5).resolve().values.lr_final_fraction == 0.5
    assert TextureJob(prompt="x", views="orbit", render_size=128).resolve(ViewMode.CLOSEUP, 64).views is ViewMode.ORBIT


def test_the_recipe_fixes_steps_and_views_per_step_unless_the_job_does():
    """A job without steps gets its recipe's (embedded: EMBEDDED_STEPS at 2 views a step;
    paper recipes 1000 at the device's views); set fields win; stage 2 and the anneal follow."""
    from engine.cameras import ViewMode
    from engine.errors import SpecError
    from engine.guidance.recipe import EMBEDDED

    r = TextureJob(prompt="x").resolve(ViewMode.CLOSEUP, 64)
    assert (r.steps, r.values.views_per_step, r.stage_two_start) == (EMBEDDED.steps, 2, EMBEDDED.steps // 2)
    assert r.to_dict()["steps"] == EMBEDDED.steps and r.to_dict()["views_per_step"] == 2  # job.json records them
    sd = TextureJob(prompt="x").resolve(ViewMode.ORBIT, 512)
    assert (sd.steps, sd.values.views_per_step, sd.stage_two_start) == (1000, None, 500)
    own = TextureJob(prompt="x", steps=300, views_per_step=1).resolve(ViewMode.CLOSEUP, 64)
    assert (own.steps, own.values.views_per_step, own.stage_two_start) == (300, 1, 150)
    p3 = TextureJob(prompt="x", recipe="paper-3d").resolve(ViewMode.CLOSEUP, 64).guidance_config()
    assert (p3.stage_two_start, p3.anneal_after_step) == (800, 200)
    with pytest.raises(SpecError, match=f"allowed: 0..{EMBEDDED.steps} .*embedded recipe's"):
        TextureJob(prompt="x", stage_two_start=EMBEDDED.steps + 1).resolve(ViewMode.CLOSEUP, 64)
    assert TextureJob(prompt="x", stage_two_start=EMBEDDED.steps + 1).resolve(ViewMode.ORBIT).stage_two_start == EMBEDDED.steps + 1


def test_job_resolution_of_the_3d_recipe_and_overrides():
    g = TextureJob(prompt="x", steps=1000, recipe="paper-3d").resolve().guidance_config()
    assert (g.scale, g.bridge_scale, g.stage_two_time_weight, g.stage_two_start) == (100.0, 1.0, False, 800)
    assert (g.anneal_after_step, g.anneal_t_max, g.target_modifier) == (200, 0.5, "")
    assert timestep_range(g, 199, 1000) == (20, 980) and timestep_range(g, 200, 1000) == (20, 500)
    g2 = TextureJob(prompt="x", steps=1000, recipe="paper-2d").resolve().guidance_config()
    assert (g2.scale, g2.bridge_scale, g2.stage_two_start, g2.anneal_after_step) == (40.0, 40.0, 500, None)
    o = TextureJob(prompt="x", steps=100, recipe="paper-3d", cfg_scale=12, stage_two_start=30, target_modifier=", sharp",
                   learning_rate=0.2).resolve()
    assert (o.values.cfg_scale, o.stage_two_start, o.values.target_modifier, o.values.learning_rate) == (12.0, 30, ", sharp", 0.2)
    assert TextureJob(prompt="x", recipe="paper-2d", lr_final_fraction=0.25).resolve().values.lr_final_fraction == 0.25
    assert TextureJob(prompt="x", method="nfsd", recipe="paper-3d").resolve().guidance_config().scale == 7.5


def test_bad_recipe_names_the_allowed_ones():
    from engine.errors import SpecError

    with pytest.raises(SpecError, match="allowed: auto, paper-2d, paper-3d, embedded"):
        TextureJob(prompt="x", recipe="paper-4d")
