"""Where a prior comes from: ``ModelRef`` (parsed from a string) and ``load_prior``.

A model string is one of:
- ``auto``: Stable Diffusion 2.1-base when its weights are in the local Hugging Face
  cache, or when they can be downloaded and the device is CUDA (on a CPU SD costs
  seconds to minutes a step, so ``auto`` does not start a 5 GB download for it);
  otherwise the embedded model, with a warning saying how to get the real one
  (``auto_choice`` is the policy);
- ``embedded``: the small model shipped with texbridge (``engine.priors.embedded``);
- a hub id (``owner/name``), loaded from the local cache, downloaded when online;
- a diffusers folder (``model_index.json`` inside);
- a single ``.safetensors`` checkpoint (what Blender users download). Pickle formats
  (``.ckpt``, ``.bin``, ``.pt``, ``.pth``) are refused: they can run code when loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch

from engine.environment import resolve_device
from engine.errors import Fix, ModelNotFoundError, SpecError, TexbridgeError

log = logging.getLogger("texbridge")

#: The paper's model (SDS-Bridge 2D recipe): the default hub id.
DEFAULT_HUB_MODEL = "stabilityai/stable-diffusion-2-1-base"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelKind(Enum):
    """How a model string is resolved (the only place a name picks a loader)."""

    AUTO = "auto"
    EMBEDDED = "embedded"
    HUB = "hub"
    FOLDER = "folder"
    SINGLE_FILE = "single_file"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model string: ``kind`` and ``value`` (hub id or absolute path)."""

    kind: ModelKind
    value: str

    @classmethod
    def parse(cls, model: str) -> "ModelRef":
        s = (model or "").strip()
        if not s:
            raise SpecError("model is empty; allowed: auto, embedded, a hub id, a diffusers folder or a .safetensors file")
        if s.lower() == "auto":
            return cls(ModelKind.AUTO, "auto")
        if s.lower() == "embedded":
            return cls(ModelKind.EMBEDDED, "embedded")
        p = Path(s).expanduser()
        if p.is_dir():
            return cls(ModelKind.FOLDER, str(p.resolve()))
        if p.suffix.lower() in (".safetensors",) + PICKLE_SUFFIXES:
            return cls(ModelKind.SINGLE_FILE, str(p.resolve()))
        if p.exists():
            raise SpecError(f"model {s!r} is a file but not a .safetensors checkpoint; give a diffusers folder or a .safetensors file")
        if _HUB_ID.match(s) and not s.startswith((".", "~")):
            return cls(ModelKind.HUB, s)
        raise ModelNotFoundError(f"model {s!r}: no such folder or file, and not a hub id (owner/name); check the path")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache in effect (``HF_HUB_CACHE``, ``HF_HOME``/hub, or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_cached(repo_id: str) -> bool:
    """True when ``repo_id``'s ``model_index.json`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=str(hub_cache_dir()))
    return isinstance(found, str)


class AutoChoice(Enum):
    """What ``--model auto`` picks (see ``auto_choice``)."""

    SD_CACHED = "sd-cached"
    SD_DOWNLOAD = "sd-download"
    EMBEDDED = "embedded"


def auto_choice(cached: bool, offline: bool, device: torch.device) -> AutoChoice:
    """The ``auto`` policy: SD 2.1-base when cached; downloaded when online and on CUDA;
    else the embedded model. A CPU does not download SD: at about 20 s a step (fp32, 512^2)
    the default 1000 steps would take hours, and a newcomer's first command should not."""
    if cached:
        return AutoChoice.SD_CACHED
    if not offline and device.type == "cuda":
        return AutoChoice.SD_DOWNLOAD
    return AutoChoice.EMBEDDED


#: The fix of a missing model, for each front end to word (``--model`` in the terminal).
def _model_fix(repo_id: str) -> Fix:
    return Fix("model", f"fix: run `huggingface-cli download {repo_id}` on a machine with network (or copy the "
                        "cache), or set {field} to the PATH of a diffusers folder or .safetensors file")


def _model_missing(repo_id: str, also: str = "") -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {repo_id!r} is not in the local Hugging Face cache ({hub_cache_dir()}) and cannot be downloaded "
        f"(offline){also}", kind="model_not_cached", fix=_model_fix(repo_id),
    )


