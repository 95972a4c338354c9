"""The shipped embedded prior: folder, protocol, loading, and what its samples depict.

Real weights (engine/models/embedded), real diffusers loading, real DDIM sampling.
The sampling checks are reduced versions of the model card's figures
(scripts/eval_embedded_prior.py): fewer captions, slightly looser bounds.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from engine.priors.base import DiffusionPrior
from engine.priors.embedded import EMBEDDED_MODEL_DIR, PixelDiffusionPrior, load_embedded_prior
from engine.procedural.degrade import high_frequency_energy, mean_saturation
from engine.procedural.metrics import PatternClassifier, dominant_colours_match, pattern_matches
from engine.procedural.world import TextureWorldConfig, held_out_specs, make_batch


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior() -> PixelDiffusionPrior:
    return load_embedded_prior("cpu")


@pytest.fixture(scope="module")
def classifier() -> PatternClassifier:
    return PatternClassifier.train(seed=0)


def _hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def test_shipped_folder_is_diffusers_layout_safetensors_only_and_small():
    index = json.loads((EMBEDDED_MODEL_DIR / "model_index.json").read_text())
    assert {"unet", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    files = [p for p in EMBEDDED_MODEL_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    card = (EMBEDDED_MODEL_DIR / "README.md").read_text()
    for needed in ("train_embedded_prior.py", "--seed 0", "held-out", "colour", "pattern"):
        assert needed in card


def test_prior_implements_the_protocol(prior):
    assert isinstance(prior, DiffusionPrior)
    assert prior.name == "embedded" and prior.resolution == 32 and prior.latent_channels == 3
    assert prior.num_train_timesteps == 1000 and prior.prediction_type == "epsilon"
    ab = prior.alphas_cumprod
    assert ab.shape == (1000,) and ab.dtype == torch.float32
    assert torch.all(ab[1:] < ab[:-1]) and ab[0] > 0.999 and ab[-1] < 1e-3  # cosine: pure noise at T


def test_encode_images_resizes_maps_to_minus_one_one_and_is_differentiable(prior):
    img = torch.full((2, 3, 64, 64), 0.25, requires_grad=True)
    lat = prior.encode_images(img)
    assert lat.shape == (2, 3, 32, 32) and lat.dtype == torch.float32
    assert torch.allclose(lat, torch.full_like(lat, -0.5), atol=1e-6)
    lat.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert torch.allclose(prior.decode_latents(lat.detach()), torch.full((2, 3, 32, 32), 0.25), atol=1e-6)


def test_prompts_are_cached_and_unknown_words_dropped(prior):
    a = prior.encode_prompts(["red bricks, front view", "red bricks"])
    assert a.shape[0] == 2 and a.shape[1] == prior.tokenizer.model_max_length
    assert torch.equal(a[0], a[1])  # "front view" is not in the caption vocabulary
    assert prior.clean_prompt("Blue and White stripes, side view, sharp") == "blue and white stripes, sharp"
    assert not torch.equal(prior.encode_prompts(["solid red"])[0], prior.encode_prompts(["solid blue"])[0])


def test_noise_prediction_carries_the_caption_colour(prior):
    """At high noise the implied x0 of "solid red" is red and of "solid blue" is blue."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, 3, 32, 32), generator=g)
    t = torch.full((2,), 900)
    eps = prior.predict_noise(x, t, prior.encode_prompts(["solid red", "solid blue"]))
    assert eps.shape == x.shape and eps.dtype == torch.float32 and not eps.requires_grad
    ab = prior.alphas_cumprod[900]
    x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1).mean(dim=(2, 3))  # (2, 3) mean RGB
    assert x0[0, 0] > x0[0, 2] + 0.3 and x0[1, 2] > x0[1, 0] + 0.3
    assert torch.equal(eps, prior.predict_noise(x, t, prior.encode_prompts(["solid red", "solid blue"])))


def test_traced_denoiser_equals_the_eager_unet_per_shape(prior):
    """The traces (``PixelPriorConfig.traced``) give the eager module's outputs for every shape
    and timestep, one trace per shape, the cache bounded by ``max_shapes``."""
    from engine.priors.embedded_model import TracedDenoiser, denoise

    traced = TracedDenoiser(prior.unet, max_shapes=2)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, steps in ((2, (20, 500, 980)), (3, (700,)), (4, (300,))):
            emb = prior.encode_prompts(["red bricks", "", "blue and white stripes", "solid red"][:n])
            for step in steps:
                x, t = torch.randn((n, 3, 32, 32), generator=g), torch.full((n,), step)
                assert torch.allclose(traced(x, t, emb), denoise(prior.unet, x, t, emb), atol=1e-5)
    assert len(traced._traces) == 2  # n = 2 evicted by n = 4
    assert prior.config.traced and prior._traced is not None  # the shipped prior runs the traces


