"""ControlNet conditioning: loading, the gradient of every method, and the conditioning images.

A tiny random ControlNet built from the tiny SD UNet (``tests/helpers/tiny_controlnet.py``,
zero-convolutions perturbed) is loaded offline through ``with_control``, the code jobs use.
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.cameras import orbit_cameras
from engine.errors import ModelNotFoundError, SpecError
from engine.guidance.config import GuidanceConfig
from engine.guidance.gradients import compute_guidance
from engine.guidance.method import GuidanceMethod
from engine.priors.controlnet import ControlConfig, ControlledPrior, with_control
from engine.raster import RasterContext, rasterize
from engine.raster.control_images import ControlImageConfig, ControlKind, control_images
from tests.helpers.cube import cube_mesh
from tests.helpers.tiny_controlnet import build_mismatched_controlnet, build_tiny_controlnet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def controlnet_dir(tiny_sd_dir, tmp_path_factory):
    return build_tiny_controlnet(tmp_path_factory.mktemp("cn") / "controlnet", tiny_sd_dir)


@pytest.fixture(scope="module")
def controlled(prior, controlnet_dir):
    return with_control(prior, ControlConfig(str(controlnet_dir), ControlKind.DEPTH, 1.0))


def test_loads_offline_through_with_control(prior, controlled, controlnet_dir):
    assert isinstance(controlled, ControlledPrior)
    assert controlled.controlnet_name == str(controlnet_dir.resolve())
    assert controlled.name == prior.name and controlled.resolution == prior.resolution == 64
    assert controlled.alphas_cumprod is prior.alphas_cumprod and controlled.base is prior
    assert not any(p.requires_grad for p in controlled.controlnet.parameters())
    assert with_control(prior, None) is prior  # no ControlNet: the prior itself


def test_uncached_controlnet_hub_id_offline(prior, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download someone/no-controlnet") as e:
        with_control(prior, ControlConfig("someone/no-controlnet"))
    assert e.value.fix.field == "controlnet"


def test_mismatched_controlnet_names_both(prior, tmp_path):
    bad = build_mismatched_controlnet(tmp_path / "cn16")
    with pytest.raises(SpecError) as e:
        with_control(prior, ControlConfig(str(bad)))
    msg = str(e.value)
    assert str(bad.resolve()) in msg and prior.name in msg and "cross_attention_dim 16 vs 32" in msg


def test_embedded_prior_refuses_a_controlnet(controlnet_dir):
    from engine.priors.loading import load_prior

    emb = load_prior("embedded", "cpu")
    with pytest.raises(SpecError, match="Stable Diffusion priors") as e:
        with_control(emb, ControlConfig(str(controlnet_dir)))
    assert e.value.exit_code == 2


# (config, step): SDS, NFSD, Bridge stage 1 (step < stage_two_start) and stage 2.
CASES = {
    "sds": (GuidanceConfig(method=GuidanceMethod.SDS, cfg_scale=7.5, view_dependent_prompts=False), 0),
    "nfsd": (GuidanceConfig(method=GuidanceMethod.NFSD, view_dependent_prompts=False), 0),
    "bridge-1": (GuidanceConfig(method=GuidanceMethod.BRIDGE, cfg_scale=7.5, stage_two_start=5,
                                view_dependent_prompts=False), 0),
    "bridge-2": (GuidanceConfig(method=GuidanceMethod.BRIDGE, cfg_scale=7.5, stage_two_start=5,
                                view_dependent_prompts=False), 5),
}


def _grad(config, prior, step, control=None):
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    r = compute_guidance(config, prior, "a stone statue", x0, step, [0.0, 90.0], [0.0, 10.0],
                         torch.Generator().manual_seed(11), control=control)
    return r


@pytest.mark.parametrize("case", list(CASES))
def test_every_method_is_conditioned(case, prior, controlled, controlnet_dir):
    config, step = CASES[case]
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    calls = []
    hook = controlled.controlnet.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(kwargs["controlnet_cond"].clone()), with_kwargs=True)
    try:
        plain = _grad(config, prior, step)
        with_cn = _grad(config, controlled, step, images)
    finally:
        hook.remove()
    assert with_cn.t == plain.t and with_cn.stage == plain.stage == (2 if case == "bridge-2" else 1)
    # One ControlNet call for the whole CFG batch; every prompt's copy of a view gets its image.
    k = 3 if case == "nfsd" else 2
    assert len(calls) == 1 and calls[0].shape == (2 * k, 3, 64, 64)
    assert all(torch.equal(c, images) for c in calls[0].chunk(k))
    rel = float((with_cn.grad - plain.grad).norm() / plain.grad.norm())
    assert rel > 1e-3, rel
    # control_scale 0: the residuals are zero and the gradient is the plain UNet's.
    zero = with_control(prior, ControlConfig(str(controlnet_dir), ControlKind.DEPTH, 0.0))
    off = _grad(config, zero, step, images)
    assert torch.allclose(off.grad, plain.grad, rtol=1e-5, atol=1e-6)


def test_residuals_scale_linearly(prior, controlled, controlnet_dir):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300, 300])
    e = prior.encode_prompts(["a", "b"])
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    half = with_control(prior, ControlConfig(str(controlnet_dir), ControlKind.DEPTH, 0.5))
    r1, r05 = controlled.residuals(x, t, e, img), half.residuals(x, t, e, img)
    assert len(r1["down_block_additional_residuals"]) == len(r05["down_block_additional_residuals"]) > 0
    for a, b in zip(r1["down_block_additional_residuals"], r05["down_block_additional_residuals"]):
        assert torch.allclose(b, 0.5 * a, atol=1e-6)
    assert torch.allclose(r05["mid_block_additional_residual"], 0.5 * r1["mid_block_additional_residual"], atol=1e-6)
    assert float(r1["mid_block_additional_residual"].abs().max()) > 0


# -- conditioning images on a cube ----------------------------------------------------------

R = 64


def _cube_views(azimuth, elevation):
    cams = orbit_cameras([azimuth], [elevation], 2.8)
    return rasterize(RasterContext("numba", device="cpu"), cube_mesh(), cams, R), cams


def test_depth_image_face_on_is_constant_with_the_masks_edges():
    gb, cams = _cube_views(0.0, 0.0)
    img = control_images(ControlKind.DEPTH, gb, cams.view, cams.proj, R)
    assert img.shape == (1, 3, R, R) and img.dtype == torch.float32
    assert torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 0], img[:, 2])
    mask = gb.mask[0]
    assert set(gb.tri_id[0][mask].unique().tolist()) <= {0, 1}  # only the front face (+Z) is seen
    assert 0.2 < mask.float().mean() < 0.8
    # Constant (the nearest value, 1) on the face; 0 elsewhere; so the image's edges are the mask's.
    assert torch.all(img[0, 0][mask] == 1.0) and torch.all(img[0, 0][~mask] == 0.0)
    assert torch.equal(img[0, 0] > 0, mask)


def test_depth_image_is_normalised_inverse_depth():
    gb, cams = _cube_views(45.0, 30.0)
    floor = 0.2
    img = control_images(ControlKind.DEPTH, gb, cams.view, cams.proj, R, ControlImageConfig(depth_floor=floor))[0, 0]
    m = gb.mask[0]
    d = gb.depth[0][m].double()
    disp = 1.0 / d
    expected = floor + (1 - floor) * (disp - disp.min()) / (disp.max() - disp.min())
    assert torch.allclose(img[m].double(), expected, atol=1e-5)
    assert float(img[m].max()) == pytest.approx(1.0) and float(img[m].min()) == pytest.approx(floor)


def test_normal_image_face_on_is_the_face_normal():
    gb, cams = _cube_views(0.0, 0.0)
    img = control_images(ControlKind.NORMAL, gb, cams.view, cams.proj, R)[0]
    m = gb.mask[0]
    # The +Z face looks at the camera: n_cam = (0, 0, 1) -> rgb (0.5, 0.5, 1.0).
    for c, v in enumerate((0.5, 0.5, 1.0)):
        assert torch.allclose(img[c][m], torch.full_like(img[c][m], v), atol=1e-5)
    assert torch.all(img[:, ~m] == 0.0)


def test_normal_image_convention_left_up_towards_viewer():
    """Azimuth 45: the +Z face (left half) faces left, the +X face (right half) faces right;
    red = (1 - n_x) / 2 is above 0.5 only for the left-facing one. Elevation 30: the top faces up."""
    gb, cams = _cube_views(45.0, 0.0)
    img = control_images(ControlKind.NORMAL, gb, cams.view, cams.proj, R)[0]
    s = math.sqrt(0.5)
    tri = gb.tri_id[0]
    expect = {(0, 1): ((1 + s) / 2, 0.5, (1 + s) / 2), (4, 5): ((1 - s) / 2, 0.5, (1 + s) / 2)}
    for tris, rgb in expect.items():
        sel = (tri == tris[0]) | (tri == tris[1])
        assert sel.sum() > 50
        for c, v in enumerate(rgb):
            assert torch.allclose(img[c][sel], torch.full_like(img[c][sel], v), atol=1e-5), (tris, c)
    cols = torch.nonzero((tri == 0) | (tri == 1))[:, 1].float().mean()
    assert cols < R / 2 < torch.nonzero((tri == 4) | (tri == 5))[:, 1].float().mean()

    gb, cams = _cube_views(0.0, 30.0)
    img = control_images(ControlKind.NORMAL, gb, cams.view, cams.proj, R)[0]
    top = (gb.tri_id[0] == 8) | (gb.tri_id[0] == 9)  # +Y face: n_cam = (0, sin 60, cos 60)
    for c, v in enumerate((0.5, (1 + math.sin(math.radians(60))) / 2, (1 + 0.5) / 2)):
        assert torch.allclose(img[c][top], torch.full_like(img[c][top], v), atol=1e-5), c


def test_images_resize_to_the_prior_resolution():
    gb, cams = _cube_views(0.0, 0.0)
    img = control_images(ControlKind.DEPTH, gb, cams.view, cams.proj, 32)
    assert img.shape == (1, 3, 32, 32) and float(img.max()) <= 1.0 and float(img.min()) >= 0.0
