"""Add-on preferences: how to reach (and start) the engine.

Blank URL / token mean "read them from the engine's discovery file", which the
engine writes on start (docs/api.md), so a local engine needs no setup.
"""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, StringProperty

from . import connection
from .settings import DEFAULT_START_COMMAND, FALLBACK, FallbackPrefs, get_prefs

__all__ = ["CLASSES", "DEFAULT_START_COMMAND", "FALLBACK", "FallbackPrefs", "TexbridgePreferences", "get_prefs"]


class TexbridgePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_url: StringProperty(
        name="Engine URL", default="",
        description="e.g. http://127.0.0.1:8765. Blank: read it from the engine's discovery file",
    )
    token: StringProperty(
        name="Token", default="", subtype="PASSWORD",
        description="Engine token. Blank: read it from the engine's discovery file",
    )
    start_command: StringProperty(
        name="Engine start command", default=DEFAULT_START_COMMAND,
        description="Command that starts the engine (run by Start engine)",
    )
    request_timeout: FloatProperty(name="Request timeout (s)", default=15.0, min=1.0, max=600.0)

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "engine_url")
        col.prop(self, "token")
        disc = connection.discovery_summary()
        col.label(text=disc, icon="INFO")
        col.prop(self, "start_command")
        col.prop(self, "request_timeout")
        row = layout.row(align=True)
        row.operator("texbridge.start_engine", icon="PLAY")
        row.operator("texbridge.stop_engine", icon="CANCEL")
        row.operator("texbridge.unload_model", icon="TRASH")
        row.operator("texbridge.reload_token", icon="FILE_REFRESH")
        state = connection.health_state()
        layout.label(text=state.message, icon="CHECKMARK" if state.ok else "ERROR")


CLASSES = (TexbridgePreferences,)
