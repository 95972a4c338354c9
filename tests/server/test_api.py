"""API behaviour over real HTTP with the real engine (tiny model, tiny jobs): idempotency,
listing, delete, unload, texture formats, crash counting, the committed OpenAPI document
(disk full: tests/server/test_reliability.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import REPO, TINY_SPEC, EngineServer, after_start, pid_alive, read_events, submit, wait_for


def test_idempotent_submit(client):
    a = submit(client, key="retry-key-123")
    b = submit(client, key="retry-key-123")
    assert a.status_code == 201 and b.status_code == 200
    assert a.json()["id"] == b.json()["id"]
    ids = [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert ids.count(a.json()["id"]) == 1
    c = submit(client, key="another-key")
    assert c.status_code == 201 and c.json()["id"] != a.json()["id"]
    read_events(client, c.json()["id"])


def test_concurrent_submits_with_one_key_make_one_job(server, client):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        rs = list(pool.map(lambda _: submit(client, key="concurrent-key"), range(6)))
    assert sorted(r.status_code for r in rs) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in rs}) == 1
    jobs = [j for j in client.get("/v1/jobs").json()["jobs"] if j["id"] == rs[0].json()["id"]]
    assert len(jobs) == 1
    read_events(client, jobs[0]["id"])
    folders = {p.name for p in (server.data / "jobs").iterdir()}
    assert folders == {j["id"] for j in client.get("/v1/jobs").json()["jobs"]}  # the losers left nothing behind


def test_list_get_and_delete(server, client):
    job = submit(client).json()
    events = read_events(client, job["id"])
    assert events[-1][1] == "succeeded"
    jobs = client.get("/v1/jobs").json()["jobs"]
    assert jobs[0]["id"] == job["id"]  # newest first
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"
    job_dir = server.data / "jobs" / job["id"]
    assert (job_dir / "inputs" / "mesh.npz").is_file() and (job_dir / "texture.png").is_file()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not job_dir.exists()
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404


def test_running_job_cannot_be_deleted_and_unload_waits(server, client):
    job = submit(client, dict(TINY_SPEC, steps=400)).json()
    read_events(client, job["id"], until=lambda e: e[1] == "progress")
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 409 and "cancel it first" in r.json()["error"]
    assert client.post("/v1/unload").status_code == 503
    assert client.get("/v1/health").json()["running_job"] == job["id"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert read_events(client, job["id"])[-1][1] == "cancelled"
    # right after the terminal event (stored a moment before the dispatcher frees the
    # worker), unload is accepted: it runs once the worker is free
    r = client.post("/v1/unload")
    assert r.status_code == 200 and r.json() == {"unloaded": server.model}
    h = client.get("/v1/health").json()
    assert h["loaded_model"] is None and h["running_job"] is None
    assert client.post("/v1/unload").json() == {"unloaded": None}


def test_a_spec_without_steps_gets_the_recipes_at_the_first_step(client):
    """total_steps is 0 until the worker resolves the recipe (the tiny SD model: paper-2d, 1000 steps)."""
    spec = {k: v for k, v in TINY_SPEC.items() if k != "steps"}
    created = submit(client, spec).json()
    assert created["total_steps"] == 0 and created["spec"].get("steps") is None
    events = read_events(client, created["id"], until=lambda e: e[1] == "progress")
    assert events[-1][2]["total_steps"] == 1000
    assert client.get(f"/v1/jobs/{created['id']}").json()["total_steps"] == 1000
    client.post(f"/v1/jobs/{created['id']}/cancel")
    assert read_events(client, created["id"])[-1][1] == "cancelled"


def test_cancel_queued_job(client):
    blocker = submit(client, dict(TINY_SPEC, steps=400)).json()
    queued = submit(client).json()
    r = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert [t for _, t, _ in read_events(client, queued["id"])] == ["queued", "cancelled"]
    client.post(f"/v1/jobs/{blocker['id']}/cancel")
    assert read_events(client, blocker["id"])[-1][1] == "cancelled"
    assert client.post(f"/v1/jobs/{blocker['id']}/cancel").json()["state"] == "cancelled"  # idempotent


def test_cancel_kills_a_worker_that_does_not_stop(tmp_path, tiny_sd_dir):
    """A worker stuck inside one step never sees the cancel flag: after the grace period the
    server kills it. The real worker is made stuck with SIGSTOP (it then answers nothing,
    exactly like a loop that never returns), so no stand-in engine is needed."""
    srv = EngineServer(tmp_path, str(tiny_sd_dir), ["--cancel-grace", "2"]).start()
    try:
        with srv.client() as client:
            job = submit(client, dict(TINY_SPEC, steps=2000)).json()
            read_events(client, job["id"], until=lambda e: e[1] == "progress")
            pid = client.get("/v1/health").json()["worker_pid"]
            os.kill(pid, signal.SIGSTOP)
            t0 = time.monotonic()
            assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "running"  # until the worker stops
            last = read_events(client, job["id"])[-1]
            assert last[1] == "cancelled" and last[2]["killed"] is True
            assert 1.5 < time.monotonic() - t0 < 15  # after the 2 s grace period
            wait_for(lambda: not pid_alive(pid), 10)
            nxt = submit(client).json()  # a fresh worker takes the next job
            assert read_events(client, nxt["id"])[-1][1] == "succeeded"
    finally:
        srv.stop()


def test_texture_versions_and_formats(client):
    job = submit(client, dict(TINY_SPEC, steps=4, preview_every=1)).json()
    events = read_events(client, job["id"])
    previews = [(d["version"], d["step"]) for _, t, d in events if t == "preview"]
    assert [v for v, _ in previews] == [1, 2, 3, 4, 5]  # every step, then the final texture
    for version, step in previews:
        png = client.get(f"/v1/jobs/{job['id']}/texture", params={"version": version})
        raw = client.get(f"/v1/jobs/{job['id']}/texture", params={"version": version, "format": "rgba8"})
        assert png.headers["x-texture-step"] == str(step) and raw.headers["x-texture-version"] == str(version)
        expect = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGBA"))
        assert np.array_equal(np.frombuffer(raw.content, np.uint8).reshape(64, 64, 4), expect)
    assert client.get(f"/v1/jobs/{job['id']}/texture", params={"format": "exr"}).status_code == 400
    assert client.get(f"/v1/jobs/{job['id']}/texture", params={"version": 0}).status_code == 400
    assert client.get(f"/v1/jobs/{job['id']}/texture", params={"version": "x"}).status_code == 400
    r = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 400


def test_worker_killed_three_times_fails_the_job(tmp_path, tiny_sd_dir):
    srv = EngineServer(tmp_path, str(tiny_sd_dir)).start()
    try:
        with srv.client() as c:
            job = submit(c, dict(TINY_SPEC, steps=500)).json()
            last = 0
            for attempt in range(1, 4):
                evs = read_events(c, job["id"], last_id=last, until=after_start(lambda e: e[1] == "progress"))
                last = evs[-1][0]
                started = [e for e in evs if e[1] == "started"]
                assert started[-1][2]["attempt"] == attempt
                pid = c.get("/v1/health").json()["worker_pid"]
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not pid_alive(pid), 20)
            evs = read_events(c, job["id"], last_id=last)
            final = c.get(f"/v1/jobs/{job['id']}").json()
            assert evs[-1][1] == "failed" and final["state"] == "failed"
            assert "died 3 times" in final["error"] and "SIGKILL" in final["error"]
            # the server is fine and the next job runs in a fresh worker
            nxt = submit(c).json()
            assert read_events(c, nxt["id"])[-1][1] == "succeeded"
    finally:
        assert srv.stop() == 0  # SIGTERM: a clean exit
    assert not (srv.runtime / "engine.json").exists()  # the discovery file goes with it


def test_clean_stop_checkpoints_and_resumes_exactly(tmp_path, tiny_sd_dir):
    """SIGTERM while a job runs: the loop checkpoints its current step, the server exits 0,
    and the next start continues from exactly that step."""
    srv = EngineServer(tmp_path, str(tiny_sd_dir)).start()
    steps = 400  # the job must still be running when SIGTERM arrives after step 3, on a fast machine too (16 was not)
    spec = dict(TINY_SPEC, steps=steps, checkpoint_every=1000, preview_every=1000)  # only the shutdown writes a checkpoint
    with srv.client() as c:
        job = submit(c, spec).json()
        first = read_events(c, job["id"], until=lambda e: e[1] == "progress" and e[2]["step"] >= 3)
    assert srv.stop() == 0
    srv.start()
    with srv.client() as c:
        rest = read_events(c, job["id"], last_id=first[-1][0])
        final = c.get(f"/v1/jobs/{job['id']}").json()
    srv.stop()
    before = [e[2]["step"] for e in first + rest if e[1] == "progress" and e[0] < [x for x in rest if x[1] == "started"][0][0]]
    after = [e[2]["step"] for e in rest if e[1] == "progress" and e[0] > [x for x in rest if x[1] == "started"][0][0]]
    requeued = [e for e in rest if e[1] == "queued"]
    assert requeued and "stopped" in requeued[0][2]["reason"]
    assert after[0] == before[-1] + 1 and after[-1] == steps  # not one step lost or repeated
    assert final["state"] == "succeeded" and final["attempts"] == 2


def test_committed_openapi_matches_the_app():
    from server.app import openapi_document

    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_document())), "regenerate: python -m server.app --write-openapi docs/openapi.json"


@pytest.mark.parametrize("kind", ["obj", "glb"])
def test_valid_obj_and_glb_meshes_run(client, kind):
    from tests.server.conftest import cube_arrays, uv_glb

    a = cube_arrays()
    if kind == "obj":
        lines = [f"v {x} {y} {z}" for x, y, z in a["positions"]]
        lines += [f"vt {u} {v}" for u, v in a["uvs"].reshape(-1, 2)]
        lines += [f"f {f[0] + 1}/{3 * i + 1} {f[1] + 1}/{3 * i + 2} {f[2] + 1}/{3 * i + 3}" for i, f in enumerate(a["faces"])]
        data = ("\n".join(lines) + "\n").encode()
    else:
        data = uv_glb(a["positions"][a["faces"]].reshape(-1, 3), a["uvs"].reshape(-1, 2))
    r = submit(client, mesh=data, filename=f"cube.{kind}")
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["mesh"].endswith(f"inputs/mesh.{kind}")
    events = read_events(client, r.json()["id"])
    assert events[-1][1] == "succeeded", events[-1]


def test_missing_texture_and_results_are_404(client):
    job = submit(client, dict(TINY_SPEC, steps=400)).json()
    read_events(client, job["id"], until=lambda e: e[1] == "started")
    r = client.get(f"/v1/jobs/{job['id']}/results/textured.glb")
    assert r.status_code == 404 and "succeeded" in r.json()["error"]
    r = client.get(f"/v1/jobs/{job['id']}/texture", params={"version": 99})
    assert r.status_code == 404 and "version 99" in r.json()["error"]
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert read_events(client, job["id"])[-1][1] == "cancelled"
    r = client.post("/v1/jobs", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]


def test_init_texture_is_stored_in_the_job_folder(server, client):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="PNG")
    r = submit(client, dict(TINY_SPEC, init_texture="/etc/passwd"), init_texture=buf.getvalue())
    assert r.status_code == 201, r.text
    job = r.json()
    stored = server.data / "jobs" / job["id"] / "inputs" / "init_texture.png"
    assert job["spec"]["init_texture"] == str(stored)
    assert stored.read_bytes() == buf.getvalue()
    assert read_events(client, job["id"])[-1][1] == "succeeded"
