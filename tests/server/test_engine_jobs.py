"""Acceptance with the real engine and the tiny random SD model: happy path, cancel,
crash recovery (worker killed, then the server killed with SIGKILL)."""

from __future__ import annotations

import io
import os
import signal
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from engine.jobstate import JobState
from tests.server.conftest import (
    TINY_SPEC,
    EngineServer,
    after_start,
    checkpoint_step,
    cube_arrays,
    npz_bytes,
    pid_alive,
    read_events,
    submit,
    wait_for,
)

TIMEOUT = 600


def _glb_corners(data: bytes) -> set[frozenset]:
    """Per-face sets of (position, uv) corners of a GLB, positions back in Blender's Z-up."""
    import trimesh

    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    mesh = scene.dump(concatenate=True) if hasattr(scene, "dump") else scene
    pos = mesh.vertices @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T  # Y-up -> Z-up
    uv = mesh.visual.uv
    return {frozenset((tuple(np.round(pos[i], 4)), tuple(np.round(uv[i], 4))) for i in face) for face in mesh.faces}


def _submitted_corners(a: dict) -> set[frozenset]:
    p, f, uv = a["positions"], a["faces"], a["uvs"]
    return {frozenset((tuple(np.round(p[f[i, k]].astype(float), 4)), tuple(np.round(uv[i, k].astype(float), 4))) for k in range(3)) for i in range(len(f))}


def test_happy_path(server):
    arrays = cube_arrays()
    with server.client() as c:
        r = submit(c, dict(TINY_SPEC, steps=4, recipe="paper-2d"), npz_bytes(**arrays))
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["state"] == "queued" and len(job["id"]) == 32
        events = read_events(c, job["id"], timeout=TIMEOUT)
        types = [t for _, t, _ in events]
        assert [i for i, _, _ in events] == list(range(1, len(events) + 1))
        assert types[:2] == ["queued", "started"] and types[-1] == "succeeded", events[-1]
        assert [d["step"] for _, t, d in events if t == "progress"] == [1, 2, 3, 4]
        assert [d["stage"] for _, t, d in events if t == "stage"] == [1, 2]  # bridge: stage 2 from step 2
        versions = [d["version"] for _, t, d in events if t == "preview"]
        assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 3

        done = c.get(f"/v1/jobs/{job['id']}").json()
        assert done["state"] == "succeeded" and done["step"] == 4 and done["error"] is None
        assert done["preview_version"] == versions[-1] and done["attempts"] == 1
        assert datetime.fromisoformat(done["finished_at"].replace("Z", "+00:00")) >= datetime.fromisoformat(
            done["started_at"].replace("Z", "+00:00")
        )

        for v in versions:
            t = c.get(f"/v1/jobs/{job['id']}/texture", params={"version": v})
            assert t.status_code == 200 and t.headers["x-texture-version"] == str(v)
            assert Image.open(io.BytesIO(t.content)).size == (64, 64)
        final_png = c.get(f"/v1/jobs/{job['id']}/results/texture.png")
        assert final_png.status_code == 200 and final_png.headers["content-type"] == "image/png"
        final = np.asarray(Image.open(io.BytesIO(final_png.content)).convert("RGBA"))
        raw = c.get(f"/v1/jobs/{job['id']}/texture", params={"format": "rgba8"})  # latest = the final texture
        assert raw.headers["x-texture-width"] == "64" and raw.headers["x-texture-height"] == "64"
        assert raw.headers["x-texture-version"] == str(versions[-1])
        assert np.array_equal(np.frombuffer(raw.content, np.uint8).reshape(64, 64, 4), final)
        assert c.get(f"/v1/jobs/{job['id']}/texture", params={"version": versions[-1] + 1}).status_code == 404

        glb = c.get(f"/v1/jobs/{job['id']}/results/textured.glb")
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        assert _glb_corners(glb.content) == _submitted_corners(arrays)
        sheet = c.get(f"/v1/jobs/{job['id']}/results/preview.png")
        assert sheet.status_code == 200 and Image.open(io.BytesIO(sheet.content)).format == "PNG"
        rec = c.get(f"/v1/jobs/{job['id']}/results/job.json").json()
        assert rec["spec"]["recipe"] == "paper-2d" and rec["resolved"]["recipe"] == "paper-2d"
        # one word for a finished job: job.json, GET /v1/jobs/{id}, the SSE stream (and the add-on,
        # tests/addon/test_spec_drift.py; batch_summary.json, tests/engine/test_batch.py)
        assert rec["status"] == done["state"] == types[-1] == JobState.SUCCEEDED.value
        assert (rec["resolved"]["cfg_scale"], rec["resolved"]["stage_two_start"]) == (40.0, 2)
        bad = submit(c, dict(TINY_SPEC, recipe="paper-4d"), npz_bytes(**arrays))
        assert bad.status_code == 400 and "allowed: auto, paper-2d, paper-3d, embedded" in bad.json()["error"]