def _pipeline_kwargs(dtype: torch.dtype) -> dict:
    return dict(torch_dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False, use_safetensors=True)


def _quiet_diffusers():
    """Silence diffusers' loading chatter (progress bars, deprecation notes) for one load."""
    import warnings

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", FutureWarning)
    level, bars = dlog.get_verbosity(), dlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlevel, tbars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()

    class _Restore:  # restores what it found, so a quiet load inside a quiet block stays quiet
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            dlog.set_verbosity(level)
            if bars:
                dlog.enable_progress_bar()
            tlog.set_verbosity(tlevel)
            if tbars:
                tlog.enable_progress_bar()
            ctx.__exit__(*exc)
            return False

    return _Restore()


def from_hub(load, repo_id: str, missing):
    """``load(repo_id, local_files_only=..., cache_dir=...)`` from the local Hugging Face cache
    (quietly); when it is not there and the hub is reachable, downloaded into the cache.
    ``missing()`` builds the ``ModelNotFoundError`` raised offline or when the download fails.
    The one cache-then-download rule of every hub-id loader (prior, ControlNet, TAESD)."""
    cache = str(hub_cache_dir())
    try:
        with _quiet_diffusers():
            return load(repo_id, local_files_only=True, cache_dir=cache)
    except (OSError, ValueError):
        if hub_offline():
            raise missing() from None
    try:  # online: download into the cache
        return load(repo_id, cache_dir=cache)
    except Exception:  # no network, unknown repo, gated, only pickle weights ...
        raise missing() from None


def _load_folder(path: str, name: str, device: torch.device, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    from engine.priors.stable_diffusion import StableDiffusionPrior

    index = Path(path) / "model_index.json"
    if not index.exists():
        raise ModelNotFoundError(f"folder {path!r} is not a diffusers model (no model_index.json); give a diffusers folder or a .safetensors file")
    if _pipeline_class(index) == _pixel_pipeline_class():
        from engine.priors.embedded import load_pixel_prior

        with _quiet_diffusers():
            return load_pixel_prior(path, device, dtype, name=name)
    try:
        with _quiet_diffusers():
            pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, **_pipeline_kwargs(dtype))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"could not load diffusers folder {path!r} (safetensors weights required): {first_line(exc)}") from None
    return StableDiffusionPrior.from_pipeline(pipe, name, device, dtype)


def _pipeline_class(index: Path) -> str | None:
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def _pixel_pipeline_class() -> str | None:
    try:
        from engine.priors.embedded import PIXEL_PIPELINE_CLASS
    except ImportError:
        return None
    return PIXEL_PIPELINE_CLASS


def _load_hub(repo_id: str, device: torch.device, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    from engine.priors.stable_diffusion import StableDiffusionPrior

    pipe = from_hub(lambda rid, **kw: StableDiffusionPipeline.from_pretrained(rid, **kw, **_pipeline_kwargs(dtype)),
                    repo_id, lambda: _model_missing(repo_id))
    return StableDiffusionPrior.from_pipeline(pipe, repo_id, device, dtype)


def _load_single_file(path: str, device: torch.device, dtype: torch.dtype, config: str | None):
    from engine.priors.stable_diffusion import StableDiffusionPrior

    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise SpecError(
            f"{p.name}: pickle checkpoints ({', '.join(PICKLE_SUFFIXES)}) are refused because loading them can run code; "
            f"use the .safetensors version of the model (most model pages offer one) or a diffusers folder"
        )
    if not p.is_file():
        raise ModelNotFoundError(f"checkpoint {path!r} does not exist; check the path")
    from diffusers import StableDiffusionPipeline

    kwargs = _pipeline_kwargs(dtype)
    kwargs.pop("use_safetensors")
    # Component configs: the given ones; else what diffusers infers from the checkpoint's keys
    # (fetched, or from the cache when offline); else SD 2.1-base's when cached.
    candidates: list[str | None] = [config] if config is not None else [None]
    if config is None and is_cached(DEFAULT_HUB_MODEL):
        candidates.append(DEFAULT_HUB_MODEL)
    pipe, error = None, None
    for cand in candidates:
        try:
            with _quiet_diffusers():
                pipe = StableDiffusionPipeline.from_single_file(
                    path, config=cand, local_files_only=hub_offline() or (cand is not None and Path(cand).is_dir()),
                    cache_dir=str(hub_cache_dir()), **kwargs,
                )
            break
        except Exception as exc:  # diffusers raises many types for unusable checkpoints
            error = exc
    if pipe is None:
        raise ModelNotFoundError(
            f"could not load {p.name} as a Stable Diffusion checkpoint: {first_line(error)}; single-file loading "
            f"needs the model's diffusers configs (in the Hugging Face cache {hub_cache_dir()}, or network)",
            fix=Fix("model", "alternatively set {field} to the PATH of a diffusers folder"),
        )
    return StableDiffusionPrior.from_pipeline(pipe, str(p), device, dtype)


def _load_embedded(device: torch.device, dtype: torch.dtype | None):
    try:
        from engine.priors.embedded import load_embedded_prior
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the embedded model is not available in this install ({first_line(exc)})", fix=_model_fix(DEFAULT_HUB_MODEL),
        ) from None
    with _quiet_diffusers():
        return load_embedded_prior(device, dtype)