def test_pattern_classifier_recognises_ground_truth(classifier):
    imgs, _, specs = make_batch(TextureWorldConfig(p_degraded=0.0, p_target=0.0), 4242, 120, held_out=frozenset())
    assert classifier.accuracy(imgs, specs) >= 0.85


@pytest.fixture(scope="module")
def held_out_rates(prior, classifier) -> tuple[float, float]:
    """(colour, pattern) match rates on 8 of the 24 held-out captions x 2 samples, DDIM 50 steps."""
    specs = held_out_specs()[::3]
    all_specs = [s for s in specs for _ in range(2)]
    imgs = _hwc(prior.sample([s.caption for s in all_specs], steps=50, generator=torch.Generator().manual_seed(0)))
    colour = float(np.mean([dominant_colours_match(im, s.colours) for im, s in zip(imgs, all_specs)]))
    pattern = float(np.mean([pattern_matches(p, s) for p, s in zip(classifier.predict(imgs), all_specs)]))
    return colour, pattern


def test_held_out_captions_meet_the_issue_target(held_out_rates):
    """Reduced issue-6 check (8 of the 24 held-out captions x 2 samples, DDIM 50, CFG 1.5): bounds a
    little looser than the issue's full-size 90% / 70% (model card, 96 samples: 100% / 92%)."""
    colour, pattern = held_out_rates
    assert colour >= 0.8 and pattern >= 0.6, (colour, pattern)


def test_artifact_words_change_saturation_and_sharpness(prior):
    bases = ["red and white checkerboard", "blue and yellow stripes", "green dots on white", "orange bricks"]

    def group(fmt: str, seed: int) -> np.ndarray:
        prompts = [fmt.format(b) for b in bases for _ in range(4)]  # 16 samples
        return _hwc(prior.sample(prompts, steps=25, generator=torch.Generator().manual_seed(seed)))

    assert mean_saturation(group("{}, oversaturated", 1)) > mean_saturation(group("{}", 1))
    assert high_frequency_energy(group("{}, blurry", 2)) < high_frequency_energy(group("{}, sharp", 2))


def test_load_prior_embedded_and_auto_fallback(monkeypatch, tmp_path, caplog):
    from engine.priors.loading import load_prior

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))  # SD 2.1-base is not cached here
    assert load_prior("embedded", "cpu").name == "embedded"
    with caplog.at_level(logging.WARNING, logger="texbridge"):
        auto = load_prior("auto", "cpu")
    assert isinstance(auto, PixelDiffusionPrior) and auto.name == "embedded"
    assert "embedded" in caplog.text and "huggingface-cli download" in caplog.text


def test_load_prior_routes_a_pixel_prior_folder_to_the_pixel_prior(prior):
    """``--model PATH`` to a pixel-prior folder (the embedded layout) loads the pixel prior."""
    from engine.priors.loading import load_prior

    loaded = load_prior(str(EMBEDDED_MODEL_DIR), "cpu")
    assert isinstance(loaded, PixelDiffusionPrior) and loaded.name == str(EMBEDDED_MODEL_DIR)
    x = torch.rand(1, 3, 32, 32)
    t = torch.tensor([500])
    emb = loaded.encode_prompts(["red and white checkerboard"])
    torch.testing.assert_close(loaded.predict_noise(loaded.encode_images(x), t, emb),
                               prior.predict_noise(prior.encode_images(x), t, prior.encode_prompts(["red and white checkerboard"])))


def test_import_and_load_leave_the_environment_alone():
    """Importing the embedded prior (and loading it) must not set HF_HUB_OFFLINE for the process:
    a long-lived worker or batch would then never download a hub model (issue 11)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = ("import os, engine.priors.embedded as e; assert 'HF_HUB_OFFLINE' not in os.environ; "
            "e.load_embedded_prior('cpu'); assert 'HF_HUB_OFFLINE' not in os.environ; print('clean')")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("clean")
