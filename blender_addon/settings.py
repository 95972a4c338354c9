"""The add-on's settings as the rest of the add-on reads them: the preferences when the
add-on is enabled, else ``FALLBACK`` (scripts, tests).

Kept apart from ``prefs`` (the preferences' UI), which draws the engine's connection
state: ``connection`` reads settings from here, so connection and prefs no longer import
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

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


def get_prefs():
    """The add-on's preferences (``prefs.TexbridgePreferences``), or ``FALLBACK`` when not
    enabled as an add-on."""
    addon = bpy.context.preferences.addons.get(__package__)
    prefs = getattr(addon, "preferences", None) if addon is not None else None
    return prefs if prefs is not None else FALLBACK
