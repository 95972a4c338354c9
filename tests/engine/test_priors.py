"""The SD prior and model loading, through diffusers' real loading code (offline).

The tiny random SD folder (``tiny_sd_dir``) stands in for real weights.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from engine.errors import ModelNotFoundError, SpecError, cli_flag
from engine.priors.base import DiffusionPrior
from engine.priors.loading import DEFAULT_HUB_MODEL, ModelKind, ModelRef, load_prior
from engine.priors.stable_diffusion import StableDiffusionPrior


pytestmark = pytest.mark.usefixtures("one_thread")


def test_folder_loads_as_prior(prior, tiny_sd_dir):
    assert isinstance(prior, DiffusionPrior)
    assert prior.name == str(tiny_sd_dir.resolve())
    assert prior.resolution == 64 and prior.latent_channels == 4
    assert prior.dtype == torch.float32 and prior.device.type == "cpu"
    assert prior.alphas_cumprod.shape == (1000,) and prior.prediction_type == "epsilon"
    assert float(prior.alphas_cumprod[0]) > float(prior.alphas_cumprod[-1])


def test_prompt_embeddings_are_cached(prior):
    e = prior.encode_prompts(["a red brick wall", "", "a red brick wall"])
    assert e.shape == (3, 77, 32)
    assert torch.equal(e[0], e[2]) and not torch.equal(e[0], e[1])
    assert "a red brick wall" in prior._cache
    calls = []
    h = prior.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = prior.encode_prompts(["a red brick wall", ""])
        assert calls == [] and torch.equal(again[0], e[0])  # served from the cache
        prior.encode_prompts(["something new"])
        assert calls == [1]
    finally:
        h.remove()


def test_encode_images_has_gradient(prior):
    img = torch.full((2, 3, 64, 64), 0.5, requires_grad=True)
    z = prior.encode_images(img)
    assert z.shape == (2, 4, 8, 8) and z.dtype == torch.float32
    z.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_predict_noise_batch_and_v_prediction(prior):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([50, 700])
    emb = prior.encode_prompts(["a", "b"])
    eps = prior.predict_noise(x, t, emb)
    assert eps.shape == x.shape and eps.dtype == torch.float32 and not eps.requires_grad
    # The same network read as a v-prediction model: eps = sqrt(ab) v + sqrt(1-ab) x_t.
    vprior = StableDiffusionPrior(
        name="v", tokenizer=prior.tokenizer, text_encoder=prior.text_encoder, vae=prior.vae, unet=prior.unet,
        alphas_cumprod=prior.alphas_cumprod, prediction_type="v_prediction",
    )
    ab = prior.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    assert torch.allclose(vprior.predict_noise(x, t, emb), ab.sqrt() * eps + (1 - ab).sqrt() * x, atol=1e-5)
    with pytest.raises(SpecError, match="epsilon and v_prediction"):
        StableDiffusionPrior(name="s", tokenizer=None, text_encoder=prior.text_encoder, vae=prior.vae, unet=prior.unet,
                             alphas_cumprod=prior.alphas_cumprod, prediction_type="sample")


def test_model_ref_parsing(tmp_path, tiny_sd_dir):
    assert ModelRef.parse("auto").kind is ModelKind.AUTO
    assert ModelRef.parse("Embedded").kind is ModelKind.EMBEDDED
    assert ModelRef.parse(DEFAULT_HUB_MODEL) == ModelRef(ModelKind.HUB, DEFAULT_HUB_MODEL)
    assert ModelRef.parse(str(tiny_sd_dir)).kind is ModelKind.FOLDER
    assert ModelRef.parse(str(tmp_path / "m.safetensors")).kind is ModelKind.SINGLE_FILE
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        ModelRef.parse("./not/here")
    with pytest.raises(SpecError):
        ModelRef.parse("  ")


def test_uncached_hub_id_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as err:
        load_prior(DEFAULT_HUB_MODEL, "cpu")
    msg = str(err.value)
    assert DEFAULT_HUB_MODEL in msg and str(tmp_path / "hub") in msg
    assert f"huggingface-cli download {DEFAULT_HUB_MODEL}" in msg and "set 'model' to the PATH" in msg
    assert "--model" not in msg  # the neutral wording (server, add-on); the CLI names the flag:
    assert "set --model to the PATH" in err.value.worded(cli_flag)
    assert err.value.exit_code == 5 and err.value.kind == "model_not_cached" and err.value.fix.field == "model"


def test_auto_uses_cached_sd(tmp_path, monkeypatch, tiny_sd_dir):
    """A hub cache laid out as huggingface_hub writes it (the tiny model stands in for SD 2.1-base)."""
    cache = tmp_path / "hub"
    repo = cache / ("models--" + DEFAULT_HUB_MODEL.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(tiny_sd_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    p = load_prior("auto", "cpu")
    assert p.name == DEFAULT_HUB_MODEL and p.resolution == 64


def test_pickle_checkpoints_refused(tmp_path):
    f = tmp_path / "model.ckpt"
    f.write_bytes(b"not really")
    with pytest.raises(SpecError, match="safetensors"):
        load_prior(str(f), "cpu")


def test_single_file_unusable_checkpoint_error(tmp_path, tiny_sd_dir):
    """Single-file loading goes through diffusers' from_single_file; a non-SD file gives a clear error."""
    from safetensors.torch import save_file

    f = tmp_path / "random.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(f))
    with pytest.raises(ModelNotFoundError, match="could not load random.safetensors as a Stable Diffusion checkpoint"):
        load_prior(str(f), "cpu", single_file_config=str(tiny_sd_dir))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_prior(str(tmp_path / "missing.safetensors"), "cpu")


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_prior(str(tmp_path), "cpu")


