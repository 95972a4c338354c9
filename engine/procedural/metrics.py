"""Measurements on images of the procedural world: colours, patterns, artifacts.

- ``colour_fractions`` / ``dominant_colours_match``: nearest named colour per pixel.
- ``PatternClassifier``: a tiny CNN trained on the procedural world (seeded, ~15 s on one CPU core).
- ``mean_saturation`` / ``high_frequency_energy`` live in ``engine.procedural.degrade``.
Images are (..., H, W, 3) float32 numpy arrays in [0, 1] unless stated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.procedural.degrade import gaussian_blur
from engine.procedural.vocab import PALETTE, NamedColour, Pattern
from engine.procedural.world import TextureSpec, TextureWorldConfig, make_batch

_COLOURS = list(NamedColour)
_PATTERNS = list(Pattern)


def colour_fractions(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (12,) fraction of pixels nearest to each named colour (Enum order)."""
    d = ((img.reshape(-1, 1, 3) - PALETTE[None]) ** 2).sum(-1)
    return np.bincount(d.argmin(1), minlength=len(_COLOURS)) / d.shape[0]


def dominant_colours(img: np.ndarray, k: int) -> list[NamedColour]:
    """The ``k`` most frequent named colours of (H, W, 3), most frequent first."""
    f = colour_fractions(img)
    return [_COLOURS[i] for i in np.argsort(-f, kind="stable")[:k]]


def dominant_colours_match(img: np.ndarray, colours: tuple[NamedColour, ...]) -> bool:
    """True when every caption colour is among the ``k + 1`` most frequent named colours
    (k = number of caption colours; +1 allows the blends of gradients and anti-aliased
    edges) and together they cover at least 40% of the pixels."""
    f = colour_fractions(img)
    top = set(dominant_colours(img, len(colours) + 1))
    cover = sum(f[_COLOURS.index(c)] for c in colours)
    return all(c in top for c in colours) and cover >= 0.4


def pattern_matches(predicted: Pattern, spec: TextureSpec) -> bool:
    """Does a predicted pattern match the spec's caption? Stripes without a named orientation accept any orientation."""
    if spec.pattern.is_stripes and not spec.name_orientation:
        return predicted.is_stripes
    return predicted is spec.pattern


class PatternNet(nn.Module):
    """Tiny CNN: (B, 3, 32, 32) in [0, 1] -> (B, 12) pattern logits.

    The input is normalised per image (mean/std per channel) so colour matters little.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(64 * 2, len(_PATTERNS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 0.05)
        h = self.body(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class PatternClassifier:
    """Trains ``PatternNet`` on clean procedural images (with light blur/noise augmentation)."""

    def __init__(self, net: PatternNet) -> None:
        self.net = net.eval()

    @classmethod
    def train(cls, seed: int = 0, steps: int = 300, pool: int = 2400, batch_size: int = 64, size: int = 32) -> "PatternClassifier":
        """Train on a pool of ``pool`` clean images of every pattern and colour (held-out
        combinations included: the classifier is a measuring tool, not the model under test)."""
        torch.manual_seed(seed)
        net = PatternNet()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        clean = TextureWorldConfig(size=size, holdout_count=0, p_degraded=0.0, p_target=0.0)
        imgs, _, specs = make_batch(clean, seed * 100_003 + 1, pool, held_out=frozenset())
        rng = np.random.default_rng(seed)
        imgs = np.stack([_augment(im, rng) for im in imgs])
        xs = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
        ys = torch.tensor([_PATTERNS.index(s.pattern) for s in specs])
        g = torch.Generator().manual_seed(seed)
        for step in range(steps):
            idx = torch.randint(0, pool, (batch_size,), generator=g)
            loss = F.cross_entropy(net(xs[idx]), ys[idx])
            for group in opt.param_groups:
                group["lr"] = 3e-3 * (1 - step / steps) + 1e-4
            opt.zero_grad()
            loss.backward()
            opt.step()
        return cls(net)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> list[Pattern]:
        """(B, H, W, 3) in [0, 1] -> predicted patterns (B,)."""
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
        return [_PATTERNS[i] for i in self.net(x).argmax(1).tolist()]

    def accuracy(self, images: np.ndarray, specs: list[TextureSpec]) -> float:
        return float(np.mean([pattern_matches(p, s) for p, s in zip(self.predict(images), specs)]))


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random()
    if u < 0.2:
        img = gaussian_blur(img, rng.uniform(0.3, 0.7))
    elif u < 0.4:
        img = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1).astype(np.float32)
    return img
