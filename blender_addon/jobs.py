"""Jobs: submit, follow in a worker thread, apply on the main thread.

Threading contract: a worker thread per job follows the engine's event stream and
fetches textures (HTTP + numpy only, never bpy) into the job's inbox; ``pump()``
runs on the main thread (a ``bpy.app.timers`` callback in the UI, called directly
in background mode and in tests) and is the only place that touches Blender data.
Records hold names, never ID references, and look objects up on every pump, so
undo (which rebuilds IDs) cannot leave a dangling reference.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np

from . import client as _client
from . import connection, materials
from .mesh_export import ExportOptions, export_arrays, has_uv_map, smart_uv_project, to_npz_bytes

ACTIVE_STATES = (_client.QUEUED, _client.RUNNING)


@dataclass
class JobRecord:
    """One job the add-on follows. Mutable; the worker writes only ``inbox`` / ``_pixels``."""

    job_id: str
    object_name: str
    image_name: str
    spec: dict[str, Any]
    client: _client.EngineClient
    uv_map: str = ""
    kind: str = "generate"
    state: str = _client.QUEUED  # one of client.JOB_STATES
    step: int = 0
    total_steps: int = 0
    stage: int = 0  # the engine's stage number (0 = not reported yet); the panel words it
    eta_s: float | None = None
    error: str = ""
    applied_version: int = -1
    applies: int = 0
    texture_path: str = ""
    created: float = field(default_factory=time.monotonic)
    inbox: deque = field(default_factory=deque)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    _pixels: tuple | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    # worker side
    def _put_pixels(self, version: int, w: int, h: int, px: np.ndarray) -> None:
        with self._lock:
            if self._pixels is None or version >= self._pixels[0]:
                self._pixels = (version, w, h, px)

    def _take_pixels(self) -> tuple | None:
        with self._lock:
            px, self._pixels = self._pixels, None
            return px


_JOBS: dict[str, JobRecord] = {}
last_error: str = ""


def all_jobs() -> list[JobRecord]:
    return list(_JOBS.values())


def job_for_object(name: str) -> JobRecord | None:
    """The newest job started on the object called ``name``."""
    recs = [r for r in _JOBS.values() if r.object_name == name]
    return max(recs, key=lambda r: r.created) if recs else None


def running_job_for_object(name: str) -> JobRecord | None:
    rec = job_for_object(name)
    return rec if rec is not None and rec.active else None


def set_error(msg: str) -> None:
    global last_error
    last_error = msg


# -- worker ----------------------------------------------------------------------------------
def _follow(rec: JobRecord) -> None:
    c = rec.client
    try:
        for ev in c.follow_events(rec.job_id, rec.stop):
            if ev.type == "preview":
                ver = ev.data.get("version")
                w, h, v, data = c.texture_rgba8(rec.job_id, ver)
                rec._put_pixels(v, w, h, materials.rgba8_to_pixels(data, w, h))
            elif ev.type == _client.SUCCEEDED:
                w, h, v, data = c.texture_rgba8(rec.job_id)
                rec._put_pixels(max(v, 1 << 30), w, h, materials.rgba8_to_pixels(data, w, h))
            rec.inbox.append((ev.type, ev.data))
            if ev.type in _client.TERMINAL_EVENTS:
                return
    except _client.EngineError as exc:
        rec.inbox.append(("error", {"error": str(exc)}))
    except Exception as exc:  # keep the thread from dying silently
        rec.inbox.append(("error", {"error": f"lost the job's updates: {type(exc).__name__}: {exc}"}))


def _start_worker(rec: JobRecord) -> None:
    rec.thread = threading.Thread(target=_follow, args=(rec,), name=f"texbridge-{rec.job_id[:8]}", daemon=True)
    rec.thread.start()


# -- submit --------------------------------------------------------------------------------------
def submit(obj: bpy.types.Object, spec: dict[str, Any], *, kind: str = "generate", selected_only: bool = False,
           init_image: bpy.types.Image | None = None, unwrap: bool = True) -> JobRecord:
    """Export ``obj``, submit ``spec`` and start following it. Raises EngineError / MeshExportError.

    If the mesh has no UV map and ``unwrap`` is set, Smart UV Project runs first.
    """
    if obj is None or obj.type != "MESH":
        from .mesh_export import MeshExportError

        raise MeshExportError("select a mesh object: texbridge textures meshes only")
    dg = bpy.context.evaluated_depsgraph_get()
    if not has_uv_map(obj, dg):
        if not unwrap:
            from .mesh_export import MeshExportError

            raise MeshExportError(f"{obj.name!r} has no UV map; unwrap it (Smart UV Project) and try again")
        smart_uv_project(obj)
        dg = bpy.context.evaluated_depsgraph_get()
    arrays = export_arrays(obj, dg, ExportOptions(selected_only=selected_only))
    init_png = materials.encode_png(init_image) if init_image is not None else None
    client = connection.make_client()
    job = client.submit(spec, to_npz_bytes(arrays), init_png, idempotency_key=uuid.uuid4().hex)

    size = int(spec.get("texture_size", 1024))
    img = materials.new_image(f"texbridge {obj.name} {job['id'][:8]}", size, size)
    uv = obj.data.uv_layers.active
    rec = JobRecord(job_id=job["id"], object_name=obj.name, image_name=img.name, spec=dict(spec),
                    client=client, uv_map=uv.name if uv else "", kind=kind, state=job.get("state", _client.QUEUED),
                    total_steps=int(job.get("total_steps") or spec.get("steps") or 0))
    if init_image is not None:
        materials.apply_pixels(img, materials.image_pixels(init_image), *init_image.size)
    materials.wire_image(obj, img, rec.uv_map)
    _JOBS[rec.job_id] = rec
    set_error("")
    _start_worker(rec)
    return rec


# -- main-thread pump ----------------------------------------------------------------------------
def pump() -> None:
    """Apply every job's queued results to Blender data. Main thread only; never raises."""
    for rec in list(_JOBS.values()):
        if not rec.active and not rec.inbox and rec._pixels is None:
            continue
        try:
            _pump_one(rec)
        except Exception as exc:  # nothing may raise into Blender's timer loop
            rec.error = f"could not apply the texture: {type(exc).__name__}: {exc}"
            set_error(rec.error)