def load_prior(model: str, device: str | torch.device = "auto", dtype: torch.dtype | None = None, *, single_file_config: str | None = None):
    """Load the ``DiffusionPrior`` named by ``model`` onto ``device``.

    dtype: ``None`` = fp16 on CUDA, fp32 on CPU (bf16 may be passed for CUDA).
    single_file_config: for ``.safetensors`` checkpoints, a diffusers folder or hub id whose
        component configs match the checkpoint (default: SD 2.1-base when cached).
    The returned prior's ``name`` is what ran (recorded in job.json).
    Raises ``ModelNotFoundError`` (names the model, the cache path and the fixes) or ``SpecError``.
    """
    from engine.priors.stable_diffusion import default_dtype

    ref = ModelRef.parse(model)
    dev = resolve_device(device)
    dt = dtype or default_dtype(dev)
    match ref.kind:
        case ModelKind.FOLDER:
            return _load_folder(ref.value, ref.value, dev, dt)
        case ModelKind.HUB:
            return _load_hub(ref.value, dev, dt)
        case ModelKind.SINGLE_FILE:
            return _load_single_file(ref.value, dev, dt, single_file_config)
        case ModelKind.EMBEDDED:
            return _load_embedded(dev, dtype)
        case ModelKind.AUTO:
            return _load_auto(dev, dt, dtype)
    raise AssertionError(ref.kind)  # pragma: no cover


def _load_auto(dev: torch.device, dt: torch.dtype, dtype: torch.dtype | None):
    offline = hub_offline()
    choice = auto_choice(is_cached(DEFAULT_HUB_MODEL), offline, dev)
    why = f"{DEFAULT_HUB_MODEL} is not in the local cache ({hub_cache_dir()})"
    if choice is AutoChoice.SD_CACHED:
        return _load_hub(DEFAULT_HUB_MODEL, dev, dt)
    if choice is AutoChoice.SD_DOWNLOAD:
        log.warning("downloading %s (about 5 GB) into %s; later runs load it from there", DEFAULT_HUB_MODEL, hub_cache_dir())
        try:
            return _load_hub(DEFAULT_HUB_MODEL, dev, dt)
        except ModelNotFoundError:
            why = f"{DEFAULT_HUB_MODEL} could not be downloaded into {hub_cache_dir()} (no network, or the hub refused)"
    elif not offline:  # online but not CUDA: the policy's CPU rule
        why += " and auto does not download it for a CPU run (hours per texture there)"
    try:
        prior = _load_embedded(dev, dtype)
    except (TexbridgeError, OSError) as exc:
        raise _model_missing(DEFAULT_HUB_MODEL, f" and the embedded fallback failed too ({first_line(exc)})") from None
    log.warning(
        "using the embedded model: %s; for full quality run `huggingface-cli download %s` once, or pass --model PATH",
        why,
        DEFAULT_HUB_MODEL,
    )
    return prior


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters), for one-line error messages."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
