"""Advanced > Memory / Encoder reach the submitted spec (only when not the engine's default)."""

from __future__ import annotations


def test_memory_and_encoder_reach_the_spec(addon, scene):
    from blender_addon import panel, props
    from engine.job import TextureJob
    from engine.priors.memory import MemoryMode
    from engine.priors.tiny_encoder import EncoderKind
    from tests.addon.blender_helpers import StubLayout

    assert [i[0] for i in props.MEMORY_ITEMS] == [m.value for m in MemoryMode]
    assert [i[0] for i in props.ENCODER_ITEMS] == [e.value for e in EncoderKind]
    s = scene.context.scene.texbridge
    s.prompt = "a bronze statue"
    spec = props.spec_from_settings(s)
    assert not {"memory", "encoder", "tiny_encoder"} & set(spec)  # defaults: the engine decides
    s.show_advanced = True
    s.memory, s.encoder, s.tiny_encoder = "low", "tiny", "/models/taesd"
    panel.draw_panel(StubLayout(), scene.context)
    spec = props.spec_from_settings(s)
    assert (spec["memory"], spec["encoder"], spec["tiny_encoder"]) == ("low", "tiny", "/models/taesd")
    job = TextureJob.from_dict(spec)
    assert (job.memory, job.encoder) == (MemoryMode.LOW, EncoderKind.TINY)