def _pump_one(rec: JobRecord) -> None:
    events = []
    while rec.inbox:
        events.append(rec.inbox.popleft())
    pixels = rec._take_pixels()  # after draining: pixels of a drained terminal event are here
    if pixels is not None:
        _apply(rec, *pixels)
    for etype, data in events:
        if etype in (_client.QUEUED, "started"):
            rec.state = _client.RUNNING if etype == "started" else rec.state
        elif etype == "progress":
            rec.state = _client.RUNNING
            rec.step = int(data.get("step", rec.step))
            rec.total_steps = int(data.get("total_steps", rec.total_steps) or rec.total_steps)
            rec.stage = int(data.get("stage", rec.stage) or 0)
            rec.eta_s = data.get("eta_s")
        elif etype == "stage":
            rec.stage = int(data.get("stage") or 0)
        elif etype == _client.SUCCEEDED:
            rec.state, rec.step, rec.eta_s = _client.SUCCEEDED, rec.total_steps or rec.step, 0.0
            _finish(rec)
        elif etype == _client.FAILED:
            rec.state, rec.error = _client.FAILED, _client.describe_error(data) or "the engine reported a failure"
            set_error(f"job failed: {rec.error}")
        elif etype == _client.CANCELLED:
            rec.state = _client.CANCELLED
        elif etype == "error":
            rec.state, rec.error = _client.FAILED, str(data.get("error"))
            set_error(rec.error)


def _image_for(rec: JobRecord, w: int, h: int) -> bpy.types.Image:
    img = bpy.data.images.get(rec.image_name)
    if img is None:  # undone or deleted: make it again under the same name
        img = materials.new_image(rec.image_name, w, h)
        rec.image_name = img.name
    return img


def _apply(rec: JobRecord, version: int, w: int, h: int, px: np.ndarray) -> None:
    if version <= rec.applied_version:
        return
    obj = bpy.data.objects.get(rec.object_name)
    img = _image_for(rec, w, h)
    materials.apply_pixels(img, px, w, h)
    if obj is not None and obj.type == "MESH":
        materials.wire_image(obj, img, rec.uv_map)
    rec.applied_version, rec.applies = version, rec.applies + 1
    _tag_redraw()


def _finish(rec: JobRecord) -> None:
    """On success: save (or pack) the texture and remember the job on the object."""
    img = bpy.data.images.get(rec.image_name)
    if img is not None:
        rec.texture_path = materials.save_or_pack(img, f"{rec.object_name}_texbridge_{rec.job_id[:8]}")
    obj = bpy.data.objects.get(rec.object_name)
    if obj is not None and hasattr(obj, "texbridge"):
        st = obj.texbridge
        st.spec_json = json.dumps(rec.spec, sort_keys=True)
        st.job_id = rec.job_id
        st.image_name = rec.image_name
        st.texture_path = rec.texture_path


def _tag_redraw() -> None:
    if bpy.app.background:
        return
    wm = bpy.context.window_manager
    for win in getattr(wm, "windows", []):
        for area in win.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR"):
                area.tag_redraw()


def timer_pump() -> float:
    """``bpy.app.timers`` callback: pump, keep the health state fresh, reschedule."""
    pump()
    try:
        connection.refresh_health_async()
    except Exception:  # a timer that raises is dropped by Blender; keep pumping
        pass
    return 0.1 if any(r.active for r in _JOBS.values()) else 0.5


# -- control -------------------------------------------------------------------------------------
def cancel(rec: JobRecord, timeout: float = 5.0) -> str:
    """Ask the engine to cancel ``rec``; the worker then sees ``cancelled``. Never raises."""
    try:
        rec.client.cancel(rec.job_id, timeout=timeout)
    except _client.EngineError as exc:
        return str(exc)
    return "cancelling"


def wait(rec: JobRecord, timeout: float = 3600.0, poll_s: float = 0.05) -> JobRecord:
    """Pump until ``rec`` is finished (background mode, where timers never fire)."""
    deadline = time.monotonic() + timeout
    while True:
        pump()
        if not rec.active and not rec.inbox and rec._pixels is None:
            return rec
        if time.monotonic() > deadline:
            cancel(rec)
            rec.state, rec.error = _client.FAILED, f"timed out after {timeout:.0f} s; job cancelled"
            return rec
        time.sleep(poll_s)


def shutdown(cancel_running: bool = True, join_timeout: float = 5.0) -> None:
    """Cancel running jobs on the engine, stop and join the worker threads (disable / exit)."""
    for rec in list(_JOBS.values()):
        if cancel_running and rec.active:
            cancel(rec, timeout=2.0)
        rec.stop.set()
    for rec in list(_JOBS.values()):
        if rec.thread is not None and rec.thread.is_alive():
            rec.thread.join(join_timeout)
    _JOBS.clear()
