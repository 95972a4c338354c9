"""Operators: thin wrappers over ``jobs`` / ``connection`` / ``mesh_export``.

In background mode (``blender -b``, or the bpy module) Generate and Refine run
synchronously, pumping until the job ends, because timers never fire there.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty

from . import client as _client
from . import connection, jobs
from .mesh_export import MeshExportError, has_uv_map, smart_uv_project
from .props import refine_spec, spec_from_settings

USER_ERRORS = (_client.EngineError, MeshExportError, ValueError)


def _mesh_poll(context) -> bool:
    obj = context.active_object
    return obj is not None and obj.type == "MESH"


def _run(op: bpy.types.Operator, obj, spec, **kw) -> set[str]:
    """Submit, then (background mode) wait; reports instead of raising."""
    try:
        rec = jobs.submit(obj, spec, **kw)
    except USER_ERRORS as exc:
        jobs.set_error(str(exc))
        if isinstance(exc, _client.EngineDown):
            connection.refresh_health(timeout=1.0)
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    if not bpy.app.background:
        op.report({"INFO"}, f"texbridge job {rec.job_id[:8]} submitted")
        return {"FINISHED"}
    jobs.wait(rec)
    if rec.state != _client.SUCCEEDED:
        op.report({"ERROR"}, f"texbridge job {rec.state}: {rec.error}")
        return {"CANCELLED"}
    where = rec.texture_path or "packed into the .blend"
    op.report({"INFO"}, f"texbridge job succeeded; texture {where}")
    return {"FINISHED"}


class TEXBRIDGE_OT_generate(bpy.types.Operator):
    """Texture the active mesh from the prompt (the texture appears as the engine works)"""

    bl_idname = "texbridge.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}  # the new image/material are one undo step; pump re-creates them if undone

    unwrap: BoolProperty(name="Unwrap if needed", default=True,
                         description="Create a UV map with Smart UV Project if the mesh has none")

    @classmethod
    def poll(cls, context):
        return _mesh_poll(context)

    def invoke(self, context, event):
        obj = context.active_object
        if not has_uv_map(obj, context.evaluated_depsgraph_get()):
            return context.window_manager.invoke_confirm(
                self, event, title="No UV map",
                message=f"{obj.name!r} has no UV map. Create one with Smart UV Project and generate?",
                confirm_text="Unwrap and generate")
        return self.execute(context)

    def execute(self, context):
        s = context.scene.texbridge
        if not s.prompt.strip():
            self.report({"ERROR"}, "type a prompt describing the texture first")
            return {"CANCELLED"}
        obj = context.active_object
        if jobs.running_job_for_object(obj.name):
            self.report({"ERROR"}, f"a texbridge job is already running on {obj.name!r}; cancel it first")
            return {"CANCELLED"}
        return _run(self, obj, spec_from_settings(s), unwrap=self.unwrap or bpy.app.background)


class TEXBRIDGE_OT_refine(bpy.types.Operator):
    """Change the current texture with an edit prompt (optionally on the selected faces only)"""

    bl_idname = "texbridge.refine"
    bl_label = "Refine"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _mesh_poll(context) and bool(context.active_object.texbridge.spec_json)

    def execute(self, context):
        s = context.scene.texbridge
        obj = context.active_object
        if not s.refine_prompt.strip():
            self.report({"ERROR"}, "type an edit prompt (what to change) first")
            return {"CANCELLED"}
        if jobs.running_job_for_object(obj.name):
            self.report({"ERROR"}, f"a texbridge job is already running on {obj.name!r}; cancel it first")
            return {"CANCELLED"}
        spec = refine_spec(obj.texbridge.spec_json, s.refine_prompt)
        init = bpy.data.images.get(obj.texbridge.image_name)
        return _run(self, obj, spec, kind="refine", selected_only=s.refine_selected_only, init_image=init,
                    unwrap=False)


class TEXBRIDGE_OT_cancel(bpy.types.Operator):
    """Stop the active object's texbridge job on the engine"""

    bl_idname = "texbridge.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        obj = context.active_object
        rec = jobs.running_job_for_object(obj.name) if obj is not None else None
        if rec is None:
            self.report({"WARNING"}, "no texbridge job is running on the active object")
            return {"CANCELLED"}
        self.report({"INFO"}, jobs.cancel(rec))
        return {"FINISHED"}


class TEXBRIDGE_OT_smart_uv(bpy.types.Operator):
    """Give the active mesh a UV map with Smart UV Project"""

    bl_idname = "texbridge.smart_uv"
    bl_label = "Smart UV Project"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _mesh_poll(context)

    def execute(self, context):
        smart_uv_project(context.active_object)
        return {"FINISHED"}


class _MessageOp(bpy.types.Operator):
    """Base: run ``action()`` (returns a message), report it, refresh the engine state."""

    bl_options = {"INTERNAL"}

    def action(self) -> str:  # pragma: no cover - overridden
        return ""

    def execute(self, context):
        msg = self.action()
        if msg:
            self.report({"INFO"}, msg)
        return {"FINISHED"}


class TEXBRIDGE_OT_start_engine(_MessageOp):
    """Start the engine with the command set in the add-on preferences"""

    bl_idname = "texbridge.start_engine"
    bl_label = "Start engine"

    def action(self):
        return connection.start_engine()


class TEXBRIDGE_OT_stop_engine(_MessageOp):
    """Stop the engine process"""

    bl_idname = "texbridge.stop_engine"
    bl_label = "Stop engine"

    def action(self):
        jobs.shutdown(cancel_running=True, join_timeout=3.0)
        return connection.stop_engine()


class TEXBRIDGE_OT_unload_model(_MessageOp):
    """Free the engine's model and GPU memory now (it reloads on the next job)"""

    bl_idname = "texbridge.unload_model"
    bl_label = "Unload model"

    def action(self):
        return connection.unload_model()


class TEXBRIDGE_OT_reload_token(_MessageOp):
    """Forget the typed token and URL, read them again from the engine's discovery file"""

    bl_idname = "texbridge.reload_token"
    bl_label = "Re-read token"

    def action(self):
        from .prefs import get_prefs

        p = get_prefs()
        p.token = ""
        p.engine_url = ""
        return connection.refresh_health().message


class TEXBRIDGE_OT_refresh_status(_MessageOp):
    """Check the engine now"""

    bl_idname = "texbridge.refresh_status"
    bl_label = "Check engine"

    def action(self):
        return connection.refresh_health().message


class TEXBRIDGE_OT_clear_error(_MessageOp):
    """Dismiss the last error"""

    bl_idname = "texbridge.clear_error"
    bl_label = "Dismiss"

    def action(self):
        jobs.set_error("")
        return ""


CLASSES = (
    TEXBRIDGE_OT_generate, TEXBRIDGE_OT_refine, TEXBRIDGE_OT_cancel, TEXBRIDGE_OT_smart_uv,
    TEXBRIDGE_OT_start_engine, TEXBRIDGE_OT_stop_engine, TEXBRIDGE_OT_unload_model,
    TEXBRIDGE_OT_reload_token, TEXBRIDGE_OT_refresh_status, TEXBRIDGE_OT_clear_error,
)
