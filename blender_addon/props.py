"""Scene settings (the panel's fields) and per-object job state (for Refine).

``spec_from_settings`` turns the panel's settings into the engine's ``TextureJob``
JSON (engine/job.py, schema_version 1); the add-on never imports the engine, so the
field names and choices are repeated here, the server validates them, and
``tests/addon/test_spec_drift.py`` fails when they drift from the engine's.
Settings left at "auto" / 0 / empty / not custom are not sent, so the engine's recipe and the
model's view choices apply.
"""

from __future__ import annotations

import json
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

SCHEMA_VERSION = 1
#: preset -> steps. "Best" is the paper's 1000 steps. Render size stays the model's choice.
PRESETS: dict[str, int] = {
    "FAST": 300,
    "BALANCED": 600,
    "BEST": 1000,
}

METHOD_ITEMS = [
    ("bridge", "Bridge", "Calibrated score distillation (SDS warm-up, then the source->target bridge). The paper's method"),
    ("sds", "SDS", "Plain score distillation sampling"),
    ("nfsd", "NFSD", "Noise-free score distillation"),
]
#: engine.guidance.recipe.Recipe
RECIPE_ITEMS = [
    ("auto", "Auto", "The recipe measured best for the model in use"),
    ("paper-2d", "Paper 2D", "The SDS-Bridge authors' 2D recipe: CFG 40, stage 2 = w(t) s (tgt - src) from 50%"),
    ("paper-3d", "Paper 3D", "The authors' threestudio recipe: CFG 100, t_max annealed at 20%, stage 2 = tgt - src from 80%"),
    ("embedded", "Embedded", "Measured for the embedded model: Paper 2D with CFG 7.5, 2 views a step for 500 steps, learning rate 0.1 decaying to 0.03"),
]
#: engine.cameras.ViewMode
VIEWS_ITEMS = [
    ("auto", "Auto", "The model's choice (close-ups for the embedded model, whole-object orbits for Stable Diffusion)"),
    ("orbit", "Orbit", "Whole-object views around the mesh"),
    ("closeup", "Close-up", "Views where the surface fills the frame"),
]
#: engine.raster.control_images.ControlKind
CONTROL_ITEMS = [
    ("depth", "Depth", "The ControlNet sees each view's depth (near = bright); for depth ControlNets"),
    ("normal", "Normal", "The ControlNet sees each view's surface normals (NormalBae colours); for normal ControlNets"),
]
#: engine.priors.memory.MemoryMode
MEMORY_ITEMS = [
    ("auto", "Auto", "Low when the GPU has little free memory (under about 14 GB, an estimate), else full"),
    ("full", "Full", "No memory savings: fastest"),
    ("low", "Low", "Attention/VAE slicing, checkpointed encoder, text encoder on the CPU, 1 view per step (for 8 GB cards)"),
]
#: engine.priors.tiny_encoder.EncoderKind
ENCODER_ITEMS = [
    ("full", "Full", "The model's own VAE encoder"),
    ("tiny", "Tiny", "TAESD's small encoder: faster steps, less memory (Stable Diffusion models only)"),
]
PRESET_ITEMS = [
    ("FAST", "Fast", "300 steps"),
    ("BALANCED", "Balanced", "600 steps"),
    ("BEST", "Best", "1000 steps (the paper's)"),
]
TEXTURE_SIZE_ITEMS = [(str(s), f"{s} px", f"{s} x {s} texture") for s in (64, 128, 256, 512, 1024, 2048, 4096)]


def _apply_preset(self: "TexbridgeSettings", _context: Any) -> None:
    self.steps = PRESETS[self.preset]


