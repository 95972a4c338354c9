"""Pattern renderers: (pattern, colours, jitter) -> an RGB image, numpy only.

Functional ops with shape contracts. Every renderer draws at ``2 * size``
(supersampling) and the result is box-filtered to ``size``, so edges are
anti-aliased as a rendered texture would be. Coordinates are in output pixels.
All randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np

from engine.procedural.vocab import NamedColour, Pattern

_SS = 2  # supersampling factor


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (H, W) at the supersampled resolution, in output pixels."""
    n = size * _SS
    c = (np.arange(n, dtype=np.float32) + 0.5) / _SS
    return np.meshgrid(c, c, indexing="xy")  # x varies along columns, y along rows


def _rotate(x: np.ndarray, y: np.ndarray, theta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the coordinate frame by ``theta`` and shift by a random offset."""
    ox, oy = rng.uniform(0, 64, size=2)
    c, s = math.cos(theta), math.sin(theta)
    return (x * c + y * s + ox).astype(np.float32), (-x * s + y * c + oy).astype(np.float32)


def smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Value noise (n, n) in [0, 1]: a (cells+1)^2 random grid, bilinearly interpolated."""
    g = rng.random((cells + 1, cells + 1), dtype=np.float32)
    t = np.linspace(0, cells, n, endpoint=False, dtype=np.float32)
    i = np.floor(t).astype(np.int64)
    f = t - i
    f = f * f * (3 - 2 * f)  # smoothstep
    a = g[i][:, i] * (1 - f)[None, :] + g[i][:, i + 1] * f[None, :]
    b = g[i + 1][:, i] * (1 - f)[None, :] + g[i + 1][:, i + 1] * f[None, :]
    return a * (1 - f)[:, None] + b * f[:, None]


def _downsample(img: np.ndarray) -> np.ndarray:
    """(S*n, S*n, C) -> (n, n, C) box filter."""
    n = img.shape[0] // _SS
    return img.reshape(n, _SS, n, _SS, -1).mean(axis=(1, 3))


def jitter_colour(c: NamedColour, rng: np.random.Generator) -> np.ndarray:
    """The named colour with small per-image jitter (brightness and per channel), (3,) in [0, 1]."""
    rgb = c.rgb * rng.uniform(0.9, 1.08) + rng.normal(0, 0.025, size=3).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def shade_of(rgb: np.ndarray) -> np.ndarray:
    """A same-hue contrasting shade: darker for light colours, lighter for dark ones."""
    lum = float(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.clip(rgb * 0.55 if lum > 0.25 else rgb + 0.28, 0, 1).astype(np.float32)


def _mask(pattern: Pattern, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Foreground mask m (S*n, S*n) in [0, 1] and a multiplicative shading map (S*n, S*n)."""
    x, y = _grid(size)
    n = size * _SS
    shade = np.ones((n, n), dtype=np.float32)
    if pattern is Pattern.SOLID:
        shade = 1.0 + 0.04 * (smooth_noise(rng, n, 3) - 0.5)
        return np.zeros((n, n), np.float32), shade.astype(np.float32)
    if pattern is Pattern.CHECKER:
        u, v = _rotate(x, y, rng.uniform(-0.12, 0.12), rng)
        cell = rng.uniform(3.5, 7.0)
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32), shade
    if pattern.is_stripes:
        base = {Pattern.STRIPES_HORIZONTAL: 0.0, Pattern.STRIPES_VERTICAL: math.pi / 2}.get(
            pattern, math.pi / 4 if rng.random() < 0.5 else 3 * math.pi / 4
        )
        u, v = _rotate(x, y, base + rng.uniform(-0.08, 0.08), rng)
        period = rng.uniform(6.0, 12.0)
        return (np.mod(v / period, 1.0) < rng.uniform(0.4, 0.6)).astype(np.float32), shade
    if pattern is Pattern.DOTS:
        u, v = _rotate(x, y, rng.uniform(-0.3, 0.3), rng)
        p = rng.uniform(7.0, 11.0)
        du = np.mod(u, p) - p / 2
        dv = np.mod(v, p) - p / 2
        return (np.hypot(du, dv) < p * rng.uniform(0.24, 0.32)).astype(np.float32), shade
    if pattern in (Pattern.BRICKS, Pattern.TILES):
        u, v = _rotate(x, y, rng.uniform(-0.04, 0.04), rng)
        h = rng.uniform(5.0, 7.5) if pattern is Pattern.BRICKS else rng.uniform(6.0, 10.0)
        w = h * rng.uniform(2.0, 2.4) if pattern is Pattern.BRICKS else h
        row = np.floor(v / h)
        uu = u + (0.5 * w * (row % 2) if pattern is Pattern.BRICKS else 0.0)
        col = np.floor(uu / w)
        t = rng.uniform(0.8, 1.2)  # mortar / grout thickness in pixels
        mortar = (np.mod(v, h) < t) | (np.mod(uu, w) < t)
        # per-brick brightness jitter from a hash of (row, col)
        hsh = np.sin(row * 12.9898 + col * 78.233 + rng.uniform(0, 100)) * 43758.5453
        amp = 0.12 if pattern is Pattern.BRICKS else 0.04
        shade = (1.0 + amp * (2 * (hsh - np.floor(hsh)) - 1)).astype(np.float32)
        return mortar.astype(np.float32), shade
    if pattern is Pattern.WOOD:
        theta = (0.0 if rng.random() < 0.5 else math.pi / 2) + rng.uniform(-0.15, 0.15)
        u, v = _rotate(x, y, theta, rng)
        warp = smooth_noise(rng, n, 3) * rng.uniform(4.0, 9.0) + 0.3 * u
        period = rng.uniform(3.0, 5.5)
        rings = 0.5 + 0.5 * np.sin(2 * math.pi * (v + warp) / period)
        return (rings**3).astype(np.float32), shade
    if pattern is Pattern.MARBLE:
        turb = sum(smooth_noise(rng, n, c) / (i + 1) for i, c in enumerate((2, 4, 8)))
        u, _ = _rotate(x, y, rng.uniform(0, math.pi), rng)
        veins = 1.0 - np.abs(np.sin(2 * math.pi * (u / rng.uniform(12.0, 20.0) + 0.9 * turb)))
        return (veins**5).astype(np.float32), shade
    if pattern is Pattern.SPECKLE:
        cells = size // int(rng.choice([1, 2]))
        g = (rng.random((cells, cells)) < rng.uniform(0.3, 0.5)).astype(np.float32)
        rep = n // cells
        return np.kron(g, np.ones((rep, rep), np.float32)), shade
    if pattern is Pattern.GRADIENT:
        u, _ = _rotate(x, y, rng.uniform(0, 2 * math.pi), rng)
        u = u - u.mean()
        span = rng.uniform(0.8, 1.3) * size
        return np.clip(0.5 + u / span, 0, 1).astype(np.float32), shade
    raise AssertionError(pattern)  # pragma: no cover - Enum is closed


def render_pattern(
    pattern: Pattern, background: np.ndarray, foreground: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Render one pattern image.

    Args:
        background, foreground: (3,) colours in [0, 1] (mask 0 -> background, 1 -> foreground).
        size: output side in pixels.
    Returns:
        (size, size, 3) float32 in [0, 1].
    """
    m, shade = _mask(pattern, size, rng)
    img = background[None, None, :] * (1 - m[..., None]) + foreground[None, None, :] * m[..., None]
    if pattern is Pattern.BRICKS or pattern is Pattern.TILES:  # shade the bricks/tiles, not the mortar
        img = img * np.where(m[..., None] > 0.5, 1.0, shade[..., None])
    else:
        img = img * shade[..., None]
    return np.clip(_downsample(img), 0, 1).astype(np.float32)
