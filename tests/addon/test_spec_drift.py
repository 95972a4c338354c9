"""The add-on repeats the engine's job vocabulary (it never imports the engine): check it matches.

Fails when a choice list, a limit or a default of the add-on drifts from ``engine.job.TextureJob``.
"""

from __future__ import annotations

import dataclasses


def test_addon_choices_match_the_engine(addon, scene):
    from blender_addon import props
    from engine.cameras import ViewMode
    from engine.guidance.method import GuidanceMethod
    from engine.guidance.recipe import Recipe
    from engine.job import MAX_TEXTURE_SIZE, SCHEMA_VERSION

    assert sorted(i[0] for i in props.METHOD_ITEMS) == sorted(m.value for m in GuidanceMethod)
    assert [i[0] for i in props.RECIPE_ITEMS] == [r.value for r in Recipe]
    assert [i[0] for i in props.VIEWS_ITEMS] == [v.value for v in ViewMode]
    assert props.SCHEMA_VERSION == SCHEMA_VERSION
    sizes = [int(i[0]) for i in props.TEXTURE_SIZE_ITEMS]
    assert all(64 <= n <= MAX_TEXTURE_SIZE and n & (n - 1) == 0 for n in sizes)


#: panel properties whose "not set" value is a sentinel the add-on does not send (the engine's
#: default then applies), and "steps", which the quality preset sets.
SENTINELS = {"render_size": None, "stage_two_start": 0, "source_modifier": "", "target_modifier": "", "cfg_scale": None,
             "steps": None, "prompt": ""}


def test_every_panel_field_matches_the_engine_schema(addon, scene):
    """Each panel property named like a TextureJob field has the engine's choices, a range inside
    the engine's, and the engine's default (engine.jobschema); new fields are checked too."""
    from blender_addon import props
    from engine import jobschema
    from engine.job import TextureJob

    rna = props.TexbridgeSettings.bl_rna.properties
    schema = {fs.name: fs for fs in jobschema.fields(TextureJob)}
    checked = []
    for name in rna.keys():
        fs = schema.get(name)
        if fs is None:
            continue
        p = rna[name]
        checked.append(name)
        if p.type == "ENUM":
            ids = [i.identifier for i in p.enum_items]
            if fs.choices is not None:
                assert sorted(ids) == sorted(fs.choices), name
            else:  # a number offered as a list (texture size)
                assert all(fs.lo <= int(i) <= fs.hi for i in ids), name
        if p.type in ("INT", "FLOAT"):
            low = p.hard_min if SENTINELS.get(name) != p.hard_min else p.hard_min + 1
            assert fs.lo is None or low >= fs.lo, (name, p.hard_min, fs.lo)
            assert fs.hi is None or p.hard_max <= fs.hi, (name, p.hard_max, fs.hi)
        if name in SENTINELS:
            assert SENTINELS[name] is None or p.default == SENTINELS[name], name
        elif not fs.required:
            engine_default = fs.default_value
            default = p.default
            if p.type == "ENUM" and fs.choices is None:
                default = int(default)
            assert default == engine_default, (name, default, engine_default)
    assert {"method", "recipe", "views", "steps", "texture_size", "seed", "model", "cfg_scale"} <= set(checked)


def test_default_panel_spec_is_the_engine_default_job(addon, scene):
    """The panel's untouched settings submit a job that resolves like the engine's defaults."""
    from blender_addon import props
    from engine.job import TextureJob

    s = scene.context.scene.texbridge
    s.prompt = "red bricks"
    spec = props.spec_from_settings(s)
    job = TextureJob.from_dict(spec)
    default = TextureJob(prompt="red bricks")
    same = ("method", "recipe", "views", "render_size", "cfg_scale", "stage_two_start", "source_modifier",
            "target_modifier", "learning_rate", "seed", "model", "texture_size")
    assert {k: getattr(job, k) for k in same} == {k: getattr(default, k) for k in same}
    assert job.steps == props.PRESETS[s.preset]
    fields = {f.name for f in dataclasses.fields(TextureJob)}
    assert set(spec) - {"schema_version"} <= fields


def test_recipe_and_views_reach_the_spec(addon, scene):
    from blender_addon import props

    s = scene.context.scene.texbridge
    s.prompt = "blue tiles"
    s.recipe, s.views, s.use_custom_render_size, s.render_size, s.target_modifier = "paper-3d", "closeup", True, 96, ", sharp"
    try:
        spec = props.spec_from_settings(s)
        assert (spec["recipe"], spec["views"], spec["render_size"], spec["target_modifier"]) == ("paper-3d", "closeup", 96, ", sharp")
        assert "source_modifier" not in spec
    finally:
        for name in ("recipe", "views", "use_custom_render_size", "render_size", "target_modifier", "prompt"):
            s.property_unset(name)


def test_addon_state_words_match_the_engine(addon):
    """One state vocabulary: the add-on's copy of ``engine.jobstate.JobState``'s words."""
    from blender_addon import client, jobs
    from engine.jobstate import TERMINAL, WORDS, JobState

    assert client.JOB_STATES == WORDS
    assert (client.QUEUED, client.RUNNING, client.SUCCEEDED, client.FAILED, client.CANCELLED) == tuple(JobState)
    assert set(client.TERMINAL_EVENTS) == TERMINAL
    assert set(jobs.ACTIVE_STATES) == {s.value for s in JobState if not s.terminal}


def test_addon_config_dir_matches_the_server(monkeypatch, tmp_path):
    """The add-on's stdlib copy of the config-folder resolver finds the discovery file where
    ``texbridge serve`` writes it (``server.discovery.user_dir``), on every platform."""
    import sys

    from blender_addon import client
    from server import discovery

    monkeypatch.delenv("TEXBRIDGE_RUNTIME_DIR", raising=False)
    for platform in ("linux", "darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        for env in ({}, {"APPDATA": str(tmp_path / "roaming"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}):
            for var in ("APPDATA", "XDG_CONFIG_HOME"):
                monkeypatch.delenv(var, raising=False)
            for var, value in env.items():
                monkeypatch.setenv(var, value)
            assert client.config_dir() == discovery.user_dir("config"), (platform, env)
            assert client.discovery_paths()[0] == discovery.discovery_path(), (platform, env)
