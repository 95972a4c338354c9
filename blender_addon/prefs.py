"""Add-on preferences: how to reach (and start) the engine.

Blank URL / token mean "read them from the engine's discovery file", which the
engine writes on start (docs/api.md), so a local engine needs no setup.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
from bpy.props import FloatProperty, StringProperty

DEFAULT_START_COMMAND = "texbridge serve --port 0"


@dataclass
class FallbackPrefs:
    """Stands in for the preferences when the package is registered without being
    enabled as an add-on (scripts, tests); same fields and defaults."""

    engine_url: str = ""
    token: str = ""
    start_command: str = DEFAULT_START_COMMAND
    request_timeout: float = 15.0


FALLBACK = FallbackPrefs()


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
        from . import connection

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


def get_prefs() -> TexbridgePreferences | FallbackPrefs:
    """The add-on's preferences, or ``FALLBACK`` when not enabled as an add-on."""
    addon = bpy.context.preferences.addons.get(__package__)
    prefs = getattr(addon, "preferences", None) if addon is not None else None
    return prefs if prefs is not None else FALLBACK


CLASSES = (TexbridgePreferences,)
