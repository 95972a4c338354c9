"""HTTP client for the texbridge engine (stdlib ``urllib`` only; see docs/api.md).

No bpy here: this module runs in worker threads as well as on the main thread.

Errors are ``EngineError`` subclasses whose message is one line a user can act on:
``EngineDown`` (nothing listening / no discovery file), ``EngineAuthError`` (wrong
token), ``EngineBusy`` (503) and ``EngineRequestError`` (any other 4xx/5xx).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

#: The engine's job states, in life-cycle order: the words of ``engine.jobstate.JobState``
#: (the add-on never imports the engine; tests/addon/test_spec_drift.py checks they match).
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = JOB_STATES
#: The event types (and states) that end a job.
TERMINAL_EVENTS = (SUCCEEDED, FAILED, CANCELLED)


#: How the panel names a setting an engine error's fix refers to. The engine sends ``field``
#: and a ``fix`` text with ``{field}`` in it (server/errors.py); the terminal would name a
#: CLI flag there, the add-on names its own field, button or preference instead.
FIX_FIELD_NAMES = {
    "prompt": "the Prompt field",
    "model": "the Model field (and the engine's models: Preferences > Engine start command)",
    "device": "the engine's device (Preferences > Engine start command)",
    "backend": "the engine's rasterizer (Preferences > Engine start command)",
    "max_triangles": "the engine's triangle limit (Preferences > Engine start command)",
    "max_vertices": "the engine's vertex limit (Preferences > Engine start command)",
    "resume": "resuming",
    "steps": "Steps", "texture_size": "Texture size", "render_size": "Render size", "seed": "Seed",
    "recipe": "Recipe", "views": "Views", "method": "Method", "cfg_scale": "CFG", "stage_two_start": "Stage switch",
    "preview_every": "Preview every", "source_modifier": "Source modifier", "target_modifier": "Target modifier",
    "controlnet": "the ControlNet field (Follow geometry)", "control": "Geometry", "control_scale": "Strength",
    "memory": "Memory", "encoder": "Encoder", "tiny_encoder": "Tiny encoder",
}


def describe_error(body: dict[str, Any]) -> str:
    """An engine error body or failed event (``error``, and for engine errors ``problem``,
    ``field``, ``fix``) as the panel shows it: the fix worded with the panel's names."""
    problem, fix, field_name = body.get("problem"), body.get("fix"), body.get("field")
    if not (isinstance(problem, str) and isinstance(fix, str) and isinstance(field_name, str)):
        return str(body.get("error") or "")
    name = FIX_FIELD_NAMES.get(field_name, field_name.replace("_", " ").capitalize())
    return f"{problem}; {fix.replace('{field}', name)}"


class EngineError(Exception):
    """A problem talking to the engine; ``str(err)`` is a one-line message with the fix."""


class EngineDown(EngineError):
    """Nothing answers at the engine URL (or no discovery file names one)."""


class EngineAuthError(EngineError):
    """The engine rejected the token (401) or the request origin (403)."""


class EngineBusy(EngineError):
    """The engine answered 503 (busy or temporarily unavailable)."""


class EngineRequestError(EngineError):
    """The engine answered another error status; ``status`` holds it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- discovery file ---------------------------------------------------------------------
def config_dir() -> Path:
    """The per-user config folder the engine writes ``texbridge/engine.json`` into."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def discovery_paths() -> list[Path]:
    """Where the discovery file may be, most specific first."""
    runtime = os.environ.get("TEXBRIDGE_RUNTIME_DIR")
    if runtime:
        return [Path(runtime) / "engine.json", Path(runtime) / "texbridge" / "engine.json"]
    return [config_dir() / "texbridge" / "engine.json"]


def read_discovery() -> dict[str, Any] | None:
    """The engine's discovery file ``{url, port, pid, token, version}``, or None if absent/unreadable."""
    for path in discovery_paths():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("url"):
            data["_path"] = str(path)
            return data
    return None


# -- multipart ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FilePart:
    """One file field of a multipart body."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def encode_multipart(fields: dict[str, str | FilePart]) -> tuple[bytes, str]:
    """Encode ``fields`` as ``multipart/form-data``; returns (body, content-type header)."""
    boundary = "texbridge-" + uuid.uuid4().hex
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(f"--{boundary}\r\n".encode())
        if isinstance(value, FilePart):
            out.append(
                f'Content-Disposition: form-data; name="{name}"; filename="{value.filename}"\r\n'
                f"Content-Type: {value.content_type}\r\n\r\n".encode()
            )
            out.append(value.content)
        else:
            out.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.append(str(value).encode("utf-8"))
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


# -- server-sent events --------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One server-sent event: ``id`` (int, per job from 1), ``type`` and decoded ``data``."""

    id: int
    type: str
    data: dict[str, Any]


def parse_sse_lines(lines: Iterator[bytes]) -> Iterator[Event]:
    """Turn raw SSE lines into ``Event``s (comments and unknown fields are ignored)."""
    ev_id, ev_type, data_lines = 0, "message", []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data_lines or ev_type != "message":
                text = "\n".join(data_lines)
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = {"raw": text}
                yield Event(ev_id, ev_type, data if isinstance(data, dict) else {"value": data})
            ev_type, data_lines = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            try:
                ev_id = int(value)
            except ValueError:
                pass
        elif field == "event":
            ev_type = value
        elif field == "data":
            data_lines.append(value)


