"""The status box and the panel's drawing, for each situation (cached engine state set directly)."""

from __future__ import annotations

import time

from tests.addon.blender_helpers import StubLayout, activate, add_monkey


def _health(kind, message, data=None):
    from blender_addon import connection

    connection.set_health(connection.HealthState(kind, message, data or {}, time.monotonic()))


def test_status_for_each_situation(addon, scene):
    bpy = scene
    from blender_addon import jobs, panel

    s = bpy.context.scene.texbridge
    s.prompt = ""
    _health("ok", "engine ready on cpu (tiny)")
    bpy.context.view_layer.objects.active = None
    st = panel.compute_status(bpy.context)
    assert (st.can_generate, st.text) == (False, "No mesh selected: select a mesh object to texture")

    bpy.ops.object.camera_add()
    assert panel.compute_status(bpy.context).text.startswith("No mesh selected: 'Camera' is a camera")

    a = add_monkey(bpy, "A", subdiv=0)
    activate(bpy, a)
    st = panel.compute_status(bpy.context)
    assert (st.can_generate, st.text) == (False, panel.PROMPT_MISSING)
    s.prompt = "red brick wall"
    st = panel.compute_status(bpy.context)
    assert st.can_generate and st.text == "Ready: engine ready on cpu (tiny)"

    _health("busy", "engine busy: job 1234abcd running, 0 queued (new jobs wait in line)")
    st = panel.compute_status(bpy.context)
    assert st.can_generate and st.level == "WARNING" and "busy" in st.text

    _health("unknown", "engine starting...")
    st = panel.compute_status(bpy.context)
    assert not st.can_generate and st.fix_op == "texbridge.refresh_status"

    _health("ok", "engine ready")
    jobs.set_error("job failed: out of memory")
    st = panel.compute_status(bpy.context)
    assert st.level == "ERROR" and "out of memory" in st.text and st.fix_op == "texbridge.clear_error"
    assert bpy.ops.texbridge.clear_error() == {"FINISHED"} and jobs.last_error == ""

    a.data.uv_layers.remove(a.data.uv_layers[0])
    st = panel.compute_status(bpy.context)
    assert st.can_generate and "no UV map" in st.text and st.fix_op == "texbridge.smart_uv"
    assert bpy.ops.texbridge.smart_uv() == {"FINISHED"} and a.data.uv_layers
    s.prompt = ""


def test_draw_panel_with_running_job_and_advanced(addon, scene):
    bpy = scene
    from blender_addon import client, jobs, panel

    a = add_monkey(bpy, "A", subdiv=0)
    activate(bpy, a)
    s = bpy.context.scene.texbridge
    s.prompt, s.show_advanced = "red brick wall", True
    _health("ok", "engine ready")
    rec = jobs.JobRecord(job_id="local-draw", object_name="A", image_name="", spec={},
                         client=client.EngineClient("http://127.0.0.1:9", "t"), state="running",
                         step=150, total_steps=600, stage=2, eta_s=95.0)
    jobs._JOBS[rec.job_id] = rec
    try:
        layout = StubLayout()
        st = panel.draw_panel(layout, bpy.context)
        assert not st.can_generate and st.text == "Generating on 'A': stage 2/2 bridge, step 150/600, ETA 1m35s"
        assert "progress 0.25 stage 2/2 bridge, step 150/600, ETA 1m35s" in layout.log
        assert "[texbridge.cancel]" in layout.log
        a.texbridge.spec_json = '{"prompt": "red brick wall"}'
        rec.state = "succeeded"
        layout = StubLayout()
        panel.draw_panel(layout, bpy.context)
        assert "Last job: succeeded" in layout.log and "Refine" in layout.log
    finally:
        jobs._JOBS.pop(rec.job_id, None)
        s.prompt, s.show_advanced = "", False
