"""Security regressions, each its own test, against a real server over loopback HTTP."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.server.conftest import REPO, TINY_SPEC, EngineServer, cube_arrays, glb_bytes, npz_bytes, submit

FAKE_ID = "0" * 32


def _routes(client):
    doc = client.get("/v1/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method in ops:
            yield method.upper(), path.replace("{job_id}", FAKE_ID).replace("{name}", "texture.png")


def test_openapi_lists_every_route(client):
    routes = set(_routes(client))
    assert ("GET", "/v1/health") in routes and ("POST", "/v1/jobs") in routes
    assert len(routes) == 10


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["none", "wrong", "basic", "empty"],
)
def test_every_route_needs_the_token(server, client, headers):
    routes = list(_routes(client)) + [("GET", "/v1/openapi.json"), ("GET", "/docs"), ("GET", "/nope/../../etc/passwd"), ("PUT", "/v1/jobs")]
    with server.client(token=None, headers=headers) as anon:
        for method, path in routes:
            r = anon.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code)
            assert "token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"


def test_token_prefix_is_not_enough(server):
    with server.client(token=server.token[:-1]) as c:
        assert c.get("/v1/health").status_code == 401
    with server.client(token=server.token + "x") as c:
        assert c.get("/v1/health").status_code == 401


def test_health_with_token(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["device"] == "cpu" and h["queue_length"] >= 0
    assert h["api_version"] == 1 and isinstance(h["models"], list)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost:1"])
def test_foreign_host_header_refused(client, host):
    r = client.get("/v1/health", headers={"Host": host})
    assert r.status_code == 403
    assert "Host" in r.json()["error"]


def test_loopback_host_names_accepted(server, client):
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}", "localhost"):
        assert client.get("/v1/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "null", f"http://127.0.0.1"])
def test_origin_header_refused(client, origin):
    r = client.get("/v1/health", headers={"Origin": origin})
    assert r.status_code == 403
    r = client.post("/v1/unload", headers={"Origin": origin})
    assert r.status_code == 403


def test_explicitly_allowed_origin_passes(client):
    assert client.get("/v1/health", headers={"Origin": "http://allowed.example"}).status_code == 200
    assert client.get("/v1/health", headers={"Origin": "http://allowed.example.evil"}).status_code == 403


def test_allow_remote_with_token_warns_and_still_needs_the_token(tmp_path, tiny_sd_dir):
    token = "a-long-shared-secret-for-tests"
    srv = EngineServer(tmp_path, str(tiny_sd_dir), ["--host", "0.0.0.0", "--allow-remote", "--token", token])
    srv.start()
    try:
        assert "warning: the engine listens on 0.0.0.0" in srv.log.read_text()
        assert srv.token == token and srv.url == f"http://127.0.0.1:{srv.port}"
        with srv.client() as c:
            assert c.get("/v1/health").status_code == 200
        with srv.client(token=None) as c:
            assert c.get("/v1/health").status_code == 401
    finally:
        assert srv.stop() == 0


def test_oversize_content_length_refused_up_front(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/v1/jobs")
    conn.putheader("Authorization", f"Bearer {server.token}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    r = conn.getresponse()  # answered before a single body byte was sent
    assert r.status == 413
    assert "limit" in json.loads(r.read())["error"]
    conn.close()


def test_oversize_streamed_body_refused_without_buffering(server):
    """Chunked upload (no Content-Length) of 64 MB against a 2 MB cap: 413 arrives while we
    are still sending, so the server never buffered the rest."""
    total = 64 * 1024 * 1024
    chunk = b"a" * (256 * 1024)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    first = b'--xyz\r\nContent-Disposition: form-data; name="mesh"; filename="m.npz"\r\n\r\n'
    s.sendall(head + b"%x\r\n" % len(first) + first + b"\r\n")
    sent = 0
    response = b""
    s.setblocking(False)
    try:
        while sent < total:
            try:
                response += s.recv(65536)
                if b"\r\n\r\n" in response:
                    break
            except BlockingIOError:
                pass
            try:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
        s.setblocking(True)
        s.settimeout(10)
        while b"\r\n\r\n" not in response:
            data = s.recv(65536)
            if not data:
                break
            response += data
    finally:
        s.close()
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < total / 4, f"server let us send {sent} bytes before refusing"


def test_npz_needing_pickle_refused(client):
    arrays = cube_arrays()
    buf = io.BytesIO()
    np.savez(buf, positions=arrays["positions"], faces=arrays["faces"], uvs=np.array([{"evil": 1}], dtype=object))
    r = submit(client, mesh=buf.getvalue())
    assert r.status_code == 400
    assert "pickle" in r.json()["error"]


def test_glb_with_external_uri_refused(client):
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36, "uri": "../../../../etc/passwd"}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
    }
    r = submit(client, mesh=glb_bytes(doc), filename="m.glb")
    assert r.status_code == 400
    assert "external" in r.json()["error"]
    doc["buffers"] = [{"byteLength": 36}]
    doc["images"] = [{"uri": "file:///etc/passwd"}]
    r = submit(client, mesh=glb_bytes(doc, b"\0" * 36), filename="m.glb")
    assert r.status_code == 400 and "external" in r.json()["error"]


def test_obj_referencing_files_refused(client):
    obj = b"mtllib ../../../etc/passwd\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    r = submit(client, mesh=obj, filename="m.obj")
    assert r.status_code == 400 and "mtllib" in r.json()["error"]


@pytest.mark.parametrize("bad", ["../../etc", "..", "0" * 31, "0" * 33, "A" * 32, "%2e%2e%2f%2e%2e%2fetc", "..%2F..%2Fetc"])
def test_bad_job_ids_are_404(server, bad):
    for suffix in ("", "/events", "/texture", "/results/texture.png", "/cancel"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        method = "POST" if suffix == "/cancel" else "GET"
        conn.request(method, f"/v1/jobs/{bad}{suffix}", headers={"Authorization": f"Bearer {server.token}"})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        assert r.status == 404, (bad, suffix, r.status, body)
        assert "error" in json.loads(body)


def test_result_names_outside_allow_list_are_404(client):
    job = submit(client).json()
    for name in ("..%2Fstore.sqlite3", "inputs", "job.json.bak", "%2Fetc%2Fpasswd"):
        assert client.get(f"/v1/jobs/{job['id']}/results/{name}").status_code == 404


def test_bind_wildcard_without_allow_remote_exits(tmp_path):
    env = dict(os.environ, TEXBRIDGE_RUNTIME_DIR=str(tmp_path / "rt"), PYTHONPATH=str(REPO))
    base = [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", "0"]
    r = subprocess.run(base + ["--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "refusing to listen on 0.0.0.0" in r.stderr and "--allow-remote" in r.stderr
    r = subprocess.run(base + ["--host", "0.0.0.0", "--allow-remote"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--token" in r.stderr
    assert not (tmp_path / "rt" / "engine.json").exists()


def test_discovery_file_is_private(server):
    path = server.runtime / "engine.json"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(server.runtime).st_mode) & 0o077 == 0
    info = json.loads(path.read_text())
    assert info["pid"] == server.proc.pid and info["port"] == server.port
    assert info["url"] == f"http://127.0.0.1:{server.port}" and len(info["token"]) >= 32


def test_client_cannot_choose_paths_or_models(client):
    spec = dict(TINY_SPEC, mesh="/etc/passwd", init_texture="/etc/shadow")
    job = submit(client, spec).json()
    assert job["spec"]["mesh"].endswith(f"/jobs/{job['id']}/inputs/mesh.npz")
    assert job["spec"]["init_texture"] is None
    r = submit(client, dict(TINY_SPEC, model="/tmp/evil-model"))
    assert r.status_code == 400 and "not one this engine was started with" in r.json()["error"]


def test_png_bomb_and_non_png_refused(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buf, format="PNG")  # 81 MP > 67 MP cap; compresses to ~80 KB
    r = submit(client, init_texture=buf.getvalue())
    assert r.status_code == 400 and "pixels" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    r = submit(client, init_texture=buf.getvalue())
    assert r.status_code == 400 and "not a PNG" in r.json()["error"]


@pytest.mark.parametrize(
    "case",
    ["not-multipart", "bad-json", "unknown-field", "no-mesh", "garbage-npz", "garbage-glb", "bad-faces", "huge-index", "nan", "bad-key", "extra-field"],
)
def test_malformed_input_gives_400(client, case):
    a = cube_arrays()
    if case == "not-multipart":
        r = client.post("/v1/jobs", json=TINY_SPEC)
    elif case == "bad-json":
        r = client.post("/v1/jobs", files={"spec": (None, "{nope"), "mesh": ("m.npz", npz_bytes(**a))})
    elif case == "unknown-field":
        r = submit(client, dict(TINY_SPEC, hack=1))
    elif case == "no-mesh":
        r = client.post("/v1/jobs", files={"spec": (None, json.dumps(TINY_SPEC))})
    elif case == "garbage-npz":
        r = submit(client, mesh=b"PK\x03\x04garbage" * 10)
    elif case == "garbage-glb":
        r = submit(client, mesh=b"glTF\x02\x00\x00\x00" + b"\xff" * 40, filename="m.glb")
    elif case == "bad-faces":
        r = submit(client, mesh=npz_bytes(positions=a["positions"], faces=a["faces"][:, :2]))
    elif case == "huge-index":
        r = submit(client, mesh=npz_bytes(positions=a["positions"], faces=a["faces"] + 100))
    elif case == "nan":
        p = a["positions"].copy()
        p[0, 0] = np.nan
        r = submit(client, mesh=npz_bytes(positions=p, faces=a["faces"]))
    elif case == "bad-key":
        r = submit(client, key="has spaces in it")
    else:
        r = client.post("/v1/jobs", files={"spec": (None, json.dumps(TINY_SPEC)), "mesh": ("m.npz", npz_bytes(**a)), "x": (None, "1")})
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.json()["error"]


@pytest.mark.parametrize("what", ["vertices", "triangles"])
def test_mesh_caps(client, what):
    a = cube_arrays()
    if what == "vertices":  # 5001 vertices > 5000
        pos = np.concatenate([a["positions"], np.zeros((5001 - 8, 3), np.float32)])
        r = submit(client, mesh=npz_bytes(positions=pos, faces=a["faces"]))
        assert r.status_code == 413 and "5,001 vertices" in r.json()["error"] and "--max-vertices" in r.json()["error"]
        assert r.json()["field"] == "max_vertices"
    else:  # 3012 triangles > 3000, as an OBJ
        obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" + b"f 1 2 3\n" * 3012
        r = submit(client, mesh=obj, filename="m.obj")
        assert r.status_code == 413 and "more than the limit of 3,000" in r.json()["error"]