# -- client ----------------------------------------------------------------------------------
class EngineClient:
    """Talks to one engine at ``url`` with ``token``. Thread-safe (no shared mutable state)."""

    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_settings(cls, url: str = "", token: str = "", timeout: float = 15.0) -> "EngineClient":
        """Build a client from explicit settings, filling blanks from the discovery file."""
        disc = read_discovery() if not (url and token) else None
        url = url or (disc or {}).get("url", "")
        token = token or (disc or {}).get("token", "")
        if not url:
            where = " or ".join(str(p) for p in discovery_paths())
            raise EngineDown(
                f"engine not running: no discovery file at {where}; start it (Start engine, or `texbridge serve`)"
            )
        return cls(url, token, timeout)

    # -- plumbing -------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
              timeout: float | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineDown(
                f"engine not reachable at {self.url} ({reason}); start it (Start engine) or fix the URL in Preferences"
            ) from None

    def _http_error(self, exc: urllib.error.HTTPError) -> EngineError:
        try:
            detail = describe_error(json.loads(exc.read().decode("utf-8", "replace")))
        except Exception:
            detail = ""
        detail = detail or exc.reason or "error"
        if exc.code == 401:
            return EngineAuthError(
                f"wrong token: the engine at {self.url} rejected it; use Re-read token (engine discovery file) or fix it in Preferences"
            )
        if exc.code == 403:
            return EngineAuthError(f"the engine refused the request ({detail})")
        if exc.code == 503:
            return EngineBusy(f"engine busy: {detail}")
        return EngineRequestError(f"engine error {exc.code}: {detail}", exc.code)

    def _json(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
              timeout: float | None = None) -> Any:
        with self._open(method, path, body, headers, timeout) as resp:
            raw = resp.read()
        return json.loads(raw.decode("utf-8")) if raw else {}

    # -- routes ---------------------------------------------------------------------------
    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        return self._json("GET", "/v1/health", timeout=timeout)

    def submit(self, spec: dict[str, Any], mesh_npz: bytes, init_texture_png: bytes | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /v1/jobs; returns the ``Job`` dict."""
        fields: dict[str, str | FilePart] = {"spec": json.dumps(spec), "mesh": FilePart("mesh.npz", mesh_npz)}
        if init_texture_png is not None:
            fields["init_texture"] = FilePart("init.png", init_texture_png, "image/png")
        body, ctype = encode_multipart(fields)
        headers = {"Content-Type": ctype}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._json("POST", "/v1/jobs", body, headers, timeout=max(self.timeout, 60.0))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/jobs").get("jobs", [])

    def cancel(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel", b"", timeout=timeout)

    def delete(self, job_id: str) -> None:
        self._json("DELETE", f"/v1/jobs/{job_id}")

    def unload(self) -> dict[str, Any]:
        return self._json("POST", "/v1/unload", b"", timeout=max(self.timeout, 60.0))

    def texture_rgba8(self, job_id: str, version: int | None = None) -> tuple[int, int, int, bytes]:
        """Raw texture bytes (row 0 = top): returns (width, height, version, bytes)."""
        q = "format=rgba8" + (f"&version={version}" if version is not None else "")
        with self._open("GET", f"/v1/jobs/{job_id}/texture?{q}", timeout=max(self.timeout, 60.0)) as resp:
            w = int(resp.headers.get("X-Texture-Width", "0"))
            h = int(resp.headers.get("X-Texture-Height", "0"))
            v = int(resp.headers.get("X-Texture-Version", str(version if version is not None else -1)))
            data = resp.read()
        if w <= 0 or h <= 0 or len(data) != w * h * 4:
            raise EngineRequestError(f"engine sent a malformed texture ({w}x{h}, {len(data)} bytes)", 502)
        return w, h, v, data

    def result(self, job_id: str, name: str) -> bytes:
        with self._open("GET", f"/v1/jobs/{job_id}/results/{name}", timeout=max(self.timeout, 60.0)) as resp:
            return resp.read()

    def events(self, job_id: str, last_event_id: int = 0, read_timeout: float = 2.0) -> Iterator[Event]:
        """One connection to the job's event stream (ends at a terminal event, EOF or read timeout)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = str(last_event_id)
        resp = self._open("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=read_timeout)
        try:
            yield from parse_sse_lines(iter(resp.readline, b""))
        except (socket.timeout, TimeoutError):
            return
        finally:
            resp.close()

    def follow_events(self, job_id: str, stop: threading.Event, last_event_id: int = 0,
                      read_timeout: float = 2.0, max_down_s: float = 30.0) -> Iterator[Event]:
        """Follow the job's events until a terminal one or ``stop`` is set.

        Reconnects with ``Last-Event-ID`` after EOF / read timeouts (read timeouts
        also let ``stop`` be noticed within ``read_timeout`` seconds). Raises
        ``EngineDown`` if the engine stays unreachable for ``max_down_s``.
        """
        down_since: float | None = None
        while not stop.is_set():
            got_any = False
            try:
                for ev in self.events(job_id, last_event_id, read_timeout):
                    down_since, got_any = None, True
                    if ev.id:
                        last_event_id = max(last_event_id, ev.id)
                    yield ev
                    if ev.type in TERMINAL_EVENTS or stop.is_set():
                        return
                down_since = None
                if not got_any:
                    stop.wait(0.2)  # a stream that closes at once must not become a busy loop
            except EngineDown:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since > max_down_s:
                    raise
                stop.wait(0.5)
