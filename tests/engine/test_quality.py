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
    assert len(a) == 9 and np.array_equal(a.view.numpy(), b.view.numpy())
    from engine.raster import rasterize

    assert bool(rasterize(ctx, mesh, a, 32).mask.all())


def test_perfect_texture_scores_high_and_grey_scores_zero(classifier):
    ctx, mesh = RasterContext("numba"), quad()
    cams = evaluation_cameras(ctx, mesh)
    ref = reference_stats(SPEC)
    good = score_views(render_views(ctx, mesh, perfect_texture(mesh, SPEC, 256), cams), SPEC, classifier, ref)
    grey = score_views(render_views(ctx, mesh, np.full((256, 256, 3), 0.5, np.float32), cams), SPEC, classifier, ref)
    assert good.colour_rate >= 0.9 and good.pattern_rate >= 0.6 and good.saturation_error < 0.1 and good.hf_ratio > 0.3
    assert grey.colour_rate == 0.0 and grey.pattern_rate == 0.0 and grey.hf_ratio < 1e-9
    assert grey.saturation_error == pytest.approx(ref.saturation, abs=1e-6)
