"""A real local Ray cluster for tests and benchmarks: ``ray start --head`` on 127.0.0.1.

Token authentication on (``RAY_AUTH_MODE=token``, a fresh token in the cluster's own folder,
given to this process through ``RAY_AUTH_TOKEN_PATH``), every service bound to 127.0.0.1, N CPUs.
``stop()`` runs ``ray stop --force`` and ``leftover()`` lists Ray processes that were not
running before ``start()`` (it must be empty afterwards).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_RAY_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor", "monitor.py",
              "runtime_env", "ray_client_server")


def ray_processes() -> dict[int, str]:
    """{pid: command line} of the Ray processes on this machine."""
    psutil = _psutil()

    out = {}
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or []) or (p.info["name"] or "")
        except (psutil.Error, TypeError):
            continue
        if any(n in cmd for n in _RAY_NAMES) and "pytest" not in cmd:
            out[p.info["pid"]] = cmd
    return out


def _psutil():
    try:
        import psutil
    except ImportError:  # ray ships its own copy (ray/thirdparty_files), on sys.path once ray is imported
        import ray  # noqa: F401
        import psutil
    return psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.dir = Path(tempfile.mkdtemp(prefix="tbray-"))  # short: Ray's socket paths have a length limit
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token_path = self.dir / "auth_token"
        self.env: dict[str, str] = {}
        self._before: set[int] = set()

    def start(self) -> "LocalRayCluster":
        self._before = set(ray_processes())
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every service on 127.0.0.1
                    "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        cmd = ["ray", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
               "--num-cpus", str(self.num_cpus), "--num-gpus", "0", "--include-dashboard", "false",
               "--disable-usage-stats", "--temp-dir", str(self.dir / "t")]
        res = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{res.stdout}\n{res.stderr}")
        return self

    def stop(self) -> None:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)
        deadline = time.time() + 20
        while self.leftover() and time.time() < deadline:
            time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftover(self) -> dict[int, str]:
        return {pid: cmd for pid, cmd in ray_processes().items() if pid not in self._before}

    def listening_addresses(self) -> set[str]:
        """Local addresses that this cluster's processes listen on (TCP)."""
        psutil = _psutil()
        pids = set(self.leftover())
        out = set()
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.pid in pids:
                out.add(c.laddr.ip)
        return out
