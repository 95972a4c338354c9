"""--memory (low-VRAM levers, auto's rule) and --encoder tiny (TAESD) on tiny models, CPU."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ModelNotFoundError, SpecError
from engine.priors.memory import (GIB, MemoryConfig, MemoryMode, parse_memory_mode, peak_memory_bytes,
                                  resolve_memory_mode, views_per_step_for)
from engine.priors.setup import setup_prior
from engine.priors.tiny_encoder import EncoderKind, load_tiny_encoder, parse_encoder_kind
from tests.helpers.tiny_taesd import build_tiny_taesd, write_taesd_encoder_file

CPU = torch.device("cpu")


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
