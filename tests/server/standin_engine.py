"""Stand-in for ``engine.runner.run_texture_job`` / ``load_prior`` (used only while the
real engine's runner is not in the tree; see ``conftest.ENGINE_READY``).

It follows the runner's contract: callbacks every step, previews every ``preview_every``,
an atomic checkpoint every ``checkpoint_every`` (and on cancel), ``JobCancelled`` after
checkpointing, ``resume=True`` continuing from the checkpoint, and the output layout
(texture.png, textured.glb with the mesh's UVs, preview.png, job.json).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from engine.errors import JobCancelled
from engine.runner import JobResult, ProgressEvent

STEP_SECONDS = float(os.environ.get("TEXBRIDGE_STANDIN_STEP_S", "0.05"))


class StandinPrior:
    def __init__(self, name: str):
        self.name = name

    def unload(self) -> None:
        pass


def load_prior(model, device="auto", dtype=None):
    return StandinPrior(str(model))


def _checkpoint(out: Path, step: int, tex: np.ndarray) -> None:
    ck = out / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / "latest.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, step=np.array(step), tex=tex)
    os.replace(tmp, ck / "latest.npz")


def _write_glb(path: Path, positions: np.ndarray, uvs: np.ndarray) -> None:
    """A minimal self-contained GLB: one vertex per face corner, POSITION + TEXCOORD_0 (glTF v down)."""
    import struct

    pos = np.ascontiguousarray(positions, np.float32)
    uv = np.ascontiguousarray(uvs, np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    binary = pos.tobytes() + uv.tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": pos.nbytes}, {"buffer": 0, "byteOffset": pos.nbytes, "byteLength": uv.nbytes}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3", "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)


def run_texture_job(job, out_dir, *, mesh=None, prior=None, callbacks=None, resume=False):
    from PIL import Image

    from engine.mesh import load_mesh

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mesh = mesh or load_mesh(job.mesh)
    size = job.texture_size
    tex = np.full((size, size, 3), 0.5, np.float32)
    start = 0
    if resume and (out / "checkpoints" / "latest.npz").exists():
        with np.load(out / "checkpoints" / "latest.npz") as z:
            start, tex = int(z["step"]), z["tex"].copy()
    stage_two = job.stage_two_step if job.method.value == "bridge" else job.steps + 1
    stage = 2 if start >= stage_two else 1
    if callbacks and callbacks.on_stage:
        callbacks.on_stage(stage)
    t0 = time.monotonic()
    obeys_cancel = "standin:ignore-cancel" not in job.prompt  # simulates a loop stuck in one step
    for step in range(start + 1, job.steps + 1):
        if obeys_cancel and callbacks and callbacks.should_cancel and callbacks.should_cancel():
            _checkpoint(out, step - 1, tex)
            raise JobCancelled(f"cancelled at step {step - 1}")
        time.sleep(STEP_SECONDS)
        tex = np.clip(tex + 0.01 * np.sin(step + np.arange(3, dtype=np.float32)), 0, 1).astype(np.float32)
        new_stage = 2 if step >= stage_two else 1
        if new_stage != stage:
            stage = new_stage
            if callbacks and callbacks.on_stage:
                callbacks.on_stage(stage)
        if step % job.checkpoint_every == 0:
            _checkpoint(out, step, tex)
        if callbacks and callbacks.on_progress:
            rate = (step - start) / max(time.monotonic() - t0, 1e-6)
            callbacks.on_progress(ProgressEvent(step, job.steps, stage, 500, 0.1, 0.2, rate, (job.steps - step) / rate))
        if callbacks and callbacks.on_preview and step % job.preview_every == 0:
            callbacks.on_preview(step, tex)
    img = Image.fromarray((tex * 255).astype(np.uint8))
    img.save(out / "texture.png")
    img.save(out / "preview.png")
    _write_glb(out / "textured.glb", mesh.positions[mesh.faces].reshape(-1, 3), mesh.uvs.reshape(-1, 2))
    (out / "job.json").write_text(json.dumps({"spec": job.to_dict(), "status": "succeeded", "model": prior.name}))
    return JobResult(out, out / "texture.png", out / "textured.glb", out / "preview.png", job.steps, prior.name)
