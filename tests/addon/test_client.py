"""The add-on's HTTP client: SSE parsing, Last-Event-ID reconnect, multipart, error words.

The reconnect test needs a stream that breaks mid-job, which the real engine cannot be
made to do on demand; a small stdlib HTTP server on loopback plays that part (only there).
Everything else about the protocol is exercised against the real engine in test_live.py.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blender_addon import client


def test_parse_sse_lines():
    raw = b"id: 1\nevent: queued\ndata: {\"state\": \"queued\"}\n\n: keep-alive\n\nid: 2\nevent: progress\ndata: {\"step\": 3}\n\n"
    evs = list(client.parse_sse_lines(iter(raw.splitlines(keepends=True))))
    assert [(e.id, e.type, e.data) for e in evs] == [(1, "queued", {"state": "queued"}), (2, "progress", {"step": 3})]


def test_multipart_encoding_parts():
    body, ctype = client.encode_multipart({"spec": '{"prompt": "x"}', "mesh": client.FilePart("m.npz", b"PK\x03\x04zz")})
    boundary = ctype.split("boundary=")[1]
    parts = body.split(f"--{boundary}".encode())
    assert parts[-1] == b"--\r\n" and len(parts) == 4
    assert b'name="spec"\r\n\r\n{"prompt": "x"}\r\n' in parts[1]
    assert b'filename="m.npz"' in parts[2] and parts[2].endswith(b"PK\x03\x04zz\r\n")


class _Engine(BaseHTTPRequestHandler):
    """Serves /v1/jobs/j/events: events 1-3 then drops the connection; resumes after Last-Event-ID."""

    seen_last_ids: list = []
    status = 200

    def log_message(self, *a):
        pass

    def do_GET(self):
        if type(self).status != 200:
            body = json.dumps({"error": "engine is busy with job 1; try again later"}).encode()
            self.send_response(type(self).status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        last = int(self.headers.get("Last-Event-ID") or 0)
        type(self).seen_last_ids.append(last)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        events = [(1, "started", {}), (2, "progress", {"step": 1}), (3, "preview", {"version": 1}),
                  (4, "progress", {"step": 2}), (5, "succeeded", {})]
        for i, typ, data in events:
            if i <= last:
                continue
            self.wfile.write(f"id: {i}\nevent: {typ}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            if i == 3 and last == 0:
                return  # connection drops mid-job


@pytest.fixture
def fake_stream():
    _Engine.seen_last_ids, _Engine.status = [], 200
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    th.join(5)


def test_follow_events_reconnects_with_last_event_id(fake_stream):
    c = client.EngineClient(fake_stream, "t")
    evs = list(c.follow_events("j", threading.Event(), read_timeout=5.0))
    assert [e.id for e in evs] == [1, 2, 3, 4, 5] and evs[-1].type == "succeeded"
    assert _Engine.seen_last_ids == [0, 3]


def test_errors_are_words(fake_stream):
    _Engine.status = 503
    with pytest.raises(client.EngineBusy, match="engine busy: engine is busy with job 1"):
        client.EngineClient(fake_stream, "t").job("j")
    _Engine.status = 401
    with pytest.raises(client.EngineAuthError, match="wrong token"):
        client.EngineClient(fake_stream, "t").health()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client.EngineDown, match="engine not reachable at http://127.0.0.1"):
        client.EngineClient(f"http://127.0.0.1:{port}", "t").health()


def test_no_discovery_file_says_start_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXBRIDGE_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(client.EngineDown, match="engine not running: no discovery file"):
        client.EngineClient.from_settings()
    (tmp_path / "engine.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "abc", "pid": 1}))
    c = client.EngineClient.from_settings()
    assert (c.url, c.token) == ("http://127.0.0.1:9", "abc")
    assert client.EngineClient.from_settings(token="mine").token == "mine"


def test_start_and_stop_engine_process():
    import shlex
    import sys

    from blender_addon import connection

    cmd = shlex.join([sys.executable, "-c", "import time; time.sleep(60)"])
    msg = connection.start_engine(cmd)
    proc = connection._engine_proc
    try:
        assert msg == f"engine starting (pid {proc.pid})" and proc.poll() is None
        assert "already started" in connection.start_engine(cmd)
        assert connection.stop_engine() == f"engine stopped (pid {proc.pid})"
        assert proc.poll() is not None and connection.health_state().kind == "down"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "could not start the engine" in connection.start_engine("/nonexistent/texbridge serve")
