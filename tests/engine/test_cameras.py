"""Orbit cameras: look-at, OpenGL projection, determinism, fixed views."""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.cameras import OrbitConfig, fixed_views, orbit_cameras, sample_orbit


def project(cams, i, p):
    ph = torch.tensor([*p, 1.0])
    c = cams.mvp[i] @ ph
    return (c[:3] / c[3]).numpy(), float(c[3])


def test_front_camera_looks_down_minus_z():
    cams = orbit_cameras([0.0], [0.0], 3.0, OrbitConfig(fov_deg=90.0))
    assert np.allclose(cams.eye[0].numpy(), [0, 0, 3], atol=1e-6)
    ndc, w = project(cams, 0, [0, 0, 0])
    assert np.allclose(ndc[:2], 0, atol=1e-6) and abs(w - 3.0) < 1e-5  # w = view depth
    # fov 90: a point at x = depth projects to the right edge, +y to the top
    ndc, _ = project(cams, 0, [3.0, 0, 0])
    assert abs(ndc[0] - 1.0) < 1e-5
    ndc, _ = project(cams, 0, [0, 1.0, 0])
    assert ndc[1] > 0
    near, _ = project(cams, 0, [0, 0, 3.0 - 0.1])  # on the near plane -> z_ndc = -1
    assert abs(near[2] + 1) < 1e-4


def test_azimuth_and_elevation_directions():
    cams = orbit_cameras([90.0, 0.0], [0.0, 60.0], 2.0)
    assert np.allclose(cams.eye[0].numpy(), [2, 0, 0], atol=1e-5)  # azimuth 90: right side (+X)
    e = cams.eye[1].numpy()
    assert e[1] > 0 and abs(math.degrees(math.asin(e[1] / 2.0)) - 60.0) < 1e-4  # above
    # the view matrix is a rigid transform mapping the eye to the origin
    for i in range(2):
        v = cams.view[i].double()
        assert torch.allclose(v[:3, :3] @ v[:3, :3].T, torch.eye(3, dtype=torch.float64), atol=1e-5)
        eye_cam = v @ torch.tensor([*cams.eye[i].tolist(), 1.0], dtype=torch.float64)
        assert torch.allclose(eye_cam[:3], torch.zeros(3, dtype=torch.float64), atol=1e-5)


def test_straight_down_view_is_defined():
    cams = orbit_cameras([0.0], [90.0], 2.0)
    assert torch.isfinite(cams.view).all()
    ndc, _ = project(cams, 0, [0, 0, 0])
    assert np.allclose(ndc[:2], 0, atol=1e-6)


def test_sample_orbit_is_deterministic_and_in_range():
    cfg = OrbitConfig(elevation_range_deg=(-10.0, 45.0), distance=2.5, distance_jitter=0.1)
    a = sample_orbit(cfg, 16, torch.Generator().manual_seed(7))
    b = sample_orbit(cfg, 16, torch.Generator().manual_seed(7))
    c = sample_orbit(cfg, 16, torch.Generator().manual_seed(8))
    assert torch.equal(a.view, b.view) and not torch.equal(a.view, c.view)
    assert len(a) == 16 and a.view.shape == (16, 4, 4) and a.proj.shape == (16, 4, 4)
    assert ((a.elevation_deg >= -10) & (a.elevation_deg <= 45)).all()
    d = a.eye.norm(dim=1)
    assert ((d >= 2.25 - 1e-4) & (d <= 2.75 + 1e-4)).all()


def test_fixed_views_and_select():
    cams = fixed_views(8)
    assert cams.azimuth_deg.tolist() == [0, 45, 90, 135, 180, -135, -90, -45]
    assert (cams.elevation_deg == OrbitConfig().fixed_elevation_deg).all()
    sub = cams.select([2, 5])
    assert len(sub) == 2 and torch.equal(sub.view[1], cams.view[5])
    assert len(cams[3]) == 1
