"""The procedural texture world: specs, captions, rendering, and the holdout split.

A ``TextureSpec`` (pattern, colours, artifacts, caption style) is drawn from a
``np.random.Generator``, rendered by ``engine.procedural.patterns`` and degraded
by ``engine.procedural.degrade``; ``caption`` writes its text. Everything is a
pure function of the generator, so ``make_batch(config, seed)`` is deterministic.

Holdout: ``held_out_combinations(config)`` names (pattern family, colour pair)
combinations that the training sampler never produces; evaluation samples
exactly those captions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from engine.procedural.degrade import apply_artifact
from engine.procedural.patterns import jitter_colour, render_pattern, shade_of
from engine.procedural.vocab import Artifact, NamedColour, Pattern, TARGET_PHRASES

#: Families whose captions name two colours symmetrically enough to hold out pairs.
TWO_COLOUR_FAMILIES: tuple[str, ...] = ("checker", "stripes", "dots", "tiles", "speckle", "gradient")
#: Combinations never held out: the README / end-to-end prompts must be in-distribution.
NEVER_HELD_OUT: frozenset[tuple[str, frozenset[NamedColour]]] = frozenset(
    {("stripes", frozenset({NamedColour.BLUE, NamedColour.WHITE})), ("checker", frozenset({NamedColour.RED, NamedColour.WHITE}))}
)
#: The paper's calibrated modifiers as phrase lists (see ``engine.job``).
PAPER_SOURCE_PHRASES = ("oversaturated", "smooth", "pixelated", "cartoon", "foggy", "hazy", "blurry", "bad structure", "noisy", "malformed")
PAPER_TARGET_PHRASES = ("detailed high resolution", "high quality", "sharp")


@dataclass(frozen=True)
class TextureWorldConfig:
    """Knobs of the procedural world.

    Fields:
        size: image side in pixels (the embedded prior's resolution, 32).
        holdout_seed: seed of the held-out combination draw (fixed: the split is part of the world).
        holdout_count: number of (family, colour pair) combinations held out of training.
        p_target: probability a clean image's caption carries target phrases ("sharp", ...).
        p_degraded: probability an image is degraded and its caption carries the artifact words.
        p_paper_source: probability a degraded image is captioned with the paper's full source list.
    """

    size: int = 32
    holdout_seed: int = 1234
    holdout_count: int = 24
    p_target: float = 0.2
    p_degraded: float = 0.35
    p_paper_source: float = 0.15


@dataclass(frozen=True)
class TextureSpec:
    """One texture: pattern + named colours (+ artifacts) and how its caption is worded.

    ``colours``: 1 or 2 named colours in caption order. ``artifacts``: applied in order.
    ``modifiers``: the caption suffix phrases (artifact or target words).
    """

    pattern: Pattern
    colours: tuple[NamedColour, ...]
    artifacts: tuple[Artifact, ...] = ()
    modifiers: tuple[str, ...] = ()
    style: int = 0  # which caption template of the pattern
    name_orientation: bool = False  # stripes: say "horizontal" / "vertical" / "diagonal"

    @property
    def base_caption(self) -> str:
        return _base_caption(self)

    @property
    def caption(self) -> str:
        return ", ".join((self.base_caption, *self.modifiers))

    def with_modifiers(self, artifacts: tuple[Artifact, ...] = (), modifiers: tuple[str, ...] = ()) -> TextureSpec:
        return dataclasses.replace(self, artifacts=artifacts, modifiers=modifiers)


def _base_caption(s: TextureSpec) -> str:
    c = [x.value for x in s.colours]
    p = s.pattern
    if p is Pattern.SOLID:
        return (f"solid {c[0]}", f"plain {c[0]}")[s.style % 2]
    if p is Pattern.CHECKER:
        return f"{c[0]} and {c[1]} " + ("checkerboard", "checkered pattern")[s.style % 2]
    if p.is_stripes:
        orient = p.value.split("_")[1] + " " if s.name_orientation else ""
        return f"{c[0]} and {c[1]} {orient}stripes"
    if p is Pattern.DOTS:
        return f"{c[0]} " + ("dots", "polka dots")[s.style % 2] + f" on {c[1]}"
    if p is Pattern.BRICKS:
        return f"{c[0]} bricks with {c[1]} mortar" if len(c) == 2 else (f"{c[0]} bricks", f"{c[0]} brick wall")[s.style % 2]
    if p is Pattern.TILES:
        return f"{c[0]} tiles with {c[1]} grout"
    if p is Pattern.WOOD:
        return (f"{c[0]} wood grain", f"{c[0]} wood")[s.style % 2]
    if p is Pattern.MARBLE:
        return f"{c[0]} marble with {c[1]} veins" if len(c) == 2 else f"{c[0]} marble"
    if p is Pattern.SPECKLE:
        return f"{c[0]} and {c[1]} speckle noise" if s.style % 2 == 0 else f"{c[0]} speckled with {c[1]}"
    if p is Pattern.GRADIENT:
        return f"{c[0]} to {c[1]} gradient"
    raise AssertionError(p)  # pragma: no cover


def n_colours(pattern: Pattern, rng: np.random.Generator) -> int:
    """How many named colours a caption of ``pattern`` names (random for bricks/marble)."""
    if pattern in (Pattern.SOLID, Pattern.WOOD):
        return 1
    if pattern in (Pattern.BRICKS, Pattern.MARBLE):
        return 1 if rng.random() < 0.5 else 2
    return 2


def held_out_combinations(config: TextureWorldConfig = TextureWorldConfig()) -> list[tuple[str, frozenset[NamedColour]]]:
    """The (family, colour pair) combinations excluded from training, deterministic."""
    pairs = [frozenset(p) for p in combinations(NamedColour, 2)]
    combos = [(f, p) for f in TWO_COLOUR_FAMILIES for p in pairs if (f, p) not in NEVER_HELD_OUT]
    rng = np.random.default_rng(config.holdout_seed)
    idx = rng.choice(len(combos), size=config.holdout_count, replace=False)
    return [combos[i] for i in sorted(idx)]


def _combo_key(spec: TextureSpec) -> tuple[str, frozenset[NamedColour]]:
    return spec.pattern.family, frozenset(spec.colours)


def sample_spec(rng: np.random.Generator, config: TextureWorldConfig, held_out: frozenset | set = frozenset()) -> TextureSpec:
    """Draw one training spec (never a held-out combination), with caption modifiers."""
    while True:
        pattern = list(Pattern)[int(rng.integers(len(Pattern)))]
        k = n_colours(pattern, rng)
        idx = rng.choice(len(NamedColour), size=k, replace=False)
        colours = tuple(list(NamedColour)[i] for i in idx)
        spec = TextureSpec(pattern, colours, style=int(rng.integers(2)), name_orientation=bool(rng.random() < 0.5))
        if len(colours) < 2 or _combo_key(spec) not in held_out:
            break
    u = rng.random()
    if u < config.p_degraded:
        if rng.random() < config.p_paper_source:
            arts = tuple(rng.choice(list(Artifact), size=int(rng.integers(2, 4)), replace=False))
            return spec.with_modifiers(arts, PAPER_SOURCE_PHRASES)
        arts = tuple(rng.choice(list(Artifact), size=1 if rng.random() < 0.7 else 2, replace=False))
        words = [a.words[int(rng.integers(len(a.words)))] for a in arts]
        rng.shuffle(words)
        return spec.with_modifiers(arts, tuple(words))
    if u < config.p_degraded + config.p_target:
        if rng.random() < 0.3:
            return spec.with_modifiers((), PAPER_TARGET_PHRASES)
        k = int(rng.integers(1, 4))
        words = list(rng.choice(TARGET_PHRASES, size=k, replace=False))
        return spec.with_modifiers((), tuple(str(w) for w in words))
    return spec


def render(spec: TextureSpec, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render a spec: (size, size, 3) float32 in [0, 1]."""
    cols = [jitter_colour(c, rng) for c in spec.colours]
    p = spec.pattern
    if p in (Pattern.WOOD,) or (p in (Pattern.BRICKS, Pattern.MARBLE) and len(cols) == 1):
        if p is Pattern.BRICKS:
            second = np.clip(np.full(3, 0.8, np.float32) + rng.normal(0, 0.02, 3).astype(np.float32), 0, 1)
            if cols[0].mean() > 0.7:
                second = np.full(3, 0.45, np.float32)
        else:
            second = shade_of(cols[0])
        cols.append(second)
    if len(cols) == 1:
        cols.append(cols[0])
    # colours[0] is the "main" colour: background for marble/speckle/bricks/tiles/wood, dots on colours[1]
    if p is Pattern.DOTS:
        bg, fg = cols[1], cols[0]
    elif p is Pattern.GRADIENT:
        bg, fg = cols[0], cols[1]
    else:
        bg, fg = cols[0], cols[1]
    img = render_pattern(p, bg, fg, size, rng)
    for a in spec.artifacts:
        img = apply_artifact(img, a, rng)
    return img


def make_batch(
    config: TextureWorldConfig, seed: int, batch_size: int, held_out: frozenset | set | None = None
) -> tuple[np.ndarray, list[str], list[TextureSpec]]:
    """A deterministic training batch.

    Returns:
        images (B, size, size, 3) float32 in [0, 1], captions (B,), specs (B,).
    """
    held = frozenset(held_out_combinations(config)) if held_out is None else frozenset(held_out)
    rng = np.random.default_rng(seed)
    specs = [sample_spec(rng, config, held) for _ in range(batch_size)]
    images = np.stack([render(s, rng, config.size) for s in specs])
    return images, [s.caption for s in specs], specs


def held_out_specs(config: TextureWorldConfig = TextureWorldConfig()) -> list[TextureSpec]:
    """One clean caption spec per held-out combination (for evaluation)."""
    out: list[TextureSpec] = []
    for family, pair in held_out_combinations(config):
        cs = tuple(sorted(pair, key=lambda c: list(NamedColour).index(c)))
        pattern = {"stripes": Pattern.STRIPES_HORIZONTAL}.get(family) or Pattern(family)
        out.append(TextureSpec(pattern, cs))
    return out