def test_auto_without_sd_falls_back_to_embedded(tmp_path, monkeypatch, caplog):
    """Nothing cached: the embedded model with a warning naming the download command, or (while its
    weights are not shipped) one error that names both."""
    from engine.priors.embedded import EMBEDDED_MODEL_DIR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    if (EMBEDDED_MODEL_DIR / "model_index.json").exists():
        with caplog.at_level("WARNING", logger="texbridge"):
            p = load_prior("auto", "cpu")
        assert p.name == "embedded"
        assert f"huggingface-cli download {DEFAULT_HUB_MODEL}" in caplog.text
    else:
        with pytest.raises(ModelNotFoundError, match="embedded fallback failed") as err:
            load_prior("auto", "cpu")
        assert f"huggingface-cli download {DEFAULT_HUB_MODEL}" in str(err.value)


def test_single_file_safetensors_loads_like_the_folder(tmp_path, tiny_sd_dir, prior, monkeypatch):
    """The tiny model written in the original (LDM) single-file layout loads through
    diffusers' from_single_file with the folder's component configs, offline."""
    from tests.helpers.ldm_checkpoint import write_ldm_checkpoint

    f = write_ldm_checkpoint(tiny_sd_dir, tmp_path / "tiny-sd.safetensors")
    single = load_prior(str(f), "cpu", single_file_config=str(tiny_sd_dir))
    assert single.name == str(f.resolve()) and single.resolution == prior.resolution
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300])
    e = single.encode_prompts(["a red brick wall"])
    assert torch.equal(e, prior.encode_prompts(["a red brick wall"]))
    assert torch.equal(single.predict_noise(x, t, e), prior.predict_noise(x, t, e))
    # Without configs (nothing cached, offline) the error says what is needed.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="needs the model's diffusers configs"):
        load_prior(str(f), "cpu")


def test_auto_policy_downloads_sd_only_online_on_cuda():
    from engine.priors.loading import AutoChoice, auto_choice

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_choice(True, True, cpu) is AutoChoice.SD_CACHED
    assert auto_choice(True, False, cuda) is AutoChoice.SD_CACHED
    assert auto_choice(False, False, cuda) is AutoChoice.SD_DOWNLOAD
    assert auto_choice(False, True, cuda) is AutoChoice.EMBEDDED  # offline
    assert auto_choice(False, False, cpu) is AutoChoice.EMBEDDED  # a CPU never starts a 5 GB download


def test_auto_falls_back_when_the_download_fails(tmp_path, monkeypatch, caplog):
    """The policy says download, the download fails: the embedded model, and a warning that says why.
    The failing download is a stand-in (this machine has no hub access): ``_load_hub`` raises what it
    raises when the hub cannot be reached."""
    from engine.priors import loading

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(loading, "auto_choice", lambda cached, offline, dev: loading.AutoChoice.SD_DOWNLOAD)
    tried = []

    def no_hub(repo_id, dev, dt):
        tried.append(repo_id)
        raise loading._model_missing(repo_id)

    monkeypatch.setattr(loading, "_load_hub", no_hub)
    with caplog.at_level("WARNING", logger="texbridge"):
        p = load_prior("auto", "cpu")
    assert tried == [DEFAULT_HUB_MODEL] and p.name == "embedded"
    assert "could not be downloaded" in caplog.text and f"huggingface-cli download {DEFAULT_HUB_MODEL}" in caplog.text


def test_auto_on_cpu_online_says_why_it_did_not_download(tmp_path, monkeypatch, caplog):
    from engine.priors import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(loading, "_load_hub", lambda *a: pytest.fail("auto must not download SD for a CPU run"))
    with caplog.at_level("WARNING", logger="texbridge"):
        p = load_prior("auto", "cpu")
    assert p.name == "embedded" and "does not download it for a CPU run" in caplog.text
