"""``TextureJob``: the one job spec shared by the CLI, the server and the add-on.

It is validated on construction (``SpecError`` lists what is allowed) and has a
JSON form with a schema version (``to_json`` / ``from_json``). The server and
the add-on send exactly this JSON; pydantic is used only at the HTTP edge.

Defaults follow the paper's 2D recipe (McAllister et al., NeurIPS 2024, SDS-Bridge):
SD 2.1-base, CFG 40, AdamW lr 0.01, 1000 steps, stage switch at 500.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError
from engine.guidance.method import GuidanceMethod

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
        steps: optimization steps (paper: 1000).
        stage_two_start: step at which Bridge switches from SDS warm-up to the calibrated
            bridge; ``None`` means ``steps // 2`` (paper: 500 of 1000). Ignored by sds/nfsd.
        cfg_scale: classifier-free guidance scale; ``None`` = the method's default
            (paper: 40 for the 2D recipe; see ``engine.guidance``).
        source_modifier / target_modifier: the bridge's calibrated prompt suffixes
            (paper's defaults).
        edit_source_prompt: refine mode. A description of the current texture; the bridge
            then runs from step 0 with src = this and tgt = ``prompt`` (the edit).
        init_texture: refine mode. Path of a PNG to start from (else mid-gray).
        learning_rate: AdamW learning rate (paper: 0.01).
        texture_size: texture side in texels, a power of two, 64..8192.
        render_size: side of the rendered views in pixels (resized to the prior's resolution).
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
    steps: int = 1000
    stage_two_start: int | None = None
    cfg_scale: float | None = None
    source_modifier: str = PAPER_SOURCE_MODIFIER
    target_modifier: str = PAPER_TARGET_MODIFIER
    edit_source_prompt: str | None = None
    init_texture: str | None = None
    learning_rate: float = 0.01
    texture_size: int = 1024
    render_size: int = 512
    views_per_step: int | None = None
    seed: int = 0
    model: str = "auto"
    device: str = "auto"
    backend: str = "auto"
    view_dependent_prompts: bool = True
    checkpoint_every: int = 50
    preview_every: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.method, str) and not isinstance(self.method, GuidanceMethod):
            try:
                object.__setattr__(self, "method", GuidanceMethod(self.method.lower()))
            except ValueError:
                allowed = ", ".join(m.value for m in GuidanceMethod)
                raise SpecError(f"unknown method {self.method!r}; allowed: {allowed}") from None
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise SpecError("prompt is empty; give a text prompt such as --prompt 'red brick wall'")
        _int_range("steps", self.steps, 1, 1_000_000)
        if self.stage_two_start is not None:
            _int_range("stage_two_start", self.stage_two_start, 0, self.steps)
        if self.cfg_scale is not None and not (0.0 <= float(self.cfg_scale) <= 1000.0):
            raise SpecError(f"cfg_scale={self.cfg_scale} is out of range; allowed: 0..1000 (or null for the method default)")
        if not (0.0 < float(self.learning_rate) <= 10.0):
            raise SpecError(f"learning_rate={self.learning_rate} is out of range; allowed: (0, 10]")
        _int_range("texture_size", self.texture_size, 64, MAX_TEXTURE_SIZE)
        if not _is_pow2(self.texture_size):
            raise SpecError(
                f"texture_size={self.texture_size} is not a power of two; allowed: 64, 128, 256, 512, 1024, 2048, 4096, 8192"
            )
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
    def stage_two_step(self) -> int:
        """The step at which Bridge's stage 2 begins (``steps // 2`` unless set)."""
        return self.steps // 2 if self.stage_two_start is None else self.stage_two_start

    @property
    def is_edit(self) -> bool:
        return self.edit_source_prompt is not None

    def replace(self, **changes: Any) -> "TextureJob":
        return dataclasses.replace(self, **changes)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
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


def _int_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{name}={value!r} must be an integer in {lo}..{hi}")
    if not (lo <= value <= hi):
        raise SpecError(f"{name}={value} is out of range; allowed: {lo}..{hi}")
