"""``TextureJob``: the one job spec shared by the CLI, the server and the add-on.

It is validated on construction (``SpecError`` lists what is allowed) and has a
JSON form with a schema version (``to_json`` / ``from_json``). The server and
the add-on send exactly this JSON; pydantic is used only at the HTTP edge.

Optimization defaults come from a named recipe (``recipe``, ``engine.guidance.recipe``):
``auto`` picks the one measured best for the prior in use; ``paper-2d`` / ``paper-3d`` are
the SDS-Bridge authors' (McAllister et al., NeurIPS 2024). Fields left ``None`` take the
recipe's (or the prior's) value; ``job.json`` records what they resolved to.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from engine.cameras import ViewMode
from engine import jobschema
from engine.errors import Fix, SpecError
from engine.jobschema import spec_field
from engine.raster.backend import RasterBackend
from engine.guidance.method import GuidanceMethod
from engine.guidance.config import GuidanceConfig, default_cfg
from engine.guidance.recipe import Recipe, RecipeValues, recipe_values
from engine.raster.control_images import ControlKind
from engine.priors.memory import AUTO_LOW_BELOW_GIB, MemoryMode
from engine.priors.tiny_encoder import DEFAULT_TINY_ENCODER, EncoderKind

SCHEMA_VERSION = 1

# The paper's calibrated modifiers live beside the guidance config; re-exported here.
from engine.guidance.config import PAPER_SOURCE_MODIFIER, PAPER_TARGET_MODIFIER  # noqa: E402,F401

MAX_TEXTURE_SIZE = 8192
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = tuple(b.value for b in RasterBackend)


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class TextureJob:
    """One texturing job. Each field's ``help`` (below) is its documentation, and the same
    declaration generates its CLI flag, its JSON Schema entry (HTTP API, ``docs/openapi.json``)
    and its validation (``engine.jobschema``). ``None`` means a derived default (the recipe's or
    the prior's); ``resolve()`` fills them in and ``job.json`` records the result.
    """

    prompt: str = spec_field(help="what the texture should depict (non-empty)", cli=False)
    mesh: str | None = spec_field(None, cli=False, help="mesh file: OBJ, GLB/glTF, PLY or .npz arrays "
                                  "(the server fills in the uploaded file's path)")
    method: GuidanceMethod = spec_field(GuidanceMethod.BRIDGE, choices=GuidanceMethod,
                                        help="guidance method; bridge is the paper's")
    recipe: Recipe = spec_field(Recipe.AUTO, choices=Recipe,
                                help="optimization preset: auto (measured best for the model), paper-2d, "
                                     "paper-3d (the SDS-Bridge authors'), embedded; see engine/guidance/recipe.py")
    steps: int | None = spec_field(None, lo=1, hi=1_000_000,
                                   default_text="the recipe's (paper 1000; embedded 500, at 2 views a step)",
                                   help="optimization steps")
    stage_two_start: int | None = spec_field(
        None, lo=0, default_text="the recipe's fraction of the steps (paper-2d 50%, paper-3d 80%)",
        help="step where Bridge switches from its SDS warm-up to the calibrated bridge (ignored by sds/nfsd)")
    cfg_scale: float | None = spec_field(None, lo=0.0, hi=1000.0, flag="cfg",
                                         default_text="the recipe's (paper-2d 40, paper-3d 100; nfsd 7.5)",
                                         help="classifier-free guidance scale")
    source_modifier: str | None = spec_field(None, default_text="the recipe's (the paper's)",
                                             help="bridge source prompt suffix")
    target_modifier: str | None = spec_field(None, default_text="the recipe's (the paper's)",
                                             help="bridge target prompt suffix")
    edit_source_prompt: str | None = spec_field(None, default_text="none",
                                                help="refine: describes the current texture; the bridge runs from "
                                                     "step 0 with src = this and tgt = the prompt (the edit)")
    init_texture: str | None = spec_field(None, default_text="mid-grey", help="refine: PNG texture to start from")
    learning_rate: float | None = spec_field(None, lo=0.0, hi=10.0, lo_open=True, flag="lr",
                                             default_text="the recipe's (paper 0.01)", help="AdamW learning rate")
    lr_final_fraction: float | None = spec_field(None, lo=0.0, hi=1.0, lo_open=True,
                                                 default_text="the recipe's (paper 1 = constant; refine jobs 1)",
                                                 help="the learning rate decays on a half cosine to lr x this "
                                                      "at the last step (1 = constant)")
    texture_size: int = spec_field(1024, lo=64, hi=MAX_TEXTURE_SIZE, help="texture side in texels, a power of two")
    render_size: int | None = spec_field(None, lo=16, hi=4096, default_text="the model's (512 SD, 64 embedded)",
                                         help="rendered view side in pixels (resized to the model's resolution)")
    views: ViewMode = spec_field(ViewMode.AUTO, choices=ViewMode,
                                 help="cameras: auto (the model's choice), orbit (whole object), closeup (surface fills the frame)")
    views_per_step: int | None = spec_field(None, lo=1, hi=64,
                                            default_text="the recipe's (embedded 2), else 4 on a GPU (1 with memory "
                                                         "low), 1 on a CPU",
                                            help="views rendered per step")
    seed: int = spec_field(0, lo=0, hi=2**63 - 1, help="random seed; a CPU run is deterministic for a seed")
    model: str = spec_field("auto", help="auto | embedded | hub id | diffusers folder | .safetensors file")
    device: str = spec_field("auto", choices=DEVICES, help="device the job runs on")
    backend: str = spec_field("auto", choices=BACKENDS, help="rasterizer")
    memory: MemoryMode = spec_field(
        MemoryMode.AUTO, choices=MemoryMode,
        help=f"GPU memory: auto (low on CUDA when under {AUTO_LOW_BELOW_GIB:g} GiB are free, an unmeasured estimate; "
             f"full on a CPU), full, or low (attention and VAE slicing, checkpointed VAE encoder, fp16, text encoder "
             f"on the CPU, 1 view per step unless views_per_step is set); engine/priors/memory.py")
    encoder: EncoderKind = spec_field(
        EncoderKind.FULL, choices=EncoderKind,
        help="image encoder on the gradient path: full (the model's VAE) or tiny (TAESD, see tiny_encoder; "
             "Stable Diffusion models only)")
    tiny_encoder: str = spec_field(DEFAULT_TINY_ENCODER,
                                   help="TAESD weights for encoder tiny: hub id, diffusers folder or .safetensors file")
    view_dependent_prompts: bool = spec_field(True, negate_flag="no_view_prompts",
                                              help='append "front view" / "side view" / ... by camera angle')
    controlnet: str | None = spec_field(
        None, default_text="none",
        help="ControlNet that makes the texture follow the mesh's geometry (Stable Diffusion models only; "
             "it must be trained for the model, e.g. SD 2.1 ControlNets for SD 2.1-base): hub id, diffusers folder "
             "or .safetensors file")
    control: ControlKind = spec_field(
        ControlKind.DEPTH, choices=ControlKind,
        help="what the ControlNet is shown, from each view's G-buffer: depth (per-view normalised inverse depth) "
             "or normal (camera-space normals in NormalBae colours); docs/conventions.md")
    control_scale: float = spec_field(1.0, lo=0.0, hi=10.0,
                                      help="ControlNet strength: multiplies its residuals (0 = the plain model)")
    checkpoint_every: int = spec_field(50, lo=1, hi=1_000_000, help="steps between checkpoints")
    preview_every: int = spec_field(10, lo=1, hi=1_000_000, help="steps between progress snapshots")

    def __post_init__(self) -> None:
        for fs in jobschema.fields(type(self)):  # types, choices and ranges: from the field metadata
            object.__setattr__(self, fs.name, jobschema.check_value(fs, getattr(self, fs.name)))
        if not self.prompt.strip():
            raise SpecError("prompt is empty", fix=Fix("prompt", "give a text prompt in {field}, such as 'red brick wall'"))
        if self.stage_two_start is not None and self.steps is not None and self.stage_two_start > self.steps:
            raise SpecError(f"stage_two_start={self.stage_two_start} is out of range; allowed: 0..{self.steps} (the steps)")
        if not _is_pow2(self.texture_size):
            raise SpecError(
                f"texture_size={self.texture_size} is not a power of two; allowed: 64, 128, 256, 512, 1024, 2048, 4096, 8192"
            )
        if not self.model.strip():
            raise SpecError("model is empty; allowed: auto, embedded, a hub id, a diffusers folder or a .safetensors file")
        if self.encoder is EncoderKind.TINY and not self.tiny_encoder.strip():
            raise SpecError(f"tiny_encoder is empty; give a hub id (default {DEFAULT_TINY_ENCODER}), a folder or a .safetensors file")
        if self.controlnet is not None:
            if not self.controlnet.strip():
                raise SpecError("controlnet is empty; give a ControlNet hub id, diffusers folder or .safetensors file, "
                                "or leave it unset")
            if self.model.strip().lower() == "embedded":
                raise SpecError("controlnet needs a Stable Diffusion model: the embedded model has no ControlNet; "
                                "ControlNets work with SD priors (a hub id, a diffusers folder or a .safetensors SD "
                                "checkpoint, or auto when SD is cached)")

    # -- derived values -------------------------------------------------------------
    def control_config(self):
        """The job's ``engine.priors.controlnet.ControlConfig``; None without a ControlNet."""
        if self.controlnet is None:
            return None
        from engine.priors.controlnet import ControlConfig

        return ControlConfig(self.controlnet.strip(), self.control, float(self.control_scale))

    def resolve(self, preferred_views: ViewMode = ViewMode.ORBIT, preferred_render_size: int = 512) -> "ResolvedJob":
        """Every setting this job runs with: the recipe's values under the job's overrides,
        and the prior's view and render-size choices for ``auto`` / ``None`` fields."""
        recipe, values = recipe_values(self.recipe, preferred_views)
        over = {k: getattr(self, k) for k in ("cfg_scale", "source_modifier", "target_modifier", "learning_rate",
                                               "lr_final_fraction", "steps", "views_per_step") if getattr(self, k) is not None}
        if self.method is GuidanceMethod.NFSD:
            over.setdefault("cfg_scale", default_cfg(GuidanceMethod.NFSD))  # Katzir et al.'s, not the recipe's
        if self.edit_source_prompt is not None:  # refine: a constant lr (measured; engine/guidance/recipe.py)
            over.setdefault("lr_final_fraction", 1.0)
        values = dataclasses.replace(values, **{k: float(v) if k in ("cfg_scale", "learning_rate", "lr_final_fraction") else v
                                                for k, v in over.items()})
        if self.stage_two_start is not None and self.stage_two_start > values.steps:
            raise SpecError(f"stage_two_start={self.stage_two_start} is out of range; allowed: 0..{values.steps} "
                            f"(the steps: the {recipe.value} recipe's {values.steps}; set steps to run longer)")
        stage_two = (self.stage_two_start if self.stage_two_start is not None
                     else int(round(values.stage_two_fraction * values.steps)))
        return ResolvedJob(self, recipe, values, stage_two,
                           preferred_views if self.views is ViewMode.AUTO else self.views,
                           self.render_size or int(preferred_render_size))

    def replace(self, **changes: Any) -> "TextureJob":
        return dataclasses.replace(self, **changes)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {k: v.value if isinstance(v, Enum) else v for k, v in dataclasses.asdict(self).items()}
        d["schema_version"] = SCHEMA_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextureJob":
        if not isinstance(data, dict):
            raise SpecError("job spec must be a JSON object")
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SpecError(f"job spec schema_version={version} is not supported; this engine reads version {SCHEMA_VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown job spec field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        if "prompt" not in data:
            raise SpecError("job spec has no prompt; give a text prompt")
        try:
            return cls(**data)
        except TypeError as exc:  # wrong types that dataclass cannot express
            raise SpecError(f"bad job spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "TextureJob":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"job spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class ResolvedJob:
    """A job with every default filled in (``TextureJob.resolve``); what ``job.json`` records.

    recipe: the concrete recipe (never ``auto``); values: its settings after the job's
    overrides; stage_two_start: 0-based first step of Bridge's stage 2; views / render_size:
    the cameras and render side the loop uses.
    """

    job: TextureJob
    recipe: Recipe
    values: RecipeValues
    stage_two_start: int
    views: ViewMode
    render_size: int

    @property
    def steps(self) -> int:
        """The steps the job runs: its own, else the recipe's."""
        return self.values.steps

    def guidance_config(self) -> GuidanceConfig:
        """The guidance settings (the only place job fields become a ``GuidanceConfig``)."""
        v, job = self.values, self.job
        anneal = None if v.anneal_fraction is None else int(round(v.anneal_fraction * v.steps))
        return GuidanceConfig(
            method=job.method, cfg_scale=v.cfg_scale, anneal_t_max=v.anneal_t_max, anneal_after_step=anneal,
            stage_two_start=self.stage_two_start, stage_two_scale=v.stage_two_scale,
            stage_two_time_weight=v.stage_two_time_weight, source_modifier=v.source_modifier,
            target_modifier=v.target_modifier, edit_source_prompt=job.edit_source_prompt,
            view_dependent_prompts=job.view_dependent_prompts,
        )

    def to_dict(self) -> dict[str, Any]:
        g = self.guidance_config()
        return {"recipe": self.recipe.value, **self.values.to_dict(), "method": self.job.method.value,
                "stage_two_start": self.stage_two_start if self.job.method is GuidanceMethod.BRIDGE else None,
                "stage_two_scale": g.bridge_scale, "anneal_after_step": g.anneal_after_step,
                "views": self.views.value, "render_size": self.render_size,
                "controlnet": None if self.job.controlnet is None else {
                    "model": self.job.controlnet, "control": self.job.control.value,
                    "control_scale": float(self.job.control_scale)}}
