"""texbridge: paint UV textures from a text prompt (Blender extension, Blender 4.2+).

Talks to the local texbridge engine over HTTP (``client``); uses only Blender's
Python, the standard library and Blender's bundled numpy.

Lifecycle: ``register`` adds the classes, properties and a persistent timer that
runs ``jobs.timer_pump``; ``unregister`` (disabling the add-on), interpreter exit
(``atexit``) and opening another .blend (``load_pre``) cancel running jobs on the
engine and join the worker threads.
"""

from __future__ import annotations

import atexit

import bpy

from . import client, connection, jobs, materials, mesh_export, operators, panel, prefs, props

__all__ = ["client", "connection", "jobs", "materials", "mesh_export", "operators", "panel", "prefs", "props"]

_CLASSES = (*prefs.CLASSES, *operators.CLASSES, *panel.CLASSES)


def _atexit() -> None:
    try:
        jobs.shutdown(cancel_running=True, join_timeout=3.0)
    except Exception:
        pass


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    """Another .blend is opening: its objects are not the jobs' objects; stop and cancel them."""
    try:
        jobs.shutdown(cancel_running=True, join_timeout=3.0)
    except Exception:
        pass


def register() -> None:
    props.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    if not bpy.app.timers.is_registered(jobs.timer_pump):
        bpy.app.timers.register(jobs.timer_pump, first_interval=0.5, persistent=True)
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)
    atexit.register(_atexit)


def unregister() -> None:
    atexit.unregister(_atexit)
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if bpy.app.timers.is_registered(jobs.timer_pump):
        bpy.app.timers.unregister(jobs.timer_pump)
    jobs.shutdown(cancel_running=True, join_timeout=5.0)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
