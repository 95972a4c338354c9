"""The add-on against a real engine process on loopback (tiny model, tiny jobs).

Timers never fire in the bpy module, so the tests call ``jobs.pump()`` themselves
(what ``bpy.app.timers`` does in the UI) and the operators run synchronously (background mode).
"""

from __future__ import annotations

import json
import os
import socket
import time

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.addon.blender_helpers import StubLayout, activate, add_monkey
from tests.addon.engine_server import EngineProcess

TINY = dict(steps=8, use_custom_render_size=True, render_size=64, texture_size="64", preview_every=2, seed=3)
TIMEOUT = 400.0  # the first job loads the model and JIT-compiles the rasterizer; a shared CPU is slow


@pytest.fixture(scope="module")
def engine(tiny_sd_dir, tmp_path_factory):
    eng = EngineProcess(tmp_path_factory.mktemp("engine"), str(tiny_sd_dir)).start()
    old = os.environ.get("TEXBRIDGE_RUNTIME_DIR")
    os.environ["TEXBRIDGE_RUNTIME_DIR"] = str(eng.runtime)
    try:
        yield eng
    finally:
        if old is None:
            os.environ.pop("TEXBRIDGE_RUNTIME_DIR", None)
        else:
            os.environ["TEXBRIDGE_RUNTIME_DIR"] = old
        eng.stop()


@pytest.fixture(scope="module")
def live_addon(bpy_mod, engine):
    import blender_addon

    blender_addon.register()
    try:
        yield blender_addon
    finally:
        blender_addon.unregister()  # also cancels and joins anything still running


@pytest.fixture
def tb(live_addon, scene):
    """Registered add-on, clean scene, default prefs (URL and token from the discovery file)."""
    from blender_addon import jobs, prefs

    prefs.FALLBACK.engine_url = prefs.FALLBACK.token = ""
    jobs.set_error("")
    s = scene.context.scene.texbridge
    s.prompt = "red brick wall"
    for k, v in TINY.items():
        setattr(s, k, v)
    yield live_addon
    jobs.shutdown(cancel_running=True, join_timeout=5.0)
    prefs.FALLBACK.engine_url = prefs.FALLBACK.token = ""


def _pixels(bpy, name):
    img = bpy.data.images[name]
    out = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(out)
    return out


def _pump_until_done(rec, timeout=TIMEOUT, each=None):
    from blender_addon import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.pump()
        if each is not None:
            each()
        if not rec.active and not rec.inbox:
            return rec
        time.sleep(0.02)
    raise AssertionError(f"job {rec.job_id} still {rec.state} after {timeout} s")


def _start_long_job(bpy, obj):
    """Submit a 5000-step job for ``obj`` and pump until its first step has arrived."""
    from blender_addon import jobs, props

    spec = props.spec_from_settings(bpy.context.scene.texbridge)
    spec["steps"] = 5000
    rec = jobs.submit(obj, spec)
    deadline = time.monotonic() + TIMEOUT
    while rec.step < 1 and time.monotonic() < deadline:
        jobs.pump()
        time.sleep(0.05)
    return rec


def test_generate_previews_arrive_and_material_shows_image(tb, scene, engine):
    bpy = scene
    from blender_addon import client, jobs, materials, props

    a = add_monkey(bpy, "A", subdiv=0)
    b = add_monkey(bpy, "B", subdiv=0, location=(3, 0, 0))
    b_mat = bpy.data.materials.new("B material")
    b_mat.use_nodes = True
    b.data.materials.append(b_mat)
    b_nodes = sorted(n.bl_idname for n in b_mat.node_tree.nodes)
    activate(bpy, a)

    rec = jobs.submit(a, props.spec_from_settings(bpy.context.scene.texbridge))
    seen = [_pixels(bpy, rec.image_name).tobytes()]
    changes_before_success = []

    def watch():
        now = _pixels(bpy, rec.image_name).tobytes()
        if now != seen[-1]:
            seen.append(now)
            if rec.state != "succeeded":
                changes_before_success.append(rec.step)

    _pump_until_done(rec, each=watch)
    assert rec.state == "succeeded", rec.error
    assert len(changes_before_success) >= 2, f"pixels changed only at steps {changes_before_success}"

    # the final image is the engine's final texture, in Blender's bottom-up row order
    w, h, _, data = client.EngineClient(engine.url, engine.token).texture_rgba8(rec.job_id)
    expect = np.frombuffer(data, np.uint8).reshape(h, w, 4)[::-1]
    got = np.rint(_pixels(bpy, rec.image_name).reshape(h, w, 4) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expect)

    mat = a.material_slots[0].material
    assert materials.is_wired(mat, bpy.data.images[rec.image_name])
    assert b.material_slots[0].material == b_mat and not materials.is_wired(b_mat, bpy.data.images[rec.image_name])
    assert sorted(n.bl_idname for n in b_mat.node_tree.nodes) == b_nodes
    assert bpy.data.images[rec.image_name].packed_file is not None  # unsaved .blend: packed
    stored = json.loads(a.texbridge.spec_json)
    assert stored["prompt"] == "red brick wall" and stored["steps"] == 8 and a.texbridge.job_id == rec.job_id
    assert rec.applies >= 3

    # the real engine's stream honours Last-Event-ID (what the worker's reconnect relies on)
    replay = list(client.EngineClient(engine.url, engine.token).events(rec.job_id, last_event_id=3, read_timeout=30))
    assert replay[0].id == 4 and replay[-1].type == "succeeded"


