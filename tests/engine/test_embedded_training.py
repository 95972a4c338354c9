"""``scripts/train_embedded_prior.py``: seeded and resumable, bit for bit (issue 6: the shipped
weights must be reproducible from the documented command). A few tiny-batch steps of the real
model and the real script; the full run's reproduction is recorded in the model card."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_embedded_prior.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_embedded_prior", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(argv) == 0


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    out.update({"text." + k: v for k, v in load_file(str(folder / "text_encoder" / "model.safetensors")).items()})
    return out


def test_interrupted_and_resumed_training_equals_a_straight_run(tmp_path):
    common = ["--seed", "3", "--steps", "6", "--batch-size", "4", "--warmup", "2", "--threads", "1", "--ckpt-every", "2"]
    _train(common + ["--work", str(tmp_path / "a"), "--out", str(tmp_path / "a" / "model")])
    _train(common + ["--work", str(tmp_path / "b"), "--out", str(tmp_path / "b" / "model"), "--stop-at", "3"])
    _train(common + ["--work", str(tmp_path / "b"), "--out", str(tmp_path / "b" / "model"), "--resume"])
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and training did something: the EMA weights moved away from the seeded initialisation
    _train(common + ["--work", str(tmp_path / "c"), "--out", str(tmp_path / "c" / "model"), "--stop-at", "0"])
    init = _weights(tmp_path / "c" / "model")
    assert any(not torch.equal(a[k], init[k]) for k in a)
