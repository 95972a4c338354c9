"""The 3D View sidebar panel (tab "texbridge") and the status it shows.

``compute_status`` is a plain function (tests call it): it says whether Generate can
run and, if not, why, with the operator that fixes it. It reads only cached engine
state, so drawing never waits on the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from . import client, connection, jobs


@dataclass(frozen=True)
class Status:
    """What the status box shows.

    Fields:
        can_generate: whether Generate is enabled.
        level: ``INFO`` | ``WARNING`` | ``ERROR``.
        text: one line: the situation and the fix.
        fix_op / fix_text: operator id and label of the button that fixes it ('' = none).
    """

    can_generate: bool
    level: str
    text: str
    fix_op: str = ""
    fix_text: str = ""


PROMPT_MISSING = "Type a prompt describing the texture"


def compute_status(context: bpy.types.Context) -> Status:
    obj = context.active_object
    if obj is None:
        return Status(False, "ERROR", "No mesh selected: select a mesh object to texture")
    if obj.type != "MESH":
        return Status(False, "ERROR", f"No mesh selected: {obj.name!r} is a {obj.type.lower()}; select a mesh object")
    rec = jobs.running_job_for_object(obj.name)
    if rec is not None:
        return Status(False, "INFO", f"Generating on {obj.name!r}: {_progress_text(rec)}", "texbridge.cancel", "Cancel")
    health = connection.health_state()
    if health.kind == "down":
        return Status(False, "ERROR", f"Engine not running: {health.message}", "texbridge.start_engine", "Start engine")
    if health.kind == "auth":
        return Status(False, "ERROR", f"Engine refused the token: {health.message}", "texbridge.reload_token", "Re-read token")
    if health.kind == "error":
        return Status(False, "ERROR", health.message, "texbridge.refresh_status", "Check again")
    if health.kind == "unknown":
        return Status(False, "INFO", "Checking the engine...", "texbridge.refresh_status", "Check now")
    settings = context.scene.texbridge
    if not settings.prompt.strip():
        return Status(False, "INFO", PROMPT_MISSING)
    if jobs.last_error:
        return Status(True, "ERROR", f"Last error: {jobs.last_error}", "texbridge.clear_error", "Dismiss")
    if health.kind == "busy":
        return Status(True, "WARNING", f"Engine busy: {health.message}")
    if not obj.data.uv_layers:
        return Status(True, "INFO", f"{obj.name!r} has no UV map: Generate will offer Smart UV Project",
                      "texbridge.smart_uv", "Unwrap now")
    return Status(True, "INFO", f"Ready: {health.message}")


def _progress_text(rec: jobs.JobRecord) -> str:
    if rec.state == client.QUEUED and not rec.step:
        return "queued on the engine"
    eta = f", ETA {_fmt_eta(rec.eta_s)}" if rec.eta_s else ""
    stage = _stage_label(rec)
    return f"{stage + ', ' if stage else ''}step {rec.step}/{rec.total_steps}{eta}"


def _stage_label(rec: jobs.JobRecord) -> str:
    """Bridge runs an SDS warm-up (stage 1) then the calibrated bridge (stage 2)."""
    if not rec.stage:
        return ""
    if rec.spec.get("method", "bridge") == "bridge" and not rec.spec.get("edit_source_prompt"):
        return {1: "stage 1/2 warm-up", 2: "stage 2/2 bridge"}.get(rec.stage, f"stage {rec.stage}")
    return f"stage {rec.stage}"


def _fmt_eta(s: float) -> str:
    s = int(round(float(s)))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class VIEW3D_PT_texbridge(bpy.types.Panel):
    bl_label = "texbridge"
    bl_idname = "VIEW3D_PT_texbridge"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "texbridge"

    def draw(self, context):
        draw_panel(self.layout, context)


def draw_panel(layout, context) -> Status:
    """Draw the panel into ``layout`` (any object with UILayout's methods); returns the status."""
    s = context.scene.texbridge
    status = compute_status(context)
    layout.prop(s, "prompt", text="")
    layout.row().prop(s, "method", expand=True)
    layout.row().prop(s, "preset", expand=True)
    col = layout.column(align=True)
    col.prop(s, "texture_size")
    col.prop(s, "seed")
    layout.prop(s, "show_advanced", icon="TRIA_DOWN" if s.show_advanced else "TRIA_RIGHT", emboss=False)
    if s.show_advanced:
        box = layout.box()
        col = box.column(align=True)
        col.prop(s, "recipe")
        col.prop(s, "views")
        col.prop(s, "steps")
        col.prop(s, "preview_every")
        row = box.row(align=True)
        row.prop(s, "use_custom_render_size")
        sub = row.row()
        sub.enabled = s.use_custom_render_size
        sub.prop(s, "render_size")
        row = box.row(align=True)
        row.prop(s, "use_custom_cfg")
        sub = row.row()
        sub.enabled = s.use_custom_cfg
        sub.prop(s, "cfg_scale")
        box.prop(s, "stage_two_start")
        box.prop(s, "source_modifier")
        box.prop(s, "target_modifier")
        box.prop(s, "model")
        box.prop(s, "memory")
        row = box.row(align=True)
        row.prop(s, "encoder", expand=True)
        sub = row.row()
        sub.enabled = s.encoder == "tiny"
        sub.prop(s, "tiny_encoder", text="")
        box.prop(s, "follow_geometry")
        col = box.column(align=True)
        col.enabled = s.follow_geometry
        col.row().prop(s, "control", expand=True)
        col.prop(s, "control_scale")
        col.prop(s, "controlnet_model")
        if s.follow_geometry and not s.controlnet_model.strip():
            box.label(text="Follow geometry: set a ControlNet model trained for the model in use", icon="INFO")

    box = layout.box()
    icon = {"INFO": "INFO", "WARNING": "ERROR", "ERROR": "CANCEL"}[status.level]
    box.label(text=status.text, icon=icon)
    if status.fix_op and status.fix_op != "texbridge.cancel":
        box.operator(status.fix_op, text=status.fix_text)

    obj = context.active_object
    rec = jobs.job_for_object(obj.name) if obj is not None else None
    row = layout.row(align=True)
    sub = row.row(align=True)
    sub.enabled = status.can_generate
    sub.operator("texbridge.generate", icon="TEXTURE")
    if rec is not None and rec.active:
        row.operator("texbridge.cancel", icon="CANCEL")
        text = _progress_text(rec)
        if hasattr(layout, "progress"):
            layout.progress(factor=rec.progress, type="BAR", text=text)
        else:
            layout.label(text=text)
    elif rec is not None:
        layout.label(text=f"Last job: {rec.state}" + (f" ({rec.error})" if rec.error else ""))

    if obj is not None and getattr(obj, "texbridge", None) is not None and obj.texbridge.spec_json:
        box = layout.box()
        box.label(text="Refine", icon="BRUSH_DATA")
        box.prop(s, "refine_prompt", text="")
        box.prop(s, "refine_selected_only")
        r = box.row()
        ready = status.can_generate or status.text == PROMPT_MISSING
        r.enabled = ready and bool(s.refine_prompt.strip())
        r.operator("texbridge.refine", icon="MODIFIER")
    return status


CLASSES = (VIEW3D_PT_texbridge,)
