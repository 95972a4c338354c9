"""The engine as the add-on sees it: a client from the preferences, a cached health
state (never an HTTP call inside ``draw``), and starting / stopping the engine process.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import client as _client
from .settings import get_prefs

STALE_S = 3.0


@dataclass(frozen=True)
class HealthState:
    """The last health check.

    Fields:
        kind: ``unknown`` | ``ok`` | ``down`` | ``auth`` | ``busy`` | ``error``.
        message: one line for the panel (what is wrong and the fix).
        data: the health JSON when reachable.
        checked_at: ``time.monotonic()`` of the check (0 = never).
    """

    kind: str = "unknown"
    message: str = "engine status not checked yet"
    data: dict[str, Any] = field(default_factory=dict)
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "busy")


_state = HealthState()
_lock = threading.Lock()
_refresher: threading.Thread | None = None
_engine_proc: subprocess.Popen | None = None


def make_client(timeout: float | None = None) -> _client.EngineClient:
    """A client built from the preferences (blanks filled from the discovery file)."""
    p = get_prefs()
    return _client.EngineClient.from_settings(p.engine_url.strip(), p.token.strip(),
                                              timeout=timeout or float(p.request_timeout))


def check_health(timeout: float = 2.0) -> HealthState:
    """Ask the engine now (blocking) and return the state; never raises."""
    try:
        data = make_client().health(timeout=timeout)
    except _client.EngineAuthError as exc:
        return HealthState("auth", str(exc), {}, time.monotonic())
    except _client.EngineDown as exc:
        return HealthState("down", str(exc), {}, time.monotonic())
    except _client.EngineBusy as exc:
        return HealthState("busy", str(exc), {}, time.monotonic())
    except Exception as exc:  # any other failure must not reach Blender
        return HealthState("error", f"engine check failed: {exc}", {}, time.monotonic())
    model = data.get("loaded_model") or "no model loaded"
    running = data.get("running_job")
    queued = int(data.get("queue_length") or 0)
    if running:
        msg = f"engine busy: job {str(running)[:8]} running, {queued} queued (new jobs wait in line)"
        return HealthState("busy", msg, data, time.monotonic())
    return HealthState("ok", f"engine ready on {data.get('device', '?')} ({model})", data, time.monotonic())


def refresh_health(timeout: float = 2.0) -> HealthState:
    """Check now and cache the result (used by tests and operators)."""
    global _state
    st = check_health(timeout)
    with _lock:
        _state = st
    return st


def refresh_health_async() -> None:
    """Start a background check if the cached state is stale and none is running."""
    global _refresher
    with _lock:
        if _refresher is not None and _refresher.is_alive():
            return
        if time.monotonic() - _state.checked_at < STALE_S:
            return
        _refresher = threading.Thread(target=refresh_health, name="texbridge-health", daemon=True)
        _refresher.start()


def health_state() -> HealthState:
    with _lock:
        return _state


def set_health(state: HealthState) -> None:
    """Record a state learned elsewhere (e.g. a submit that found the engine down)."""
    global _state
    with _lock:
        _state = state


def discovery_summary() -> str:
    disc = _client.read_discovery()
    if not disc:
        return "no engine discovery file (engine not started)"
    return f"engine found: {disc.get('url')} (pid {disc.get('pid')}, version {disc.get('version')})"


# -- engine process ---------------------------------------------------------------------------
def start_engine(command: str | None = None) -> str:
    """Start the engine with the preference's command; returns a message. Never raises."""
    global _engine_proc
    cmd = (command or get_prefs().start_command).strip()
    if not cmd:
        return "no engine start command set; set one in the add-on preferences"
    if _engine_proc is not None and _engine_proc.poll() is None:
        return f"engine already started by Blender (pid {_engine_proc.pid})"
    try:
        _engine_proc = subprocess.Popen(shlex.split(cmd), stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, ValueError) as exc:
        return f"could not start the engine with {cmd!r} ({exc}); fix the start command in Preferences"
    set_health(HealthState("unknown", "engine starting...", {}, 0.0))
    return f"engine starting (pid {_engine_proc.pid})"


def stop_engine(timeout: float = 10.0) -> str:
    """Stop the engine Blender started, else the one the discovery file names. Never raises."""
    global _engine_proc
    if _engine_proc is not None and _engine_proc.poll() is None:
        _engine_proc.terminate()
        try:
            _engine_proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _engine_proc.kill()
            _engine_proc.wait(5)
        pid, _engine_proc = _engine_proc.pid, None
        msg = f"engine stopped (pid {pid})"
    else:
        disc = _client.read_discovery()
        pid = int((disc or {}).get("pid") or 0)
        if not pid:
            return "no running engine found to stop"
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as exc:
            return f"could not stop the engine (pid {pid}): {exc}"
        msg = f"engine asked to stop (pid {pid})"
    set_health(HealthState("down", "engine stopped; start it (Start engine)", {}, time.monotonic()))
    return msg


def unload_model() -> str:
    """Ask the engine to free its model and GPU memory. Never raises."""
    try:
        make_client().unload()
    except _client.EngineError as exc:
        return str(exc)
    return "model unloaded; GPU memory freed"
