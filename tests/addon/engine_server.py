"""A real ``texbridge serve`` for the add-on tests: subprocess on a free loopback port.

The discovery file goes to a temp ``TEXBRIDGE_RUNTIME_DIR``; the add-on finds port and
token there exactly as in use. The real engine runs with the tiny random SD folder.
While the engine's job runner (``engine.jobrun``) is not in the tree yet, the server's
worker uses the server tests' stand-in runner (``tests/server/standin_engine.py``,
through the worker's documented test hooks) and says so in ``STANDIN``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDIN = importlib.util.find_spec("engine.jobrun") is None


class EngineProcess:
    def __init__(self, root: Path, model: str) -> None:
        self.root = root
        self.runtime = root / "runtime"
        self.data = root / "data"
        self.model = model
        self.log = root / "server.log"
        self.proc: subprocess.Popen | None = None
        self.url = self.token = ""

    def start(self, timeout: float = 90.0) -> "EngineProcess":
        env = dict(os.environ, TEXBRIDGE_RUNTIME_DIR=str(self.runtime), HF_HUB_OFFLINE="1")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("BLENDER_USER_RESOURCES", None)
        if STANDIN:
            env["TEXBRIDGE_WORKER_RUNNER"] = "tests.server.standin_engine:run_texture_job"
            env["TEXBRIDGE_WORKER_LOADER"] = "tests.server.standin_engine:load_prior"
        cmd = [sys.executable, "-m", "server.cli", "serve", "--port", "0", "--data-dir", str(self.data),
               "--model", self.model, "--device", "cpu", "--cancel-grace", "10"]
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        disc = self.runtime / "engine.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                info = json.loads(disc.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.url, self.token = info["url"], info["token"]
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"engine did not start in {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
