"""Orbit cameras around the normalized mesh (canonical Y-up frame, OpenGL conventions).

Azimuth 0 looks at the front (+Z side) of the object, azimuth 90 at its right (+X) side;
elevation > 0 is above. ``view`` maps world -> camera (camera looks down -Z, +Y up);
``proj`` maps camera -> clip like ``glFrustum`` (NDC in [-1, 1]^3, w = -z_camera).
See docs/conventions.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

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


class ViewMode(str, Enum):
    """Which cameras the optimization renders (one closed set; ``auto`` = the prior's choice).

    ORBIT: whole-object views on an orbit around the origin (``OrbitConfig``), the
        DreamFusion / threestudio setting, for priors trained on photos of objects (SD).
    CLOSEUP: views aimed at random surface points along their normals, the surface filling
        the frame (``CloseupConfig``), for priors trained on full-frame texture swatches
        (the embedded prior).
    """

    AUTO = "auto"
    ORBIT = "orbit"
    CLOSEUP = "closeup"


class CloseupUp(str, Enum):
    """Which way is up in a close-up's image.

    WORLD: world +Y projected into the image plane (whole-object views' convention).
    UV: the surface's +v direction at the aimed point (``Surface.v_tangents``), so every
        close-up sees the texture upright in texture space; faces without usable UVs fall back
        to WORLD.
    """

    WORLD = "world"
    UV = "uv"


@dataclass(frozen=True)
class CloseupConfig:
    """Close-up cameras looking at surface points (the surface fills the frame).

    half_extent: half the width of the frame at the aimed point, in normalized units (the
        mesh lies in the unit sphere); 0.3 frames about a 0.6 x 0.6 patch. Measured in
        ``benchmarks/texture_quality.py`` (README table "views").
    extent_jitter: half-extents drawn uniformly from half_extent * [1 - j, 1 + j].
    tilt_deg: the view direction is the face normal tilted by up to this angle (uniform in
        the cone), so slanted views are seen too.
    fov_deg: vertical field of view; the distance follows from it and the extent.
    near / far: clip planes.
    up: image up (``CloseupUp``). UV by default: with world up, views near a pole or on a
        top/bottom face roll freely from step to step, so the pattern's orientation is
        painted differently patch by patch; measured in the README ("What moved the numbers").
    """

    half_extent: float = 0.3
    extent_jitter: float = 0.15
    tilt_deg: float = 30.0
    fov_deg: float = 30.0
    near: float = 0.02
    far: float = 100.0
    up: CloseupUp = CloseupUp.UV


WORLD_UP = np.array([0.0, 1.0, 0.0])


def _cameras_from_eyes(eye: np.ndarray, target: np.ndarray, fov_deg: float, near: float, far: float,
                       up: np.ndarray = WORLD_UP) -> Cameras:
    """(B,3) eyes looking at (B,3) targets with ``up`` ((3,) or (B,3)) up; azimuth/elevation
    of the view direction (target - eye reversed, i.e. where the camera sits as seen from the target)."""
    view = look_at(eye, target, up)  # look_at broadcasts (B,3) targets and ups
    proj = np.broadcast_to(perspective(fov_deg, near, far), view.shape)
    d = eye - target
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    az = np.degrees(np.arctan2(d[:, 0], d[:, 2]))
    el = np.degrees(np.arcsin(np.clip(d[:, 1], -1.0, 1.0)))
    f32 = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
    return Cameras(f32(view), f32(proj), f32(eye), f32(az), f32(el), float(fov_deg))


@dataclass(frozen=True, eq=False)
class Surface:
    """What close-up sampling needs of a mesh, computed once (``Surface.of``).

    corners (F, 3, 3) float64 triangle corners in the normalized frame; normals (F, 3) unit
    face normals (counter-clockwise = front); cdf (F,) cumulative area fractions;
    v_tangents (F, 3) unit direction of increasing v on each face (world +Y where the face's
    UVs are degenerate), or None when built without UVs.
    """

    corners: np.ndarray
    normals: np.ndarray
    cdf: np.ndarray
    v_tangents: np.ndarray | None = None

    @classmethod
    def of(cls, positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None) -> "Surface":
        """positions (V, 3) in the normalized frame (``Mesh.normalized_positions``), faces (F, 3),
        uvs (F, 3, 2) per-corner UVs (``Mesh.uvs``; optional)."""
        p = np.asarray(positions, np.float64)[np.asarray(faces)]
        e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        cross = np.cross(e1, e2)
        area = np.linalg.norm(cross, axis=1)
        if not np.isfinite(area).all() or area.sum() <= 0:
            raise ValueError("the mesh has no surface area; close-up views need faces with area")
        tangents = None if uvs is None else _v_tangents(e1, e2, np.asarray(uvs, np.float64))
        return cls(p, cross / np.maximum(area[:, None], 1e-20), np.cumsum(area) / area.sum(), tangents)


def _v_tangents(e1: np.ndarray, e2: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(F,3) edges p1-p0, p2-p0 and (F,3,2) UVs -> (F,3) unit dP/dv (world +Y where undefined).

    [e1 e2] = [dP/du dP/dv] M with M = [[du1, du2], [dv1, dv2]], so dP/dv = (-du2 e1 + du1 e2) / det M.
    """
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-12
    tv = (-d2[:, 0:1] * e1 + d1[:, 0:1] * e2) / np.where(ok, det, 1.0)[:, None]
    norm = np.linalg.norm(tv, axis=1, keepdims=True)
    ok &= norm[:, 0] > 1e-12
    return np.where(ok[:, None], tv / np.maximum(norm, 1e-20), WORLD_UP[None, :])


def closeup_cameras(surface: Surface, config: CloseupConfig, n: int, generator: torch.Generator) -> Cameras:
    """n cameras aimed at area-weighted random surface points along tilted face normals.

    Deterministic for a seeded ``generator``. The camera sits at distance
    ``half_extent / tan(fov / 2)`` from the point, so the frame spans about
    ``2 * half_extent`` there.
    """
    p = surface.corners
    u = torch.rand(n, 6, generator=generator, dtype=torch.float64).numpy()
    face = np.minimum(np.searchsorted(surface.cdf, u[:, 0], side="right"), len(p) - 1)
    r1, r2 = np.sqrt(u[:, 1]), u[:, 2]  # uniform point in the triangle
    pts = ((1 - r1)[:, None] * p[face, 0] + (r1 * (1 - r2))[:, None] * p[face, 1] + (r1 * r2)[:, None] * p[face, 2])
    nrm = surface.normals[face]
    # tilt: uniform direction in the cone of half-angle tilt_deg around the normal
    cos_max = math.cos(math.radians(config.tilt_deg))
    cos_t = 1 - u[:, 3] * (1 - cos_max)
    sin_t = np.sqrt(np.maximum(0.0, 1 - cos_t**2))
    phi = 2 * math.pi * u[:, 4]
    helper = np.where(np.abs(nrm[:, 1:2]) < 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
    t1 = np.cross(nrm, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(nrm, t1)
    d = cos_t[:, None] * nrm + sin_t[:, None] * (np.cos(phi)[:, None] * t1 + np.sin(phi)[:, None] * t2)
    extent = config.half_extent * (1 + config.extent_jitter * (2 * u[:, 5] - 1))
    dist = extent / math.tan(math.radians(config.fov_deg) / 2)
    up = (surface.v_tangents[face] if config.up is CloseupUp.UV and surface.v_tangents is not None else WORLD_UP)
    return _cameras_from_eyes(pts + d * dist[:, None], pts, config.fov_deg, config.near, config.far, up)