def test_cancel_mid_run(server):
    spec = dict(TINY_SPEC, steps=300, checkpoint_every=1000, preview_every=1000)
    with server.client() as c, server.client() as c2:
        job = submit(c, spec).json()
        at_cancel: list[int] = []

        def maybe_cancel(event) -> None:
            if event[1] == "progress" and event[2]["step"] >= 2 and not at_cancel:
                at_cancel.append(event[2]["step"])
                assert c2.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200

        seen = read_events(c, job["id"], timeout=TIMEOUT, on_event=maybe_cancel)
        at_cancel = at_cancel[0]
        assert seen[-1][1] == "cancelled", seen[-3:]
        last_step = max(d["step"] for _, t, d in seen if t == "progress")
        assert last_step <= at_cancel + 2, (at_cancel, last_step)
        final = c.get(f"/v1/jobs/{job['id']}").json()
        assert final["state"] == "cancelled" and final["step"] == last_step
        job_dir = server.data / "jobs" / job["id"]
        assert checkpoint_step(job_dir) == last_step  # checkpoint written on cancel (checkpoint_every=1000)
        # a cancelled job can be deleted; its folder goes with it
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert not job_dir.exists() and c.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_crash_recovery_worker_then_server(tmp_path, tiny_sd_dir):
    """kill -9 the worker mid-run: the job resumes in a new worker from its checkpoint;
    then kill -9 the server mid-run and start it again: the job resumes again and succeeds.

    Runs the real engine with the tiny model (about a minute here)."""
    srv = EngineServer(tmp_path, str(tiny_sd_dir)).start()
    steps = 40  # the job must still be running when the server is killed after step 6, on a fast machine too
    spec = dict(TINY_SPEC, steps=steps, checkpoint_every=2, preview_every=3)
    try:
        with srv.client() as c:
            job = submit(c, spec).json()
            jid = job["id"]
            first = read_events(c, jid, timeout=TIMEOUT, until=after_start(lambda e: e[1] == "progress" and e[2]["step"] >= 3))
            ck1 = checkpoint_step(srv.data / "jobs" / jid)
            assert ck1 is not None and ck1 >= 2
            worker = c.get("/v1/health").json()["worker_pid"]
            os.kill(worker, signal.SIGKILL)
            wait_for(lambda: not pid_alive(worker), 20)
            second = read_events(c, jid, last_id=first[-1][0], timeout=TIMEOUT,
                                 until=after_start(lambda e: e[1] == "progress" and e[2]["step"] >= 6))
        resumed = [e for e in second if e[1] == "started"]
        assert len(resumed) == 1 and resumed[0][2]["resume"] is True and resumed[0][2]["attempt"] == 2
        requeued = [e for e in second if e[1] == "queued"]
        assert requeued and "SIGKILL" in requeued[0][2]["reason"]
        steps2 = [e[2]["step"] for e in second if e[1] == "progress" and e[0] > resumed[0][0]]
        assert steps2[0] > 1 and (steps2[0] - 1) % 2 == 0, steps2  # continues from a checkpoint, not from zero
        assert steps2[0] <= first[-1][2]["step"] + 1

        with srv.client() as c:
            worker = c.get("/v1/health").json()["worker_pid"]
        srv.kill9()
        wait_for(lambda: not pid_alive(worker), 20)  # the worker dies with the server: nothing holds the GPU
        srv.start()
        with srv.client() as c:
            third = read_events(c, jid, last_id=second[-1][0], timeout=TIMEOUT)
            final = c.get(f"/v1/jobs/{jid}").json()
        assert third[-1][1] == "succeeded", third[-3:]
        restarted = [e for e in third if e[1] == "started"]
        assert len(restarted) == 1 and restarted[0][2]["resume"] is True
        steps3 = [e[2]["step"] for e in third if e[1] == "progress"]
        assert steps3[0] > 1 and (steps3[0] - 1) % 2 == 0 and steps3[-1] == steps, steps3
        all_events = first + second + third
        assert [e[0] for e in all_events] == list(range(1, len(all_events) + 1))  # nothing lost or repeated
        versions = [e[2]["version"] for e in all_events if e[1] == "preview"]
        assert versions == list(range(1, len(versions) + 1))
        assert final["state"] == "succeeded" and final["attempts"] == 3 and final["step"] == steps
    finally:
        srv.stop()
