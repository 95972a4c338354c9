"""``GuidanceConfig``: the frozen settings of score-distillation guidance.

Where the paper (McAllister et al., NeurIPS 2024, "Rethinking Score Distillation
as a Bridge Between Image Distributions") fixes a value, that value is the default
and the field's docstring says so; other defaults name their source.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import SpecError, parse_choice
from engine.guidance.method import GuidanceMethod

#: Paper's calibrated target modifier (appended to the prompt in stage 2).
PAPER_TARGET_MODIFIER = ", detailed high resolution, high quality, sharp"
#: Paper's calibrated source modifier (appended to the prompt in stage 2).
PAPER_SOURCE_MODIFIER = (
    ", oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, malformed"
)
#: NFSD's negative prompt (Katzir et al., ICLR 2024, "Noise-Free Score Distillation", Sec. 4).
NFSD_NEGATIVE_PROMPT = "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"

#: Default classifier-free guidance scale per method.
#: - SDS and Bridge: 40, the SDS-Bridge paper's 2D recipe (SD 2.1-base, CFG 40, AdamW lr 0.01).
#: - NFSD: 7.5, Katzir et al. (NFSD works at the usual sampling CFG; Sec. 4 of their paper).
DEFAULT_CFG: dict[GuidanceMethod, float] = {
    GuidanceMethod.SDS: 40.0,
    GuidanceMethod.BRIDGE: 40.0,
    GuidanceMethod.NFSD: 7.5,
}


def default_cfg(method: GuidanceMethod) -> float:
    """The method's documented default CFG scale (see ``DEFAULT_CFG``)."""
    return DEFAULT_CFG[method]


@dataclass(frozen=True)
class GuidanceConfig:
    """How the latent gradient is formed each step.

    Fields:
        method: SDS, NFSD or Bridge (the paper's; default).
        cfg_scale: classifier-free guidance scale s; ``None`` = the method default
            (``DEFAULT_CFG``: 40 for SDS/Bridge from the paper's 2D recipe, 7.5 for NFSD).
        t_min, t_max: timesteps are drawn uniformly from [t_min, t_max] * T
            (0.02 and 0.98: DreamFusion / threestudio, used by the paper).
        anneal_t_max: t_max used from ``anneal_after_step`` on (0.5 as in threestudio's
            annealing); ``anneal_after_step=None`` (default) disables annealing, as the paper's
            2D recipe does not anneal.
        anneal_after_step: step index from which ``anneal_t_max`` applies; ``None`` = never.
        stage_two_start: Bridge's switch from SDS warm-up (stage 1) to the calibrated bridge
            (stage 2), as a 0-based step index: steps ``>= stage_two_start`` are stage 2
            (paper: 500 of 1000).
        stage_two_scale: factor on the stage-2 gradient (eps_tgt - eps_src); ``None`` = the CFG
            scale (the paper's 2D recipe: w s Delta); the 3D recipe uses 1.0.
        stage_two_time_weight: multiply stage 2 by w(t) (2D recipe: yes; 3D recipe: no).
        source_modifier, target_modifier: the bridge's calibrated suffixes (paper's values).
        edit_source_prompt: refine mode. If set, Bridge runs stage 2 from step 0 with
            src = this prompt and tgt = the job prompt (no modifiers).
        nfsd_negative_prompt: NFSD's negative prompt (Katzir et al.).
        nfsd_small_t: NFSD uses the unconditional prediction alone as its denoising term
            below this timestep (200 of 1000, Katzir et al.).
        view_dependent_prompts: append ", front view" etc. chosen from the camera angles
            (DreamFusion); on by default.
        front_half_angle, back_half_angle: azimuth half-widths (deg) of the front and back
            sectors around azimuth 0 (front) and 180 (back); 45 as in threestudio.
        overhead_elevation: elevations (deg) above this are "overhead view"; 60 as threestudio.
    """

    method: GuidanceMethod = GuidanceMethod.BRIDGE
    cfg_scale: float | None = None
    t_min: float = 0.02
    t_max: float = 0.98
    anneal_t_max: float = 0.5
    anneal_after_step: int | None = None
    stage_two_start: int = 500
    stage_two_scale: float | None = None
    stage_two_time_weight: bool = True
    source_modifier: str = PAPER_SOURCE_MODIFIER
    target_modifier: str = PAPER_TARGET_MODIFIER
    edit_source_prompt: str | None = None
    nfsd_negative_prompt: str = NFSD_NEGATIVE_PROMPT
    nfsd_small_t: int = 200
    view_dependent_prompts: bool = True
    front_half_angle: float = 45.0
    back_half_angle: float = 45.0
    overhead_elevation: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_choice(GuidanceMethod, self.method, "method"))
        if not (0.0 <= self.t_min < self.t_max <= 1.0):
            raise SpecError(f"t_min={self.t_min}, t_max={self.t_max}: need 0 <= t_min < t_max <= 1")
        if not (self.t_min < self.anneal_t_max <= self.t_max):
            raise SpecError(f"anneal_t_max={self.anneal_t_max}: need t_min < anneal_t_max <= t_max")
        if self.stage_two_start < 0:
            raise SpecError(f"stage_two_start={self.stage_two_start}: must be >= 0")

    @property
    def scale(self) -> float:
        """The CFG scale in effect (explicit or the method default)."""
        return float(self.cfg_scale) if self.cfg_scale is not None else default_cfg(self.method)

    @property
    def bridge_scale(self) -> float:
        """The factor on stage 2's (eps_tgt - eps_src): ``stage_two_scale`` or the CFG scale."""
        return float(self.stage_two_scale) if self.stage_two_scale is not None else self.scale

    @property
    def is_edit(self) -> bool:
        return self.edit_source_prompt is not None
