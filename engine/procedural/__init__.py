"""The procedural texture world (patterns x colours x jitter, captions, artifact degradations).

Deterministic for a seed; used to train and evaluate the embedded prior.
"""

from __future__ import annotations

from engine.procedural.vocab import Artifact, NamedColour, Pattern, caption_vocabulary
from engine.procedural.world import (
    TextureSpec,
    TextureWorldConfig,
    held_out_combinations,
    held_out_specs,
    make_batch,
    render,
)

__all__ = [
    "Artifact",
    "NamedColour",
    "Pattern",
    "TextureSpec",
    "TextureWorldConfig",
    "caption_vocabulary",
    "held_out_combinations",
    "held_out_specs",
    "make_batch",
    "render",
]
