"""The texture-quality measurement: its views and its bounds (perfect vs grey textures)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.procedural import NamedColour, Pattern, TextureSpec
from engine.procedural.metrics import PatternClassifier
from engine.quality import QualityConfig, evaluation_cameras, perfect_texture, reference_stats, render_views, score_views
from engine.raster import RasterContext
from engine.shapes import quad

SPEC = TextureSpec(Pattern.STRIPES_HORIZONTAL, (NamedColour.BLUE, NamedColour.WHITE))


@pytest.fixture(scope="module")
def classifier():
    return PatternClassifier.train(steps=300)


def test_evaluation_views_are_fixed_and_full_frame():
    ctx, mesh = RasterContext("numba"), quad()
    cfg = QualityConfig(views_per_zoom=3)
    a, b = evaluation_cameras(ctx, mesh, cfg), evaluation_cameras(ctx, mesh, cfg)
    assert len(a) == 9 and np.array_equal(a.cameras.view.numpy(), b.cameras.view.numpy())
    assert a.zoom.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # views_per_zoom per level, in QualityConfig.zooms order
    from engine.raster import rasterize

    assert bool(rasterize(ctx, mesh, a.cameras, 32).mask.all())
    # each level's frame really has its half-extent: the widest frame sees ~(0.45 / 0.2)^2 the area of the closest
    texels = [float(rasterize(ctx, mesh, a.cameras.select([i]), 32).uv[0, ..., 0].std()) for i in (0, 6)]
    assert texels[1] / texels[0] == pytest.approx(0.45 / 0.2, rel=0.1)


def test_perfect_texture_scores_high_and_grey_scores_zero(classifier):
    ctx, mesh = RasterContext("numba"), quad()
    cams = evaluation_cameras(ctx, mesh)
    ref = reference_stats(SPEC)
    good = score_views(render_views(ctx, mesh, perfect_texture(mesh, SPEC, 256), cams), SPEC, classifier, ref, cams.zoom)
    grey = score_views(render_views(ctx, mesh, np.full((256, 256, 3), 0.5, np.float32), cams), SPEC, classifier, ref, cams.zoom)
    assert good.colour_rate >= 0.9 and good.pattern_rate >= 0.9 and good.saturation_error < 0.1 and good.hf_ratio > 0.3
    assert grey.colour_rate == 0.0 and grey.pattern_rate == 0.0 and grey.pattern_all == 0.0 and grey.hf_ratio < 1e-9
    assert grey.saturation_error == pytest.approx(ref.saturation, abs=1e-6)
    # the same perfect texture is not taken for another pattern at any zoom level
    dots = TextureSpec(Pattern.DOTS, (NamedColour.BLUE, NamedColour.WHITE))
    wrong = score_views(render_views(ctx, mesh, perfect_texture(mesh, SPEC, 256), cams), dots, classifier, reference_stats(dots), cams.zoom)
    assert wrong.pattern_rate <= 0.125


def test_pattern_rate_counts_the_zoom_of_the_painted_scale(classifier):
    """Stripes painted small (one world swatch per 0.2 of surface) read as stripes in the closest frames
    only, painted large (0.45) in the wider ones: each scores its own scale's rate, not the mean."""
    ctx, mesh = RasterContext("numba"), quad()
    cams, ref = evaluation_cameras(ctx, mesh), reference_stats(SPEC)
    small = score_views(render_views(ctx, mesh, perfect_texture(mesh, SPEC, 256, half_extent=0.2, seed=1), cams),
                        SPEC, classifier, ref, cams.zoom)
    large = score_views(render_views(ctx, mesh, perfect_texture(mesh, SPEC, 256, half_extent=0.45, seed=0), cams),
                        SPEC, classifier, ref, cams.zoom)
    assert small.pattern_by_zoom[0] >= 0.9 and small.pattern_by_zoom[2] <= 0.25
    assert large.pattern_by_zoom[2] >= 0.9 and large.pattern_by_zoom[0] <= 0.25
    for s in (small, large):
        assert s.pattern_rate == max(s.pattern_by_zoom) and s.pattern_all == pytest.approx(np.mean(s.pattern_by_zoom))
        assert s.pattern_all < s.pattern_rate


def test_score_views_per_zoom_arithmetic(classifier):
    """4 real world samples at level 0 and 4 grey images at level 1: best zoom 1.0, all views 0.5."""
    from engine.procedural.world import render as render_spec

    rng = np.random.default_rng(3)
    imgs = np.stack([render_spec(SPEC, rng, 32) for _ in range(4)] + [np.full((32, 32, 3), 0.5, np.float32)] * 4)
    s = score_views(imgs, SPEC, classifier, reference_stats(SPEC), np.array([0] * 4 + [1] * 4))
    assert (s.pattern_rate, s.pattern_all, s.pattern_by_zoom) == (1.0, 0.5, (1.0, 0.0))
    assert score_views(imgs, SPEC, classifier, reference_stats(SPEC)).pattern_rate == 0.5  # no labels: one level
    with pytest.raises(ValueError, match="one level per image"):
        score_views(imgs, SPEC, classifier, reference_stats(SPEC), np.zeros(3, np.int64))
