"""Advanced > "Follow geometry": the ControlNet settings reach the submitted spec and Refine's."""

from __future__ import annotations

import json

from tests.addon.blender_helpers import StubLayout, activate, add_monkey


class _Rec:
    state = "succeeded"
    error = ""
    texture_path = ""
    job_id = "follow-geometry-test"


def _capture_submit(monkeypatch):
    from blender_addon import jobs

    sent = []

    def submit(obj, spec, **kw):
        sent.append(json.loads(json.dumps(spec)))  # what goes over the wire
        return _Rec()

    monkeypatch.setattr(jobs, "submit", submit)
    monkeypatch.setattr(jobs, "wait", lambda rec: None)
    return sent


def test_follow_geometry_reaches_the_submitted_spec(addon, scene, monkeypatch):
    bpy = scene
    from blender_addon import panel, props
    from engine.job import TextureJob

    sent = _capture_submit(monkeypatch)
    a = add_monkey(bpy, "A", subdiv=0)
    activate(bpy, a)
    s = bpy.context.scene.texbridge
    s.prompt = "a bronze statue"
    try:
        assert bpy.ops.texbridge.generate() == {"FINISHED"}
        assert not {"controlnet", "control", "control_scale"} & set(sent[-1])  # off by default

        s.show_advanced = True
        layout = StubLayout()
        panel.draw_panel(layout, bpy.context)  # the toggle and its fields draw (StubLayout checks the names)
        s.follow_geometry, s.control, s.control_scale = True, "normal", 0.7
        s.controlnet_model = "thibaud/controlnet-sd21-depth-diffusers"
        panel.draw_panel(StubLayout(), bpy.context)
        assert bpy.ops.texbridge.generate() == {"FINISHED"}
        spec = sent[-1]
        assert spec["controlnet"] == "thibaud/controlnet-sd21-depth-diffusers"
        assert spec["control"] == "normal" and abs(spec["control_scale"] - 0.7) < 1e-6
        job = TextureJob.from_dict(spec)  # the engine accepts it as sent
        assert job.controlnet == spec["controlnet"] and job.control.value == "normal"

        # Stored on the object after the job: Refine sends the same ControlNet settings.
        a.texbridge.spec_json = json.dumps(spec, sort_keys=True)
        again = props.refine_spec(a.texbridge.spec_json, "green moss")
        assert (again["controlnet"], again["control"], again["control_scale"]) == (
            spec["controlnet"], "normal", spec["control_scale"])

        # Toggle on without a model: nothing is sent and the panel says what is missing.
        s.controlnet_model = ""
        assert "controlnet" not in props.spec_from_settings(s)
        layout = StubLayout()
        panel.draw_panel(layout, bpy.context)
        assert any("ControlNet model" in line for line in layout.log)
    finally:
        s.prompt, s.show_advanced, s.follow_geometry, s.controlnet_model = "", False, False, ""
