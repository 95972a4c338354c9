"""One mesh validator (issue 11): the server checks uploads with the engine's own checks under
its ``--max-*`` limits, and the worker loads the mesh with those same limits.

- over a limit: 413 at submit, with the engine's kind and field, and no job is created;
- a face naming a missing vertex: 400 at submit, for OBJ exactly as for ``.npz``;
- a limit raised above the engine's default textures a mesh above that default (the
  worker's engine default is lowered to 100 triangles by ``tests/helpers/small_engine.py``,
  the fast stand-in for ``serve --max-triangles 3000000`` and a 2.1M-triangle mesh).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.jobstate import JobState
from server.config import WorkerRunner
from tests.helpers import SMALL_DEFAULT  # importing small_engine here would lower the default in this process
from tests.server.conftest import TINY_SPEC, EngineServer, npz_bytes, read_events, submit


def grid_arrays(n: int) -> dict[str, np.ndarray]:
    """A flat n x n quad grid: 2 n^2 triangles, per-corner UVs from the positions."""
    ij = np.stack(np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij"), -1).reshape(-1, 2)
    pos = np.concatenate([ij / n - 0.5, np.zeros((len(ij), 1))], 1).astype(np.float32)
    q = np.array([[i * (n + 1) + j for i in range(n) for j in range(n)]]).T
    faces = np.concatenate([np.hstack([q, q + n + 1, q + n + 2]), np.hstack([q, q + n + 2, q + 1])]).astype(np.int32)
    uvs = (pos[faces][..., :2] + 0.5).astype(np.float32)
    return {"positions": pos, "faces": faces, "uvs": uvs}


@pytest.fixture(scope="module")
def limited(tmp_path_factory, tiny_sd_dir):
    """``serve --max-triangles 5000`` whose worker's engine default is 100 triangles."""
    runner = WorkerRunner(run_job="tests.helpers.small_engine:run_texture_job")
    srv = EngineServer(tmp_path_factory.mktemp("limited"), str(tiny_sd_dir), ["--max-triangles", "5000"],
                       runner=runner).start()
    yield srv
    srv.stop()


def job_count(client) -> int:
    return len(client.get("/v1/jobs").json()["jobs"])


def test_over_the_server_limit_is_413_and_creates_no_job(limited):
    mesh = grid_arrays(55)  # 6,050 triangles > 5,000
    with limited.client() as c:
        before = job_count(c)
        r = submit(c, mesh=npz_bytes(**mesh))
        assert r.status_code == 413, r.text
        body = r.json()
        assert body["kind"] == "mesh_too_large" and body["field"] == "max_triangles"
        assert "6,050 triangles is more than the limit of 5,000" in body["error"]
        assert "texbridge serve --max-triangles" in body["error"]
        assert job_count(c) == before
    assert not any((limited.data / "jobs").iterdir())


def test_raised_limit_textures_a_mesh_above_the_engine_default(limited):
    mesh = grid_arrays(23)  # 1,058 triangles: over the worker's engine default, under the server's 5,000
    assert 2 * 23 * 23 > SMALL_DEFAULT
    with limited.client() as c:
        r = submit(c, dict(TINY_SPEC, steps=2, preview_every=1), mesh=npz_bytes(**mesh))
        assert r.status_code == 201, r.text
        events = read_events(c, r.json()["id"])
        job = c.get(f"/v1/jobs/{r.json()['id']}").json()
    assert events[-1][1] == job["state"] == JobState.SUCCEEDED and job["error"] is None, job
    assert (limited.data / "jobs" / job["id"] / "texture.png").is_file()


@pytest.mark.parametrize("filename,mesh", [
    ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n"),
    ("m.npz", npz_bytes(positions=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 98]], np.int32))),
])
def test_face_index_past_the_vertices_is_400_at_submit(client, filename, mesh):
    before = job_count(client)
    r = submit(client, mesh=mesh, filename=filename)
    assert r.status_code == 400, r.text
    assert "face indices out of range" in r.json()["error"] and r.json()["kind"] == "mesh"
    assert job_count(client) == before


def test_addon_words_the_fix_with_its_own_names_and_the_cli_with_a_flag(limited, capsys):
    """The same engine error (kind mesh_too_large, field max_triangles): the add-on's client shows
    no ``--flag`` (it names the engine setting in Preferences); the CLI names ``--max-triangles``."""
    from blender_addon import client as addon_client
    from engine.assets import SAMPLE_MESH
    from engine.cli import main

    c = addon_client.EngineClient(limited.url, limited.token)
    with pytest.raises(addon_client.EngineRequestError) as err:
        c.submit(dict(TINY_SPEC), npz_bytes(**grid_arrays(55)))
    shown = str(err.value)
    assert err.value.status == 413 and "6,050 triangles is more than the limit of 5,000" in shown
    assert "the engine's triangle limit (Preferences > Engine start command)" in shown and "--" not in shown

    code = main(["render", str(SAMPLE_MESH), "--out", "/nonexistent/s.png", "--max-triangles", "100"])
    assert code == 3 and "decimate the mesh or raise --max-triangles" in capsys.readouterr().err


def test_addon_words_engine_errors_of_failed_jobs():
    """A failed job's event carries the engine error's fields (server.errors.error_body)."""
    from blender_addon import client as addon_client
    from engine.errors import cli_flag
    from engine.priors import loading
    from server.errors import error_body

    exc = loading._model_missing("owner/model")
    shown = addon_client.describe_error(error_body(exc))
    assert "set the Model field" in shown and "--" not in shown
    assert "set --model to the PATH" in exc.worded(cli_flag)
    assert addon_client.describe_error({"error": "plain words"}) == "plain words"