def test_cancel_puts_job_in_cancelled(tb, scene, engine):
    bpy = scene
    from blender_addon import client

    a = add_monkey(bpy, "A", subdiv=0)
    activate(bpy, a)
    rec = _start_long_job(bpy, a)
    assert rec.state == "running"
    assert bpy.ops.texbridge.cancel() == {"FINISHED"}
    _pump_until_done(rec)
    assert rec.state == "cancelled"
    assert client.EngineClient(engine.url, engine.token).job(rec.job_id)["state"] == "cancelled"


def test_disabling_the_addon_cancels_and_joins(tb, scene, engine):
    bpy = scene
    from blender_addon import client, jobs

    a = add_monkey(bpy, "A", subdiv=0)
    rec = _start_long_job(bpy, a)
    tb.unregister()  # what disabling the add-on (or exiting Blender, via atexit) runs
    try:
        assert not rec.thread.is_alive() and jobs.all_jobs() == []
        c = client.EngineClient(engine.url, engine.token)
        deadline = time.monotonic() + 60
        while c.job(rec.job_id)["state"] != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.job(rec.job_id)["state"] == "cancelled"
    finally:
        tb.register()


def test_engine_down_and_wrong_token_are_said_in_words(tb, scene, engine):
    bpy = scene
    from blender_addon import connection, jobs, panel, prefs

    a = add_monkey(bpy, "A", subdiv=0)
    activate(bpy, a)
    assert connection.refresh_health().kind == "ok"
    assert panel.compute_status(bpy.context).can_generate
    assert bpy.ops.texbridge.unload_model() == {"FINISHED"}  # the preferences' Unload model button
    assert connection.refresh_health().data["loaded_model"] is None

    prefs.FALLBACK.token = "not-the-token"
    connection.refresh_health()
    st = panel.compute_status(bpy.context)
    assert not st.can_generate and "token" in st.text and st.fix_op == "texbridge.reload_token"
    layout = StubLayout()
    panel.draw_panel(layout, bpy.context)
    assert any("wrong token" in line for line in layout.log) and "[Re-read token]" in layout.log
    with pytest.raises(RuntimeError, match="wrong token"):  # bpy.ops turns an ERROR report into RuntimeError
        bpy.ops.texbridge.generate()
    assert "wrong token" in jobs.last_error
    assert bpy.ops.texbridge.reload_token() == {"FINISHED"}  # the fix button: token from the discovery file
    assert connection.health_state().kind == "ok"

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefs.FALLBACK.engine_url = f"http://127.0.0.1:{port}"
    connection.refresh_health()
    st = panel.compute_status(bpy.context)
    assert not st.can_generate and st.text.startswith("Engine not running") and st.fix_op == "texbridge.start_engine"
    layout = StubLayout()
    panel.draw_panel(layout, bpy.context)
    assert "[Start engine]" in layout.log
    jobs.pump()
    assert jobs.timer_pump() > 0  # the timer callback never raises either

    bpy.ops.object.empty_add()
    st = panel.compute_status(bpy.context)
    assert not st.can_generate and st.text.startswith("No mesh selected")


def test_mesh_without_uvs_is_unwrapped_and_succeeds(tb, scene, engine):
    bpy = scene
    from blender_addon import jobs, props

    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    cube.data.uv_layers.remove(cube.data.uv_layers[0])
    cube.data.update()
    spec = props.spec_from_settings(bpy.context.scene.texbridge)
    spec["steps"] = 2
    with pytest.raises(Exception, match="no UV map"):
        jobs.submit(cube, spec, unwrap=False)
    rec = _pump_until_done(jobs.submit(cube, spec, unwrap=True))
    assert rec.state == "succeeded", rec.error
    assert cube.data.uv_layers.active is not None


def test_background_generate_runs_synchronously_and_saves(tb, scene, engine, tmp_path):
    bpy = scene
    from blender_addon import client, jobs, materials

    assert bpy.app.background
    a = add_monkey(bpy, "Suzanne", subdiv=1)
    activate(bpy, a)
    bpy.context.scene.texbridge.steps = 2
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    try:
        assert bpy.ops.texbridge.generate() == {"FINISHED"}  # returns only when the job is done
        rec = jobs.job_for_object("Suzanne")
        assert rec.state == "succeeded"
        path = tmp_path / f"Suzanne_texbridge_{rec.job_id[:8]}.png"
        assert rec.texture_path == str(path) and path.exists()
        img = bpy.data.images[rec.image_name]
        assert materials.is_wired(a.material_slots[0].material, img)
        w, h, _, data = client.EngineClient(engine.url, engine.token).texture_rgba8(rec.job_id)
        on_disk = np.asarray(PILImage.open(path).convert("RGBA"))
        np.testing.assert_array_equal(on_disk, np.frombuffer(data, np.uint8).reshape(h, w, 4))
        assert a.texbridge.texture_path == str(path)

        # Refine: edit prompt on the selected faces, starting from the current texture
        sel = np.zeros(len(a.data.polygons), bool)
        sel[::3] = True
        a.data.polygons.foreach_set("select", sel)
        a.data.update()
        s = bpy.context.scene.texbridge
        s.refine_prompt, s.refine_selected_only = "green moss", True
        assert bpy.ops.texbridge.refine() == {"FINISHED"}
        ref = jobs.job_for_object("Suzanne")
        assert ref.job_id != rec.job_id and ref.state == "succeeded" and ref.kind == "refine"
        spec = client.EngineClient(engine.url, engine.token).job(ref.job_id)["spec"]
        assert (spec["prompt"], spec["edit_source_prompt"]) == ("green moss", "red brick wall")
        assert spec["init_texture"]  # the current texture was uploaded as the starting point
        assert json.loads(a.texbridge.spec_json)["prompt"] == "green moss"
        assert materials.is_wired(a.material_slots[0].material, bpy.data.images[ref.image_name])
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)
