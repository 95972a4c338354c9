"""The procedural texture world: determinism, holdout, captions, degradations, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from engine.procedural import Artifact, NamedColour, Pattern, TextureSpec, TextureWorldConfig, caption_vocabulary
from engine.procedural.degrade import apply_artifact, high_frequency_energy, mean_saturation
from engine.procedural.metrics import colour_fractions, dominant_colours_match, pattern_matches
from engine.procedural.world import (
    NEVER_HELD_OUT,
    PAPER_SOURCE_PHRASES,
    held_out_combinations,
    held_out_specs,
    make_batch,
    render,
    sample_spec,
)

WORLD = TextureWorldConfig()


def test_batches_are_deterministic_per_seed():
    a_img, a_cap, _ = make_batch(WORLD, 5, 16)
    b_img, b_cap, _ = make_batch(WORLD, 5, 16)
    c_img, c_cap, _ = make_batch(WORLD, 6, 16)
    assert a_img.shape == (16, 32, 32, 3) and a_img.dtype == np.float32
    assert np.array_equal(a_img, b_img) and a_cap == b_cap
    assert not np.array_equal(a_img, c_img) and a_cap != c_cap
    assert a_img.min() >= 0.0 and a_img.max() <= 1.0


def test_captions_name_pattern_and_colours():
    assert TextureSpec(Pattern.CHECKER, (NamedColour.RED, NamedColour.WHITE)).caption == "red and white checkerboard"
    assert TextureSpec(Pattern.WOOD, (NamedColour.BROWN,)).caption == "brown wood grain"
    assert TextureSpec(Pattern.MARBLE, (NamedColour.WHITE, NamedColour.GRAY)).caption == "white marble with gray veins"
    assert TextureSpec(Pattern.BRICKS, (NamedColour.RED,)).caption == "red bricks"
    stripes = TextureSpec(Pattern.STRIPES_VERTICAL, (NamedColour.BLUE, NamedColour.WHITE), name_orientation=True)
    assert stripes.caption == "blue and white vertical stripes"
    degraded = stripes.with_modifiers((Artifact.BLURRY,), ("blurry",))
    assert degraded.caption == "blue and white vertical stripes, blurry"


def test_holdout_is_fixed_and_never_sampled_for_training():
    held = held_out_combinations(WORLD)
    assert len(held) == WORLD.holdout_count == len(set(held)) and held == held_out_combinations(WORLD)
    assert not set(held) & NEVER_HELD_OUT  # the README prompts stay in distribution
    rng = np.random.default_rng(0)
    hs = frozenset(held)
    for _ in range(3000):
        s = sample_spec(rng, WORLD, hs)
        assert (s.pattern.family, frozenset(s.colours)) not in hs
    # every held-out pair and family still occurs in training with other partners
    fams = {f for f, _ in held}
    assert fams <= {"checker", "stripes", "dots", "tiles", "speckle", "gradient"}
    assert len(held_out_specs(WORLD)) == len(held)


def test_degraded_captions_carry_the_words_of_the_applied_artifacts():
    rng = np.random.default_rng(1)
    seen_paper_source = False
    for _ in range(400):
        s = sample_spec(rng, WORLD)
        if s.modifiers == PAPER_SOURCE_PHRASES:
            seen_paper_source = True
            assert 2 <= len(s.artifacts) <= 3
        elif s.artifacts:
            words = {w for a in s.artifacts for w in a.words}
            assert set(s.modifiers) <= words and len(s.modifiers) == len(s.artifacts)
        else:
            assert not any(m in PAPER_SOURCE_PHRASES for m in s.modifiers)
    assert seen_paper_source


def test_vocabulary_covers_every_caption_word():
    vocab = set(caption_vocabulary())
    _, caps, _ = make_batch(WORLD, 3, 300)
    for c in caps:
        for w in c.replace(",", " , ").split():
            assert w in vocab, (w, c)


@pytest.mark.parametrize("pattern", list(Pattern))
def test_every_pattern_renders_its_colours(pattern):
    rng = np.random.default_rng(2)
    cols = (NamedColour.BLUE,) if pattern in (Pattern.SOLID, Pattern.WOOD) else (NamedColour.BLUE, NamedColour.YELLOW)
    img = render(TextureSpec(pattern, cols), rng)
    assert img.shape == (32, 32, 3)
    main = cols[:1] if pattern is Pattern.MARBLE else cols  # thin veins blend with the base
    assert dominant_colours_match(img, main)
    f = colour_fractions(img)
    assert sum(f[list(NamedColour).index(c)] for c in cols) > 0.5
    if pattern is not Pattern.SOLID:
        assert img.std() > 0.05  # there is a pattern


def test_artifacts_change_the_measured_property():
    rng = np.random.default_rng(3)
    base = render(TextureSpec(Pattern.CHECKER, (NamedColour.RED, NamedColour.GREEN)), rng)
    sat = apply_artifact(base * 0.6 + 0.2, Artifact.OVERSATURATED, rng)
    assert mean_saturation(sat) > mean_saturation(base * 0.6 + 0.2) + 0.1
    assert high_frequency_energy(apply_artifact(base, Artifact.BLURRY, rng)) < 0.3 * high_frequency_energy(base)
    assert high_frequency_energy(apply_artifact(base, Artifact.NOISY, rng)) > high_frequency_energy(base)
    pix = apply_artifact(base, Artifact.PIXELATED, rng)
    assert np.allclose(pix[0:4, 0:4], pix[0, 0])
    fog = apply_artifact(base, Artifact.FOGGY, rng)
    assert fog.std() < 0.7 * base.std()
    mal = apply_artifact(base, Artifact.MALFORMED, rng)
    assert np.allclose(np.sort(mal.ravel()), np.sort(base.ravel())) and not np.allclose(mal, base)
    cart = apply_artifact(base, Artifact.CARTOON, rng)
    assert len(np.unique(cart.round(4))) <= 4


def test_colour_metric_on_ground_truth_held_out_renders():
    rng = np.random.default_rng(4)
    specs = held_out_specs(WORLD)
    ok = [dominant_colours_match(render(s, rng), s.colours) for s in specs for _ in range(2)]
    assert np.mean(ok) >= 0.95


def test_pattern_match_accepts_any_orientation_only_when_unnamed():
    plain = TextureSpec(Pattern.STRIPES_HORIZONTAL, (NamedColour.RED, NamedColour.WHITE))
    named = TextureSpec(Pattern.STRIPES_HORIZONTAL, (NamedColour.RED, NamedColour.WHITE), name_orientation=True)
    assert pattern_matches(Pattern.STRIPES_DIAGONAL, plain)
    assert not pattern_matches(Pattern.STRIPES_DIAGONAL, named)
    assert not pattern_matches(Pattern.CHECKER, plain)
