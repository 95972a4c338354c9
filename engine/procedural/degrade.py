"""Image degradations for the artifact words (numpy, deterministic per generator).

Each op maps (H, W, 3) float32 in [0, 1] to the same shape; ``apply_artifact``
dispatches on the closed ``Artifact`` Enum.
"""

from __future__ import annotations

import numpy as np

from engine.procedural.vocab import Artifact

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with wrap-around borders (textures tile). (H, W, C) -> (H, W, C)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float32) / sigma) ** 2)
    k /= k.sum()
    out = sum(w * np.roll(img, s, axis=0) for s, w in zip(range(-r, r + 1), k))
    return sum(w * np.roll(out, s, axis=1) for s, w in zip(range(-r, r + 1), k)).astype(np.float32)


def saturate(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale chroma around the luminance by ``factor`` and clip."""
    lum = (img @ _LUMA)[..., None]
    return np.clip(lum + (img - lum) * factor, 0, 1).astype(np.float32)


def pixelate(img: np.ndarray, block: int) -> np.ndarray:
    """Average ``block`` x ``block`` cells, then nearest upsampling (H, W divisible by block)."""
    h, w, c = img.shape
    small = img.reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1).astype(np.float32)


def shuffle_blocks(img: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """Cut into blocks, shuffle and randomly rotate them (broken structure)."""
    h, w, c = img.shape
    nb = h // block
    blocks = img.reshape(nb, block, nb, block, c).transpose(0, 2, 1, 3, 4).reshape(nb * nb, block, block, c)
    blocks = blocks[rng.permutation(nb * nb)]
    blocks = np.stack([np.rot90(b, k=int(rng.integers(4))) for b in blocks])
    return blocks.reshape(nb, nb, block, block, c).transpose(0, 2, 1, 3, 4).reshape(h, w, c).copy()


def apply_artifact(img: np.ndarray, artifact: Artifact, rng: np.random.Generator) -> np.ndarray:
    """Apply one degradation. (H, W, 3) float32 [0, 1] -> same."""
    if artifact is Artifact.OVERSATURATED:
        out = saturate(img, rng.uniform(2.2, 3.2))
        return np.clip((out - 0.5) * rng.uniform(1.2, 1.4) + 0.5, 0, 1).astype(np.float32)
    if artifact is Artifact.SMOOTH:
        return gaussian_blur(img, rng.uniform(0.7, 1.0))
    if artifact is Artifact.BLURRY:
        return gaussian_blur(img, rng.uniform(1.3, 2.0))
    if artifact is Artifact.PIXELATED:
        return pixelate(img, int(rng.choice([4, 8])) if img.shape[0] >= 32 else 2)
    if artifact is Artifact.NOISY:
        return np.clip(img + rng.normal(0, rng.uniform(0.08, 0.15), img.shape), 0, 1).astype(np.float32)
    if artifact is Artifact.FOGGY:
        a = rng.uniform(0.4, 0.6)
        return (img * (1 - a) + a * np.float32(0.78)).astype(np.float32)
    if artifact is Artifact.HAZY:
        a = rng.uniform(0.25, 0.4)
        haze = np.array([0.84, 0.87, 0.92], dtype=np.float32)
        return gaussian_blur(img * (1 - a) + a * haze, 0.6)
    if artifact is Artifact.CARTOON:
        levels = int(rng.choice([2, 3]))
        return (np.round(saturate(img, 1.4) * levels) / levels).astype(np.float32)
    if artifact is Artifact.MALFORMED:
        return shuffle_blocks(img, max(2, img.shape[0] // 4), rng)
    raise AssertionError(artifact)  # pragma: no cover - Enum is closed


def mean_saturation(img: np.ndarray) -> float:
    """Mean HSV saturation of (..., H, W, 3) in [0, 1]."""
    mx, mn = img.max(axis=-1), img.min(axis=-1)
    return float(np.mean((mx - mn) / np.maximum(mx, 1e-6)))


def high_frequency_energy(img: np.ndarray) -> float:
    """Mean squared Laplacian of the luminance (wrap borders) of (..., H, W, 3) in [0, 1]."""
    y = img @ _LUMA
    lap = 4 * y - np.roll(y, 1, -1) - np.roll(y, -1, -1) - np.roll(y, 1, -2) - np.roll(y, -1, -2)
    return float(np.mean(lap**2))
