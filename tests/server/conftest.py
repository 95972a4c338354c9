"""A real ``texbridge serve`` in a subprocess on a free loopback port, and HTTP helpers.

``EngineServer(..., runner=WorkerRunner(...))`` gives its worker another runner (the
server's config field, no environment hook), e.g. ``tests/helpers/small_engine.py``.

Every server here runs the real engine (``engine.runner.run_texture_job``) with the tiny
random SD folder (``tiny_sd_dir``); tests keep their jobs tiny (few steps, 64 px render and
texture) so a job costs about a second. ``server`` is the one shared by the session, with
small caps for the limit tests.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.config import WorkerRunner

REPO = Path(__file__).resolve().parents[2]

#: A tiny job: fast on a CPU with the tiny model.
TINY_SPEC = {
    "prompt": "red brick wall",
    "steps": 6,
    "texture_size": 64,
    "render_size": 64,
    "views_per_step": 1,
    "checkpoint_every": 2,
    "preview_every": 2,
    "seed": 1,
}


def cube_arrays() -> dict[str, np.ndarray]:
    """A unit cube, 12 triangles, with distinct per-corner UVs (a 4x3 grid of cells)."""
    p = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32) - 0.5
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces, uvs = [], []
    for i, (a, b, c, d) in enumerate(quads):
        u0, v0 = (i % 3) / 3 + 0.02, (i // 3) / 2 + 0.02
        s = 0.28
        cu = [(u0, v0), (u0 + s, v0), (u0 + s, v0 + s * 1.5), (u0, v0 + s * 1.5)]
        faces += [(a, b, c), (a, c, d)]
        uvs += [(cu[0], cu[1], cu[2]), (cu[0], cu[2], cu[3])]
    return {"positions": p, "faces": np.array(faces, np.int32), "uvs": np.array(uvs, np.float32)}


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def glb_bytes(doc: dict, binary: bytes = b"") -> bytes:
    """A GLB container: the JSON chunk ``doc`` and, if given, the BIN chunk ``binary`` (both padded)."""
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    if binary:
        binary += b"\0" * (-len(binary) % 4)
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def uv_glb(positions: np.ndarray, uvs: np.ndarray) -> bytes:
    """A minimal self-contained GLB: one vertex per face corner, POSITION (N, 3) + TEXCOORD_0 (N, 2), glTF v down."""
    pos = np.ascontiguousarray(positions, np.float32)
    uv = np.ascontiguousarray(uvs, np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": pos.nbytes + uv.nbytes}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": pos.nbytes}, {"buffer": 0, "byteOffset": pos.nbytes, "byteLength": uv.nbytes}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3", "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    return glb_bytes(doc, pos.tobytes() + uv.tobytes())


class EngineServer:
    """``python -m server.cli serve`` in a subprocess; discovery file in its own runtime dir."""

    def __init__(self, root: Path, model: str, extra: list[str] | None = None, env: dict[str, str] | None = None,
                 device: str = "cpu", runner: WorkerRunner | None = None):
        self.root = root
        self.runner = runner  # None: the real engine through the real CLI
        self.device = device
        self.runtime = root / "runtime"
        self.data = root / "data"
        self.model = model
        self.extra = list(extra or [])
        self.env_extra = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log = root / "server.log"
        self.url = self.token = None
        self.port = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TEXBRIDGE_RUNTIME_DIR"] = str(self.runtime)
        env["HF_HUB_OFFLINE"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")  # tiny models run fastest single-threaded on a busy CPU
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.env_extra)
        return env

    def command(self) -> list[str]:
        if self.runner is not None:  # the same server, its worker running another runner
            launch = ["-m", "tests.helpers.serve", self.runner.run_job, self.runner.load_prior]
        else:
            launch = ["-m", "server.cli", "serve"]
        return [sys.executable, *launch, "--port", "0", "--data-dir", str(self.data), "--model", self.model, "--device", self.device, *self.extra]

    def start(self, timeout: float = 60.0) -> "EngineServer":
        disc = self.runtime / "engine.json"
        if disc.exists():
            disc.unlink()
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=REPO, env=self.env(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                info = json.loads(disc.read_text())
                if info.get("pid") == self.proc.pid:
                    self.url, self.token, self.port = info["url"], info["token"], info["port"]
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def client(self, token: str | None = "default", **kw) -> httpx.Client:
        headers = kw.pop("headers", {})
        if token == "default":
            token = self.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 30.0), **kw)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else 0


def submit(client: httpx.Client, spec: dict | None = None, mesh: bytes | None = None, *, key: str | None = None,
           filename: str = "mesh.npz", init_texture: bytes | None = None) -> httpx.Response:
    files = {"spec": (None, json.dumps(spec or TINY_SPEC)), "mesh": (filename, mesh if mesh is not None else npz_bytes(**cube_arrays()))}
    if init_texture is not None:
        files["init_texture"] = ("init.png", init_texture)
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/jobs", files=files, headers=headers)


def read_events(client: httpx.Client, job_id: str, last_id: int | None = None, stop_after: int | None = None,
                timeout: float = 120.0, until=None, on_event=None) -> list[tuple[int, str, dict]]:
    """Follow a job's SSE stream until its terminal event, ``stop_after`` events, or an event
    for which ``until(event)`` is true. ``on_event(event)`` is called for each event."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    out: list[tuple[int, str, dict]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=httpx.Timeout(timeout)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        ev: dict = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if line == "":
                if ev:
                    event = (int(ev["id"]), ev["event"], json.loads(ev["data"]))
                    out.append(event)
                    ev = {}
                    if on_event is not None:
                        on_event(event)
                    if (stop_after is not None and len(out) >= stop_after) or (until is not None and until(event)):
                        break
                continue
            k, _, v = line.partition(": ")
            ev[k] = v
    return out


def after_start(pred):
    """An ``until`` predicate true for the first event matching ``pred`` after a ``started`` event."""
    state = {"started": False}

    def until(event) -> bool:
        if event[1] == "started":
            state["started"] = True
            return False
        return state["started"] and pred(event)

    return until


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


#: Caps of the shared server (small, so the cap tests stay small).
SHARED_CAPS = ["--max-body-mb", "2", "--max-vertices", "5000", "--max-triangles", "3000", "--cancel-grace", "30",
               "--allow-origin", "http://allowed.example"]


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_sd_dir):
    """A real-engine server (tiny model) shared by the session (small caps for the limit tests)."""
    srv = EngineServer(tmp_path_factory.mktemp("srv"), str(tiny_sd_dir), SHARED_CAPS).start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    with server.client() as c:
        yield c


def checkpoint_step(job_dir: Path) -> int | None:
    """Step stored in a job's checkpoint (``checkpoints/latest.pt``), None if there is none."""
    pt = job_dir / "checkpoints" / "latest.pt"
    if not pt.is_file():
        return None
    from engine.checkpoint import load_checkpoint

    return load_checkpoint(pt).step


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
