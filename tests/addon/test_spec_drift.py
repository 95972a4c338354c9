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
    s.recipe, s.views, s.render_size, s.target_modifier = "paper-3d", "closeup", 96, ", sharp"
    try:
        spec = props.spec_from_settings(s)
        assert (spec["recipe"], spec["views"], spec["render_size"], spec["target_modifier"]) == ("paper-3d", "closeup", 96, ", sharp")
        assert "source_modifier" not in spec
    finally:
        for name in ("recipe", "views", "render_size", "target_modifier", "prompt"):
            s.property_unset(name)
