"""GPU tier: the worker runs on CUDA, and killing it gives the GPU memory back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from tests.server.conftest import TINY_SPEC, EngineServer, pid_alive, read_events, submit, wait_for


def _gpu_pids() -> set[int]:
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"], capture_output=True, text=True, check=True
    ).stdout
    return {int(x) for x in out.split() if x.strip().isdigit()}


@pytest.mark.gpu
def test_cuda_worker_runs_jobs_and_frees_the_gpu(tmp_path, tiny_sd_dir):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi not available")
    srv = EngineServer(tmp_path, str(tiny_sd_dir), device="cuda").start()
    try:
        with srv.client() as c:
            job = submit(c, dict(TINY_SPEC, steps=4)).json()
            assert read_events(c, job["id"], timeout=600)[-1][1] == "succeeded"
            h = c.get("/v1/health").json()
            assert h["device"] == "cuda" and h["loaded_model"]
            assert h["worker_pid"] in _gpu_pids()  # the worker, not the server, holds the GPU
            assert os.getpid() not in _gpu_pids() and srv.proc.pid not in _gpu_pids()
            assert c.post("/v1/unload").json()["unloaded"]
            pid = h["worker_pid"]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not pid_alive(pid), 20)
            wait_for(lambda: pid not in _gpu_pids(), 20)
    finally:
        srv.stop()
