"""The paper's recipes as named presets (one closed Enum) and the values they resolve to.

A recipe fixes every optimization setting the SDS-Bridge authors chose
(McAllister et al., NeurIPS 2024; davidmcall/SDS-Bridge):

- ``PAPER_2D`` (their ``2D_experiments/``): CFG 40 in both stages, stage 2 =
  w(t) s (eps_tgt - eps_src), switch at 50% (500 of 1000), target modifier
  ", detailed high resolution, high quality, sharp", no t annealing, AdamW lr 0.01.
- ``PAPER_3D`` (their ``threestudio-sds-bridge/configs/sds-bridge.yaml`` and
  ``guidance/sds_bridge_guidance.py``): stage 1 SDS at CFG 100; stage 2 = 1 (eps_tgt -
  eps_src), no w(t) and no CFG factor (``stage_two_weight: 1``, ``weighting_strategy:
  uniform``); target = the prompt alone (their ", ."); t_max annealed 0.98 -> 0.5 at 20%
  (5000 of 25000); stage 2 from 80% (20000 of 25000).
- Both: AdamW betas (0.9, 0.99), eps 1e-15, lr 0.01; the same source modifier.
- ``EMBEDDED``: measured for the embedded prior with close-up views
  (``benchmarks/texture_quality.py``; README, "Texture quality"): ``PAPER_2D`` with CFG 7.5,
  AdamW lr 0.1 decaying on a half cosine to 0.03 (``lr_final_fraction`` 0.3), and 500 steps
  at 2 views a step. Pattern rates below are at the texture's best zoom (``engine.quality``)
  unless marked "all zooms".
  - lr 0.1: each texel is seen in a few percent of the steps, so at lr 0.01 most of the
    surface is still near its initial grey after 1000 steps (sphere, "blue and white
    stripes", 300 steps: lr 0.01 colour match 0.00 / pattern (all zooms) 0.00 / HF ratio 0.01;
    lr 0.05 0.00 / 0.08 / 0.28; lr 0.1 0.88 / 0.33 / 0.74; lr 0.2 1.00 / 0.25 / 1.29).
  - the decay and CFG 7.5: at a constant lr 0.1 and CFG 40, "brown wood" came out black and
    yellow (HF 10-24x real samples', brown dominant in 0.00 of quad views) and tiles lost their
    colours. Over the full suite (1000 steps, 24 jobs, decay to 0.01): curved colour 0.89 ->
    0.98, pattern (all zooms) 0.475 -> 0.468, saturation error 0.021 -> 0.026, HF ratio 2.69 ->
    0.94; quad colour 0.79 -> 0.99, pattern (all zooms) 0.50 -> 0.63. Either change alone did
    less (5 jobs: CFG 7.5 wood colour cube 0.54 / quad 0.00; the decay at CFG 40 0.62 on the quad).
  - 500 steps x 2 views: the same 1000 rendered views as 1000 x 1 in about two thirds of the
    time, because the embedded UNet is overhead-bound (a batch of 4 costs 1.3-1.4x a batch of
    2). Suite (24 jobs; curved colour / pattern / saturation error / HF, then quad colour /
    pattern): 1000 x 1 (the previous recipe) 0.98 / 0.75 / 0.026 / 0.94, 0.99 / 0.92; 700 x 1
    0.94 / 0.66 / 0.030 / 0.66, 1.00 / 0.98; 500 x 2 0.93 / 0.73 / 0.033 / 0.62, 0.99 / 0.92;
    600 x 2 0.97 / 0.79 / 0.030 / 0.77, 1.00 / 0.94; 250 x 4 0.84 / 0.68 / 0.051 / 0.39, 1.00 /
    0.98; 500 x 2 decaying to 0.03 instead of 0.01 (this recipe) 0.95 / 0.77 / 0.037 / 0.87,
    0.99 / 0.94. The README's main job: 70.6-81.4 s at 1000 x 1, 44.5-55.2 s at 500 x 2,
    54.3-68.0 s at 600 x 2 (interleaved runs), so 600 x 2 would miss the 60 s goal in a slow
    period of this machine.
  - refine jobs keep the learning rate constant (``TextureJob.resolve``): decaying it cut the
    stripes -> checkerboard edit's pattern rate (all zooms) from 0.54 to 0.12.
  Built on PAPER_2D, not PAPER_3D: with lr 0.1 the 3D recipe's structure oversaturated the
  sphere (600 steps: colour 0.25, pattern (all zooms) 0.25, saturation error 0.161 vs 2D's 1.00 / 0.46 /
  0.011).
- ``AUTO`` (the job default): the recipe measured best for the prior in use
  (``best_recipe``): ``EMBEDDED`` for priors that want close-ups (the embedded prior);
  ``PAPER_2D`` for Stable Diffusion, unmeasured here (no SD weights can be downloaded in
  this project's CI), so it keeps the paper's 2D recipe.

Individual job fields (cfg_scale, stage_two_start, modifiers, learning_rate,
lr_final_fraction, steps, views_per_step) override the recipe's values; ``job.json`` records
the recipe and every value it resolved to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from engine.errors import parse_choice
from engine.guidance.config import PAPER_SOURCE_MODIFIER, PAPER_TARGET_MODIFIER
from engine.cameras import ViewMode


class Recipe(str, Enum):
    """Named optimization presets; ``auto`` = the measured best for the prior in use."""

    AUTO = "auto"
    PAPER_2D = "paper-2d"
    PAPER_3D = "paper-3d"
    EMBEDDED = "embedded"



@dataclass(frozen=True)
class RecipeValues:
    """Every setting a recipe fixes.

    Fields:
        cfg_scale: CFG of SDS and of Bridge's stage 1 (NFSD keeps its own 7.5, Katzir et al.).
        stage_two_scale: factor on Bridge's stage-2 gradient (eps_tgt - eps_src); ``None`` =
            ``cfg_scale`` (the 2D recipe's w s Delta); 1.0 in the 3D recipe.
        stage_two_time_weight: multiply stage 2 by w(t) = 1 - alpha-bar_t (2D: yes; 3D: no).
        stage_two_fraction: stage 2 starts at this fraction of the steps (2D 0.5, 3D 0.8).
        target_modifier, source_modifier: the bridge's calibrated suffixes.
        anneal_fraction: t_max drops to ``anneal_t_max`` from this fraction of the steps on
            (3D 0.2; ``None`` = no annealing, the 2D recipe).
        anneal_t_max: the annealed t_max (0.5, threestudio).
        learning_rate, betas, eps: AdamW (lr 0.01, betas (0.9, 0.99), eps 1e-15 in both recipes).
        lr_final_fraction: the learning rate decays on a half cosine to ``learning_rate *
            lr_final_fraction`` at the last step (``OptimizeConfig.lr_final_fraction``); 1.0 =
            constant, as in both of the authors' recipes.
        steps: optimization steps when the job sets none (1000: the 2D recipe's count; the 3D
            recipe's 25000 NeRF steps are not copied, its stage fractions are).
        views_per_step: views rendered per step when the job sets none; ``None`` = the device's
            (``memory.views_per_step_for``: 4 on a GPU, 1 on a CPU); both of the authors'
            recipes render one view a step (``batch_size: 1``).
    """

    cfg_scale: float
    stage_two_scale: float | None
    stage_two_time_weight: bool
    stage_two_fraction: float
    target_modifier: str
    source_modifier: str
    anneal_fraction: float | None
    anneal_t_max: float
    learning_rate: float
    betas: tuple[float, float]
    eps: float
    lr_final_fraction: float = 1.0
    steps: int = 1000
    views_per_step: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


PAPER_2D = RecipeValues(
    cfg_scale=40.0, stage_two_scale=None, stage_two_time_weight=True, stage_two_fraction=0.5,
    target_modifier=PAPER_TARGET_MODIFIER, source_modifier=PAPER_SOURCE_MODIFIER,
    anneal_fraction=None, anneal_t_max=0.5, learning_rate=0.01, betas=(0.9, 0.99), eps=1e-15,
)
PAPER_3D = RecipeValues(
    cfg_scale=100.0, stage_two_scale=1.0, stage_two_time_weight=False, stage_two_fraction=0.8,
    target_modifier="", source_modifier=PAPER_SOURCE_MODIFIER,
    anneal_fraction=0.2, anneal_t_max=0.5, learning_rate=0.01, betas=(0.9, 0.99), eps=1e-15,
)
EMBEDDED = dataclasses.replace(PAPER_2D, learning_rate=0.1, lr_final_fraction=0.3, cfg_scale=7.5, steps=500,
                               views_per_step=2)
_VALUES = {Recipe.PAPER_2D: PAPER_2D, Recipe.PAPER_3D: PAPER_3D, Recipe.EMBEDDED: EMBEDDED}


def best_recipe(preferred_views: ViewMode) -> Recipe:
    """What ``AUTO`` picks for a prior, by the views it declares (i.e. the kind of prior):
    ``EMBEDDED`` for close-up (swatch-trained) priors, ``PAPER_2D`` for orbit (SD) priors."""
    return Recipe.EMBEDDED if preferred_views is ViewMode.CLOSEUP else Recipe.PAPER_2D


def recipe_values(recipe: Recipe, preferred_views: ViewMode = ViewMode.ORBIT) -> tuple[Recipe, RecipeValues]:
    """(the concrete recipe, its values); ``AUTO`` resolves through ``best_recipe``."""
    recipe = parse_choice(Recipe, recipe, "recipe")
    if recipe is Recipe.AUTO:
        recipe = best_recipe(preferred_views)
    return recipe, _VALUES[recipe]
