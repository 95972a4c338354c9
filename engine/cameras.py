"""Orbit cameras around the normalized mesh (canonical Y-up frame, OpenGL conventions).

Azimuth 0 looks at the front (+Z side) of the object, azimuth 90 at its right (+X) side;
elevation > 0 is above. ``view`` maps world -> camera (camera looks down -Z, +Y up);
``proj`` maps camera -> clip like ``glFrustum`` (NDC in [-1, 1]^3, w = -z_camera).
See docs/conventions.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class OrbitConfig:
    """Camera sampling around the normalized mesh (which lies inside the unit sphere).

    azimuth_range_deg: azimuths drawn uniformly from this range (full circle by default).
    elevation_range_deg: elevations drawn uniformly from this range (DreamFusion-like -10..45).
    distance: camera distance from the origin; with the default fov the unit sphere always fits.
    distance_jitter: distances drawn uniformly from distance * [1 - j, 1 + j].
    fov_deg: vertical field of view.
    near / far: clip planes.
    fixed_elevation_deg: elevation used by ``fixed_views``.
    """

    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0)
    elevation_range_deg: tuple[float, float] = (-10.0, 45.0)
    distance: float = 2.8
    distance_jitter: float = 0.0
    fov_deg: float = 45.0
    near: float = 0.1
    far: float = 100.0
    fixed_elevation_deg: float = 15.0


@dataclass(frozen=True, eq=False)
class Cameras:
    """B cameras. view (B,4,4) world->camera; proj (B,4,4) camera->clip; eye (B,3);
    azimuth_deg (B,); elevation_deg (B,); fov_deg (float). All float32 CPU tensors."""

    view: torch.Tensor
    proj: torch.Tensor
    eye: torch.Tensor
    azimuth_deg: torch.Tensor
    elevation_deg: torch.Tensor
    fov_deg: float

    def __len__(self) -> int:
        return int(self.view.shape[0])

    def select(self, idx) -> "Cameras":
        """Cameras at indices ``idx`` (int, slice, list or tensor); always batched."""
        if isinstance(idx, int):
            idx = [idx]
        if isinstance(idx, (list, tuple)):
            idx = torch.as_tensor(idx, dtype=torch.long)
        return Cameras(
            self.view[idx], self.proj[idx], self.eye[idx], self.azimuth_deg[idx], self.elevation_deg[idx], self.fov_deg
        )

    __getitem__ = select

    @property
    def mvp(self) -> torch.Tensor:
        """(B, 4, 4) world -> clip."""
        return self.proj @ self.view


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(B,3),(3,),(3,) -> (B,4,4) world->camera; the camera looks down its -Z axis."""
    eye = np.asarray(eye, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(target, dtype=np.float64) - eye
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    s = np.cross(f, np.broadcast_to(up, f.shape))
    sn = np.linalg.norm(s, axis=1, keepdims=True)
    # looking straight up/down: pick another "up" so the basis stays defined
    bad = sn[:, 0] < 1e-9
    if bad.any():
        s[bad] = np.cross(f[bad], np.array([0.0, 0.0, -1.0]))
        sn[bad] = np.linalg.norm(s[bad], axis=1, keepdims=True)
    s /= sn
    u = np.cross(s, f)
    m = np.zeros((eye.shape[0], 4, 4))
    m[:, 0, :3], m[:, 1, :3], m[:, 2, :3] = s, u, -f
    m[:, 0, 3] = -(s * eye).sum(1)
    m[:, 1, 3] = -(u * eye).sum(1)
    m[:, 2, 3] = (f * eye).sum(1)
    m[:, 3, 3] = 1.0
    return m


def perspective(fov_deg: float, near: float, far: float, aspect: float = 1.0) -> np.ndarray:
    """(4,4) OpenGL perspective projection (vertical fov)."""
    t = 1.0 / math.tan(math.radians(fov_deg) / 2)
    p = np.zeros((4, 4))
    p[0, 0], p[1, 1] = t / aspect, t
    p[2, 2] = -(far + near) / (far - near)
    p[2, 3] = -2 * far * near / (far - near)
    p[3, 2] = -1.0
    return p


def orbit_cameras(azimuth_deg, elevation_deg, distance, config: OrbitConfig = OrbitConfig()) -> Cameras:
    """Cameras on a sphere looking at the origin; azimuth/elevation/distance: (B,) arrays or scalars."""
    az = np.atleast_1d(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.atleast_1d(np.asarray(elevation_deg, dtype=np.float64))
    d = np.broadcast_to(np.asarray(distance, dtype=np.float64), az.shape)
    a, e = np.radians(az), np.radians(el)
    eye = np.stack([d * np.cos(e) * np.sin(a), d * np.sin(e), d * np.cos(e) * np.cos(a)], axis=1)
    view = look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0]))
    proj = np.broadcast_to(perspective(config.fov_deg, config.near, config.far), view.shape)
    f32 = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
    return Cameras(f32(view), f32(proj), f32(eye), f32(az), f32(el), float(config.fov_deg))


def sample_orbit(config: OrbitConfig, n: int, generator: torch.Generator) -> Cameras:
    """n random orbit cameras; deterministic for a seeded ``generator``."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64).numpy()
    a0, a1 = config.azimuth_range_deg
    e0, e1 = config.elevation_range_deg
    az = a0 + (a1 - a0) * u[:, 0]
    el = e0 + (e1 - e0) * u[:, 1]
    dist = config.distance * (1 + config.distance_jitter * (2 * u[:, 2] - 1))
    return orbit_cameras(az, el, dist, config)


def fixed_views(n: int, config: OrbitConfig = OrbitConfig()) -> Cameras:
    """n views at evenly spaced azimuths (0 = front) and ``config.fixed_elevation_deg``."""
    az = np.arange(n, dtype=np.float64) * (360.0 / n)
    az = np.where(az > 180, az - 360, az)
    return orbit_cameras(az, np.full(n, config.fixed_elevation_deg), config.distance, config)
