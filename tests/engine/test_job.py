"""TextureJob validation and JSON round trip."""

from __future__ import annotations

import json

import pytest

from engine.errors import SpecError
from engine.guidance.method import GuidanceMethod
from engine.job import SCHEMA_VERSION, TextureJob


def test_json_round_trip():
    job = TextureJob(prompt="red bricks", mesh="m.obj", method="sds", steps=30, texture_size=256, cfg_scale=12.5)
    data = json.loads(job.to_json())
    assert data["schema_version"] == SCHEMA_VERSION and data["method"] == "sds"
    again = TextureJob.from_json(job.to_json())
    assert again == job and again.method is GuidanceMethod.SDS


@pytest.mark.parametrize(
    "fields, allowed",
    [
        ({"steps": -5}, "allowed: 1..1000000"),
        ({"steps": 0}, "allowed: 1..1000000"),
        ({"texture_size": 16384}, "allowed: 64..8192"),
        ({"texture_size": 1000}, "allowed: 64, 128, 256, 512, 1024, 2048, 4096, 8192"),
        ({"method": "vsd"}, "allowed: sds, nfsd, bridge"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"device": "tpu"}, "allowed: auto, cpu, cuda"),
        ({"stage_two_start": 5000, "steps": 100}, "allowed: 0..100"),
        ({"learning_rate": 0}, "allowed: (0, 10]"),
    ],
)
def test_bad_values_list_what_is_allowed(fields, allowed):
    with pytest.raises(SpecError) as err:
        TextureJob(**{"prompt": "x", **fields})
    assert allowed in str(err.value)
    assert err.value.exit_code == 2


def test_from_dict_rejects_unknown_fields_and_versions():
    with pytest.raises(SpecError, match="unknown job spec field"):
        TextureJob.from_dict({"prompt": "x", "stepz": 3})
    with pytest.raises(SpecError, match="schema_version=99"):
        TextureJob.from_dict({"prompt": "x", "schema_version": 99})
    with pytest.raises(SpecError, match="not valid JSON"):
        TextureJob.from_json("{")


def test_stage_two_start_default_is_the_recipes_fraction():
    assert TextureJob(prompt="x", steps=1000, recipe="paper-2d").resolve().stage_two_start == 500
    assert TextureJob(prompt="x", steps=1000, recipe="paper-3d").resolve().stage_two_start == 800
    assert TextureJob(prompt="x", steps=10, stage_two_start=3).resolve().stage_two_start == 3
