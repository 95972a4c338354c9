"""The closed vocabularies of the procedural texture world.

Three Enums, one file: the named colours (with their sRGB values), the pattern
families, and the image artifacts whose words the paper's calibrated source
prompt uses. Every caption word of the world comes from here, so the embedded
prior's tokenizer is built from these Enums (``caption_vocabulary``).
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class NamedColour(Enum):
    """Twelve named colours; value = the caption word. ``rgb`` is the base sRGB in [0, 1]."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"
    CYAN = "cyan"
    BLUE = "blue"
    PURPLE = "purple"
    PINK = "pink"
    BROWN = "brown"
    BLACK = "black"
    WHITE = "white"
    GRAY = "gray"

    @property
    def rgb(self) -> np.ndarray:
        """(3,) float32 base colour."""
        return np.asarray(_RGB[self], dtype=np.float32)


_RGB: dict[NamedColour, tuple[float, float, float]] = {
    NamedColour.RED: (0.86, 0.10, 0.10),
    NamedColour.ORANGE: (0.96, 0.52, 0.08),
    NamedColour.YELLOW: (0.96, 0.88, 0.14),
    NamedColour.GREEN: (0.14, 0.62, 0.20),
    NamedColour.CYAN: (0.10, 0.80, 0.86),
    NamedColour.BLUE: (0.10, 0.22, 0.86),
    NamedColour.PURPLE: (0.50, 0.16, 0.70),
    NamedColour.PINK: (0.96, 0.52, 0.72),
    NamedColour.BROWN: (0.48, 0.28, 0.12),
    NamedColour.BLACK: (0.07, 0.07, 0.07),
    NamedColour.WHITE: (0.95, 0.95, 0.95),
    NamedColour.GRAY: (0.50, 0.50, 0.50),
}

#: (12, 3) palette in Enum order, used by the dominant-colour metric.
PALETTE = np.stack([c.rgb for c in NamedColour]).astype(np.float32)


class Pattern(Enum):
    """Pattern families. Value = the label used by the pattern classifier and the holdout split."""

    SOLID = "solid"
    CHECKER = "checker"
    STRIPES_HORIZONTAL = "stripes_horizontal"
    STRIPES_VERTICAL = "stripes_vertical"
    STRIPES_DIAGONAL = "stripes_diagonal"
    DOTS = "dots"
    BRICKS = "bricks"
    TILES = "tiles"
    WOOD = "wood"
    MARBLE = "marble"
    SPECKLE = "speckle"
    GRADIENT = "gradient"

    @property
    def is_stripes(self) -> bool:
        return self in (Pattern.STRIPES_HORIZONTAL, Pattern.STRIPES_VERTICAL, Pattern.STRIPES_DIAGONAL)

    @property
    def family(self) -> str:
        """The holdout/caption family: the three stripe orientations share ``"stripes"``."""
        return "stripes" if self.is_stripes else self.value


class Artifact(Enum):
    """Image degradations; ``words`` are the caption words (the paper's source-prompt vocabulary)."""

    OVERSATURATED = "oversaturated"
    SMOOTH = "smooth"
    BLURRY = "blurry"
    PIXELATED = "pixelated"
    NOISY = "noisy"
    FOGGY = "foggy"
    HAZY = "hazy"
    CARTOON = "cartoon"
    MALFORMED = "malformed"  # block shuffle; captioned "malformed" or "bad structure"

    @property
    def words(self) -> tuple[str, ...]:
        return ("malformed", "bad structure") if self is Artifact.MALFORMED else (self.value,)


#: Target (quality) phrases; clean images are captioned with a subset of these.
TARGET_PHRASES: tuple[str, ...] = ("detailed", "sharp", "high quality", "high resolution", "detailed high resolution")

#: Extra words the captions use besides colours and artifact/target phrases.
STRUCTURE_WORDS: tuple[str, ...] = (
    "and", "on", "with", "to", "solid", "plain", "checkerboard", "checkered", "pattern", "stripes",
    "horizontal", "vertical", "diagonal", "dots", "polka", "bricks", "brick", "wall", "mortar", "tiles",
    "grout", "wood", "grain", "marble", "veins", "speckle", "speckled", "noise", "gradient",
)


def caption_vocabulary() -> list[str]:
    """Every word (and the comma) a caption of this world can contain, sorted."""
    words: set[str] = {","}
    words.update(c.value for c in NamedColour)
    words.update(STRUCTURE_WORDS)
    for a in Artifact:
        for w in a.words:
            words.update(w.split())
    for p in TARGET_PHRASES:
        words.update(p.split())
    return sorted(words)
