"""--memory (low-VRAM levers, auto's rule) and --encoder tiny (TAESD) on tiny models, CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.errors import ModelNotFoundError, SpecError
from engine.priors.memory import (GIB, MemoryConfig, MemoryMode, parse_memory_mode, peak_memory_bytes,
                                  resolve_memory_mode, views_per_step_for)
from engine.priors.setup import setup_prior
from engine.priors.tiny_encoder import EncoderKind, load_tiny_encoder, parse_encoder_kind
from tests.helpers.tiny_taesd import build_tiny_taesd, write_taesd_encoder_file

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def taesd_dir(tmp_path_factory):
    return build_tiny_taesd(tmp_path_factory.mktemp("taesd") / "taesd")


@pytest.fixture()
def sd_prior(tiny_sd_dir):
    from engine.priors.loading import load_prior

    return load_prior(str(tiny_sd_dir), "cpu")


def test_auto_is_full_on_cpu_and_follows_free_vram_on_cuda():
    d = resolve_memory_mode("auto", CPU)
    assert d.mode is MemoryMode.FULL and d.free_bytes is None and "cpu" in d.reason
    cfg = MemoryConfig(auto_low_below_gib=10.0)
    cuda = torch.device("cuda")  # free_bytes given: nothing asks the (absent) GPU
    assert resolve_memory_mode("auto", cuda, cfg, free_bytes=int(9.5 * GIB)).mode is MemoryMode.LOW
    assert resolve_memory_mode("auto", cuda, cfg, free_bytes=10 * GIB).mode is MemoryMode.FULL
    assert resolve_memory_mode("LOW", CPU).mode is MemoryMode.LOW  # asked for: kept, case-insensitive
    assert resolve_memory_mode("full", cuda, cfg, free_bytes=1).mode is MemoryMode.FULL
    assert resolve_memory_mode("auto", cuda, cfg, free_bytes=GIB).to_dict()["free_bytes"] == GIB


def test_views_per_step_by_mode_and_peak_on_cpu():
    cuda = torch.device("cuda")
    assert views_per_step_for(MemoryMode.FULL, cuda, None) == 4
    assert views_per_step_for(MemoryMode.LOW, cuda, None) == 1
    assert views_per_step_for(MemoryMode.LOW, cuda, 3) == 3  # the job's value wins
    assert views_per_step_for(MemoryMode.FULL, CPU, None) == 1
    assert peak_memory_bytes(CPU) is None


@pytest.mark.parametrize("parse,bad,allowed", [(parse_memory_mode, "tiny", "auto, full, low"),
                                               (parse_encoder_kind, "small", "full, tiny")])
def test_bad_values_list_the_allowed_ones(parse, bad, allowed):
    with pytest.raises(SpecError, match=allowed):
        parse(bad)


def test_low_mode_turns_levers_on_and_full_turns_them_off(sd_prior):
    s = setup_prior(sd_prior, device=CPU, memory="low")
    assert s.memory.mode is MemoryMode.LOW and s.views_per_step == 1
    assert set(s.levers) == {"attention_slicing", "vae_slicing", "vae_encoder_checkpointing"}  # CPU: no fp16/offload
    assert all("Sliced" in type(p).__name__ for p in sd_prior.unet.attn_processors.values())
    assert sd_prior.vae.use_slicing and sd_prior.vae.encoder.gradient_checkpointing
    img = torch.rand(2, 3, 64, 64, requires_grad=True)
    sd_prior.encode_images(img).sum().backward()  # checkpointed encoder still back-propagates
    g_low = img.grad.clone()
    s = setup_prior(sd_prior, device=CPU, memory="full")
    assert s.levers == () and not sd_prior.vae.use_slicing and not sd_prior.vae.encoder.gradient_checkpointing
    assert not any("Sliced" in type(p).__name__ for p in sd_prior.unet.attn_processors.values())
    img.grad = None
    sd_prior.encode_images(img).sum().backward()
    torch.testing.assert_close(img.grad, g_low)  # the levers save memory, not change the math


def test_tiny_encoder_loads_offline_and_feeds_the_gradient(sd_prior, taesd_dir):
    images = torch.rand(2, 3, 64, 64)
    g = torch.randn(2, 4, 8, 8)

    def grad_of_images():
        x = images.clone().requires_grad_(True)
        z = sd_prior.encode_images(x)
        (z * g).sum().backward()
        return z.detach(), x.grad

    z_full, g_full = grad_of_images()
    s = setup_prior(sd_prior, device=CPU, encoder="tiny", tiny_encoder=str(taesd_dir))
    assert s.encoder is EncoderKind.TINY and s.tiny_encoder == str(taesd_dir.resolve())
    assert s.to_dict()["encoder"] == {"kind": "tiny", "weights": str(taesd_dir.resolve())}
    z_tiny, g_tiny = grad_of_images()
    assert z_tiny.shape == z_full.shape == (2, 4, 8, 8) and z_tiny.dtype == torch.float32
    assert torch.isfinite(z_tiny).all() and torch.isfinite(g_tiny).all() and g_tiny.abs().sum() > 0
    assert not torch.allclose(z_tiny, z_full) and not torch.allclose(g_tiny, g_full)
    # TAESD's latents are its encoder's output (scaling_factor 1.0), no extra scale
    direct = sd_prior.tiny_encoder.module.encode(images * 2 - 1).latents
    torch.testing.assert_close(z_tiny, direct)
    same = sd_prior.tiny_encoder
    setup_prior(sd_prior, device=CPU, encoder="tiny", tiny_encoder=str(taesd_dir))
    assert sd_prior.tiny_encoder is same  # reused by a later job (the server keeps priors loaded)
    setup_prior(sd_prior, device=CPU, encoder="full")
    assert sd_prior.tiny_encoder is None
    torch.testing.assert_close(grad_of_images()[1], g_full)


@pytest.mark.parametrize("original", [True, False])
def test_tiny_encoder_from_a_single_file(tmp_path, original):
    f = write_taesd_encoder_file(tmp_path / "taesd_encoder.safetensors", original_layout=original)
    enc = load_tiny_encoder(str(f), CPU, torch.float32)
    z = enc.encode(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert z.shape == (1, 4, 8, 8) and enc.scaling_factor == 1.0 and torch.isfinite(z).all()


def test_tiny_encoder_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download madebyollin/taesd"):
        load_tiny_encoder("madebyollin/taesd", CPU, torch.float32)
    with pytest.raises(SpecError, match="pickle"):
        load_tiny_encoder(str(tmp_path / "taesd.pt"), CPU, torch.float32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_tiny_encoder(str(tmp_path / "empty"), CPU, torch.float32)


def test_embedded_prior_records_the_mode_and_refuses_the_tiny_encoder(taesd_dir):
    from engine.priors.loading import load_prior

    prior = load_prior("embedded", "cpu")
    s = setup_prior(prior, device=CPU, memory="low")
    assert s.memory.mode is MemoryMode.LOW and s.levers == () and s.tiny_encoder is None
    assert s.to_dict()["memory"]["peak_allocated_bytes"] is None
    with pytest.raises(SpecError, match="allowed with this model: encoder full") as err:
        setup_prior(prior, device=CPU, encoder="tiny", tiny_encoder=str(taesd_dir))
    assert err.value.exit_code == 2
    assert math.isfinite(float(s.memory.threshold_gib))


# -- the CLI: flags resolved and recorded in job.json, bad values exit 2 --------------------------

def _texture_args(mesh, model, out, *extra):
    return ["texture", str(mesh), "--prompt", "a wooden crate", "--model", str(model), "--steps", "3",
            "--texture-size", "64", "--render-size", "64", "--device", "cpu", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def crate(tmp_path_factory):
    from engine.mesh import save_mesh_npz
    from tests.helpers.cube import cube_mesh

    p = tmp_path_factory.mktemp("mesh") / "crate.npz"
    save_mesh_npz(cube_mesh(), p)
    return p


def test_cli_records_memory_and_encoder_in_job_json(crate, tiny_sd_dir, taesd_dir, tmp_path):
    import json

    from engine.cli import main

    out = tmp_path / "low_tiny"
    assert main(_texture_args(crate, tiny_sd_dir, out, "--memory", "low", "--encoder", "tiny",
                              "--tiny-encoder", str(taesd_dir))) == 0
    rec = json.loads((out / "job.json").read_text())
    assert rec["status"] == "succeeded" and rec["spec"]["memory"] == "low" and rec["spec"]["encoder"] == "tiny"
    m = rec["memory"]
    assert (m["requested"], m["mode"], m["peak_allocated_bytes"]) == ("low", "low", None)  # no CUDA peak on a CPU
    assert "attention_slicing" in m["levers"] and m["auto_low_below_gib"] > 0
    assert rec["encoder"] == {"kind": "tiny", "weights": str(taesd_dir.resolve())}
    out = tmp_path / "defaults"
    assert main(_texture_args(crate, tiny_sd_dir, out)) == 0
    rec = json.loads((out / "job.json").read_text())
    assert (rec["memory"]["requested"], rec["memory"]["mode"], rec["memory"]["levers"]) == ("auto", "full", [])
    assert rec["encoder"] == {"kind": "full", "weights": None}


@pytest.mark.parametrize("flag,bad,allowed", [("--memory", "huge", "auto, full, low"),
                                              ("--encoder", "small", "full, tiny")])
def test_cli_bad_values_exit_2_with_the_allowed_ones(crate, tmp_path, flag, bad, allowed):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "server.cli", *_texture_args(crate, "embedded", tmp_path / "o", flag, bad)],
                       capture_output=True, text=True, timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 2, r.stderr
    assert bad in r.stderr and all(v in r.stderr for v in allowed.split(", "))


def test_cli_tiny_encoder_with_the_embedded_model_is_exit_2(crate, taesd_dir, tmp_path, capsys):
    from engine.cli import main

    code = main(_texture_args(crate, "embedded", tmp_path / "e", "--encoder", "tiny", "--tiny-encoder", str(taesd_dir)))
    assert code == 2
    assert "allowed with this model: encoder full" in capsys.readouterr().err


def test_spec_json_carries_the_fields_and_rejects_bad_ones():
    from engine.job import TextureJob

    job = TextureJob.from_dict({"prompt": "x", "memory": "low", "encoder": "tiny", "tiny_encoder": "/m/taesd"})
    assert (job.memory, job.encoder, job.tiny_encoder) == (MemoryMode.LOW, EncoderKind.TINY, "/m/taesd")
    assert TextureJob.from_json(job.to_json()) == job
    with pytest.raises(SpecError, match="allowed: auto, full, low"):
        TextureJob.from_dict({"prompt": "x", "memory": 8})
    with pytest.raises(SpecError, match="tiny_encoder is empty"):
        TextureJob(prompt="x", encoder="tiny", tiny_encoder=" ")
