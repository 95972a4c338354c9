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
from typing import Any

from engine.cameras import ViewMode
from engine.errors import SpecError, parse_choice
from engine.guidance.method import GuidanceMethod
from engine.guidance.config import GuidanceConfig, default_cfg
from engine.guidance.recipe import Recipe, RecipeValues, recipe_values

SCHEMA_VERSION = 1

# The paper's calibrated modifiers live beside the guidance config; re-exported here.
from engine.guidance.config import PAPER_SOURCE_MODIFIER, PAPER_TARGET_MODIFIER  # noqa: E402,F401

MAX_TEXTURE_SIZE = 8192
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "numba", "nvdiffrast")


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class TextureJob:
    """One texturing job.

    Fields:
        prompt: what the texture should depict (non-empty).
        mesh: path of the mesh file (OBJ, GLB/glTF, PLY, or ``.npz`` arrays). The server
            fills it with the uploaded file's path inside the job folder.
        method: guidance method; ``bridge`` (the paper's) by default.
        recipe: ``auto`` (the measured best for the prior), ``paper-2d`` or ``paper-3d``:
            the defaults of the optimization settings below (``engine.guidance.recipe``).
        steps: optimization steps (paper: 1000).
        stage_two_start: step at which Bridge switches from SDS warm-up to the calibrated
            bridge; ``None`` = the recipe's fraction of the steps (paper-2d: 50%, paper-3d:
            80%). Ignored by sds/nfsd.
        cfg_scale: classifier-free guidance scale; ``None`` = the recipe's (paper-2d 40,
            paper-3d 100; NFSD always 7.5 unless set).
        source_modifier / target_modifier: the bridge's calibrated prompt suffixes; ``None``
            = the recipe's (the paper's).
        edit_source_prompt: refine mode. A description of the current texture; the bridge
            then runs from step 0 with src = this and tgt = ``prompt`` (the edit).
        init_texture: refine mode. Path of a PNG to start from (else mid-gray).
        learning_rate: AdamW learning rate; ``None`` = the recipe's (paper: 0.01).
        texture_size: texture side in texels, a power of two, 64..8192.
        render_size: side of the rendered views in pixels (resized to the prior's resolution);
            ``None`` = the prior's choice (512 for SD, 64 for the embedded prior).
        views: ``auto`` (the prior's choice), ``orbit`` (whole-object views) or ``closeup``
            (the surface fills the frame); see ``engine.cameras.ViewMode``.
        views_per_step: views rendered per step; ``None`` = 4 on a GPU, 1 on a CPU.
        seed: RNG seed; a CPU run is deterministic for a seed.
        model: ``auto``, ``embedded``, a hub id, a diffusers folder or a ``.safetensors`` file.
        device: ``auto`` | ``cpu`` | ``cuda``.
        backend: rasterizer ``auto`` | ``numba`` | ``nvdiffrast``.
        view_dependent_prompts: append "front view" / "side view" / ... by camera angle.
        checkpoint_every / preview_every: steps between checkpoints / preview snapshots.
    """

    prompt: str
    mesh: str | None = None
    method: GuidanceMethod = GuidanceMethod.BRIDGE
    recipe: Recipe = Recipe.AUTO
    steps: int = 1000
    stage_two_start: int | None = None
    cfg_scale: float | None = None
    source_modifier: str | None = None
    target_modifier: str | None = None
    edit_source_prompt: str | None = None
    init_texture: str | None = None
    learning_rate: float | None = None
    texture_size: int = 1024
    render_size: int | None = None
    views: ViewMode = ViewMode.AUTO
    views_per_step: int | None = None
    seed: int = 0
    model: str = "auto"
    device: str = "auto"
    backend: str = "auto"
    view_dependent_prompts: bool = True
    checkpoint_every: int = 50
    preview_every: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_choice(GuidanceMethod, self.method, "method"))
        object.__setattr__(self, "recipe", parse_choice(Recipe, self.recipe, "recipe"))
        object.__setattr__(self, "views", parse_choice(ViewMode, self.views, "views"))
        for name in ("source_modifier", "target_modifier"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise SpecError(f"{name} must be a string (or null for the recipe's)")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise SpecError("prompt is empty; give a text prompt such as --prompt 'red brick wall'")
        _int_range("steps", self.steps, 1, 1_000_000)
        if self.stage_two_start is not None:
            _int_range("stage_two_start", self.stage_two_start, 0, self.steps)
        if self.cfg_scale is not None and not (0.0 <= float(self.cfg_scale) <= 1000.0):
            raise SpecError(f"cfg_scale={self.cfg_scale} is out of range; allowed: 0..1000 (or null for the method default)")
        if self.learning_rate is not None and not (0.0 < float(self.learning_rate) <= 10.0):
            raise SpecError(f"learning_rate={self.learning_rate} is out of range; allowed: (0, 10]")
        _int_range("texture_size", self.texture_size, 64, MAX_TEXTURE_SIZE)
        if not _is_pow2(self.texture_size):
            raise SpecError(
                f"texture_size={self.texture_size} is not a power of two; allowed: 64, 128, 256, 512, 1024, 2048, 4096, 8192"
            )
        if self.render_size is not None:
            _int_range("render_size", self.render_size, 16, 4096)
        if self.views_per_step is not None:
            _int_range("views_per_step", self.views_per_step, 1, 64)
        _int_range("seed", self.seed, 0, 2**63 - 1)
        _int_range("checkpoint_every", self.checkpoint_every, 1, 1_000_000)
        _int_range("preview_every", self.preview_every, 1, 1_000_000)
        if self.device not in DEVICES:
            raise SpecError(f"device={self.device!r} is not allowed; allowed: {', '.join(DEVICES)}")
        if self.backend not in BACKENDS:
            raise SpecError(f"backend={self.backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise SpecError("model is empty; allowed: auto, embedded, a hub id, a diffusers folder or a .safetensors file")

    # -- derived values -------------------------------------------------------------
    @property
    def is_edit(self) -> bool:
        return self.edit_source_prompt is not None

    def resolve(self, preferred_views: ViewMode = ViewMode.ORBIT, preferred_render_size: int = 512) -> "ResolvedJob":
        """Every setting this job runs with: the recipe's values under the job's overrides,
        and the prior's view and render-size choices for ``auto`` / ``None`` fields."""
        recipe, values = recipe_values(self.recipe, preferred_views)
        over = {k: getattr(self, k) for k in ("cfg_scale", "source_modifier", "target_modifier", "learning_rate")
                if getattr(self, k) is not None}
        if self.method is GuidanceMethod.NFSD:
            over.setdefault("cfg_scale", default_cfg(GuidanceMethod.NFSD))  # Katzir et al.'s, not the recipe's
        values = dataclasses.replace(values, **{k: float(v) if k in ("cfg_scale", "learning_rate") else v
                                                for k, v in over.items()})
        stage_two = (self.stage_two_start if self.stage_two_start is not None
                     else int(round(values.stage_two_fraction * self.steps)))
        return ResolvedJob(self, recipe, values, stage_two,
                           preferred_views if self.views is ViewMode.AUTO else self.views,
                           self.render_size or int(preferred_render_size))

    def replace(self, **changes: Any) -> "TextureJob":
        return dataclasses.replace(self, **changes)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["recipe"] = self.recipe.value
        d["views"] = self.views.value
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

    def guidance_config(self) -> GuidanceConfig:
        """The guidance settings (the only place job fields become a ``GuidanceConfig``)."""
        v, job = self.values, self.job
        anneal = None if v.anneal_fraction is None else int(round(v.anneal_fraction * job.steps))
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
                "views": self.views.value, "render_size": self.render_size}


def _int_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{name}={value!r} must be an integer in {lo}..{hi}")
    if not (lo <= value <= hi):
        raise SpecError(f"{name}={value} is out of range; allowed: {lo}..{hi}")
