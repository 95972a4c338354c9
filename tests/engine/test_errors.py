"""Engine errors carry a kind and a fix that each front end words for itself (issue 11)."""

from __future__ import annotations

import pickle

import pytest

from engine.cli import main
from engine.errors import BackendUnavailableError, Fix, SpecError, cli_flag


def test_fix_is_worded_by_the_front_end():
    exc = SpecError("checkpoint x is unreadable", kind="checkpoint_unreadable", fix=Fix("resume", "start again without {field}"))
    assert exc.worded(cli_flag) == "checkpoint x is unreadable; start again without --resume"
    assert str(exc) == "checkpoint x is unreadable; start again without 'resume'"  # neutral: no CLI flag
    assert exc.to_dict() == {"error": str(exc), "kind": "checkpoint_unreadable", "field": "resume",
                             "problem": "checkpoint x is unreadable", "fix": "start again without {field}"}
    assert exc.exit_code == 2 and SpecError("x").kind == "spec" and SpecError("x").fix is None


def test_kind_and_fix_survive_pickling():
    """Ray actors and worker processes hand errors back pickled."""
    exc = pickle.loads(pickle.dumps(BackendUnavailableError("no cuda", kind="cuda_unavailable", fix=Fix("device", "use {field} cpu"))))
    assert isinstance(exc, BackendUnavailableError) and exc.kind == "cuda_unavailable" and exc.fix.field == "device"
    assert exc.worded(cli_flag) == "no cuda; use --device cpu"


def test_cli_names_the_flag(capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    from engine.assets import SAMPLE_MESH

    code = main(["render", str(SAMPLE_MESH), "--out", "/tmp/never.png", "--backend", "numba", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 4 and "use --device cpu or auto" in err and "'device'" not in err