class TexbridgeSettings(bpy.types.PropertyGroup):
    """The sidebar's job settings (stored per scene)."""

    prompt: StringProperty(name="Prompt", description="What the texture should depict", default="")
    method: EnumProperty(name="Method", items=METHOD_ITEMS, default="bridge")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="BALANCED", update=_apply_preset,
                         description="Sets steps and render size (editable under Advanced)")
    steps: IntProperty(name="Steps", default=600, min=1, max=100000)
    use_custom_render_size: BoolProperty(name="Custom render size", default=False,
                                         description="Off: the model's choice (512 for SD, 64 for the embedded model)")
    render_size: IntProperty(name="Render size", default=512, min=16, max=4096, subtype="PIXEL",
                             description="Rendered view side in pixels")
    recipe: EnumProperty(name="Recipe", items=RECIPE_ITEMS, default="auto",
                         description="Optimization preset (CFG, stage switch, t annealing, learning rate)")
    views: EnumProperty(name="Views", items=VIEWS_ITEMS, default="auto", description="Which cameras the optimization renders")
    texture_size: EnumProperty(name="Texture size", items=TEXTURE_SIZE_ITEMS, default="1024")
    seed: IntProperty(name="Seed", default=0, min=0)
    show_advanced: BoolProperty(name="Advanced", default=False)
    use_custom_cfg: BoolProperty(name="Custom CFG", default=False,
                                 description="Off: the recipe's guidance scale (paper-2d: 40, paper-3d: 100, embedded: 7.5; NFSD 7.5)")
    cfg_scale: FloatProperty(name="CFG", default=40.0, min=0.0, max=1000.0)
    stage_two_start: IntProperty(name="Stage switch", default=0, min=0,
                                 description="Step where Bridge leaves its SDS warm-up; 0 = the recipe's (paper-2d: half the steps)")
    source_modifier: StringProperty(name="Source modifier", default="",
                                    description="Bridge source suffix; empty = the recipe's (the paper's calibrated one)")
    target_modifier: StringProperty(name="Target modifier", default="",
                                    description="Bridge target suffix; empty = the recipe's")
    model: StringProperty(name="Model", default="auto", description="auto, or a model the engine was started with")
    follow_geometry: BoolProperty(name="Follow geometry", default=False,
                                  description="Condition the model on the mesh's depth or normals with a ControlNet, "
                                              "so the painting follows the shape (Stable Diffusion models only)")
    control: EnumProperty(name="Geometry", items=CONTROL_ITEMS, default="depth",
                          description="What the ControlNet sees; must match the ControlNet's kind")
    control_scale: FloatProperty(name="Strength", default=1.0, min=0.0, max=10.0, soft_max=2.0,
                                 description="How strongly the geometry steers the texture (0 = not at all)")
    controlnet_model: StringProperty(
        name="ControlNet", default="",
        description="Hub id or path of a ControlNet trained for the model in use "
                    "(SD 2.1-base: thibaud/controlnet-sd21-depth-diffusers; SD 1.5 ControlNets do not fit)")
    memory: EnumProperty(name="Memory", items=MEMORY_ITEMS, default="auto",
                         description="GPU memory use of the engine for this job")
    encoder: EnumProperty(name="Encoder", items=ENCODER_ITEMS, default="full",
                          description="Image encoder on the gradient path")
    tiny_encoder: StringProperty(name="Tiny encoder", default="madebyollin/taesd",
                                 description="Hub id or path of the TAESD weights used by the tiny encoder")
    preview_every: IntProperty(name="Preview every", default=10, min=1, max=1_000_000, description="Steps between live previews")
    refine_prompt: StringProperty(name="Edit", description="How to change the current texture", default="")
    refine_selected_only: BoolProperty(name="Selected faces only", default=False,
                                       description="Refine only the faces selected in Edit Mode")


class TexbridgeObjectState(bpy.types.PropertyGroup):
    """What the last finished job did to this object (saved in the .blend; used by Refine)."""

    spec_json: StringProperty(name="Job spec", default="", description="The TextureJob JSON of the last successful job")
    job_id: StringProperty(name="Job id", default="")
    image_name: StringProperty(name="Image", default="")
    texture_path: StringProperty(name="Texture file", default="", subtype="FILE_PATH")


def spec_from_settings(s: TexbridgeSettings, prompt: str | None = None) -> dict[str, Any]:
    """The ``TextureJob`` JSON dict for these settings (``mesh`` is filled by the server)."""
    prompt = (s.prompt if prompt is None else prompt).strip()
    spec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "prompt": prompt,
        "method": s.method,
        "recipe": s.recipe,
        "views": s.views,
        "steps": int(s.steps),
        "texture_size": int(s.texture_size),
        "seed": int(s.seed),
        "model": s.model.strip() or "auto",
        "preview_every": int(s.preview_every),
    }
    if s.use_custom_render_size:
        spec["render_size"] = int(s.render_size)
    for name in ("source_modifier", "target_modifier"):
        if getattr(s, name).strip():
            spec[name] = getattr(s, name)
    if s.use_custom_cfg:
        spec["cfg_scale"] = float(s.cfg_scale)
    if s.stage_two_start > 0:
        spec["stage_two_start"] = min(int(s.stage_two_start), int(s.steps))
    if s.memory != "auto":
        spec["memory"] = s.memory
    if s.encoder == "tiny":
        spec["encoder"] = "tiny"
        if s.tiny_encoder.strip():
            spec["tiny_encoder"] = s.tiny_encoder.strip()
    if s.follow_geometry and s.controlnet_model.strip():
        spec["controlnet"] = s.controlnet_model.strip()
        spec["control"] = s.control
        spec["control_scale"] = round(float(s.control_scale), 6)
    return spec


def refine_spec(stored_spec_json: str, edit_prompt: str) -> dict[str, Any]:
    """The spec for refining a finished job: same settings, src = old prompt, tgt = the edit."""
    spec = json.loads(stored_spec_json)
    spec = {k: v for k, v in spec.items() if k not in ("mesh", "init_texture")}
    spec["edit_source_prompt"] = spec.get("prompt", "")
    spec["prompt"] = edit_prompt.strip()
    spec.pop("stage_two_start", None)  # editing runs the bridge from step 0
    spec["schema_version"] = SCHEMA_VERSION
    return spec


CLASSES = (TexbridgeSettings, TexbridgeObjectState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.texbridge = PointerProperty(type=TexbridgeSettings)
    bpy.types.Object.texbridge = PointerProperty(type=TexbridgeObjectState)


def unregister() -> None:
    for owner in (bpy.types.Object, bpy.types.Scene):
        if hasattr(owner, "texbridge"):
            del owner.texbridge
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
