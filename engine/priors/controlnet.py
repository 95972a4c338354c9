"""ControlNet conditioning of a Stable Diffusion prior (``--controlnet``, ``--control``, ``--control-scale``).

``load_controlnet(model, device, dtype)`` reads a diffusers ``ControlNetModel`` from the same
kinds of model strings as the prior (``engine.priors.loading.ModelRef``): a hub id (local cache
first, downloaded when online; offline and missing -> ``ModelNotFoundError``), a diffusers
folder (``config.json`` + safetensors weights) or a single ``.safetensors`` file (pickle
formats are refused). ``check_fits`` compares its architecture with the prior's UNet and names
both when they differ.

``ControlledPrior(prior, controlnet, config)`` is the prior a job runs with: the same
``DiffusionPrior`` (every attribute is the wrapped prior's), whose ``predict_noise`` takes the
batch's conditioning images and runs the ControlNet once per UNet batch, adding its residuals
times ``control_scale`` to the UNet's skip connections. The wrapped prior is not changed, so
the server's worker can keep it loaded for jobs without a ControlNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import Fix, ModelNotFoundError, SpecError
from engine.priors.loading import first_line
from engine.raster.control_images import ControlImageConfig, ControlKind, control_images
from engine.raster.gbuffer import GBuffer

#: UNet config keys a ControlNet must share with the UNet it steers (diffusers names): the latent
#: channels, the text-embedding width, and what fixes the number and shapes of its residuals.
#: (Head counts and transformer depth are the ControlNet's own business.)
ARCHITECTURE_KEYS = ("in_channels", "block_out_channels", "layers_per_block", "down_block_types",
                     "cross_attention_dim")


@dataclass(frozen=True)
class ControlConfig:
    """A job's ControlNet settings.

    Fields:
        model: the ControlNet (hub id, diffusers folder or ``.safetensors`` file).
        kind: what it is conditioned on (``ControlKind``: depth or normal).
        scale: multiplies every ControlNet residual (0 = the plain UNet's prediction).
        images: how the conditioning images are encoded.
    """

    model: str
    kind: ControlKind = ControlKind.DEPTH
    scale: float = 1.0
    images: ControlImageConfig = ControlImageConfig()


def _not_cached(repo_id: str) -> ModelNotFoundError:
    from engine.priors.loading import hub_cache_dir

    return ModelNotFoundError(
        f"ControlNet {repo_id!r} is not in the local Hugging Face cache ({hub_cache_dir()}) and cannot be downloaded "
        f"(offline)", kind="model_not_cached",
        fix=Fix("controlnet", f"fix: run `huggingface-cli download {repo_id}` on a machine with network, or set "
                              "{field} to the PATH of a diffusers ControlNet folder or .safetensors file"),
    )


def load_controlnet(model: str, device: torch.device, dtype: torch.dtype):
    """The ``ControlNetModel`` named by ``model``, on ``device`` in ``dtype``, eval, no grad.

    Returns (controlnet, name) with name the hub id or the absolute path (recorded in job.json).
    """
    from diffusers import ControlNetModel

    from engine.priors.loading import PICKLE_SUFFIXES, ModelKind, ModelRef, _quiet_diffusers, from_hub, hub_cache_dir, hub_offline

    ref = ModelRef.parse(model)
    kw = dict(torch_dtype=dtype)
    match ref.kind:
        case ModelKind.AUTO | ModelKind.EMBEDDED:
            raise SpecError(f"controlnet {model!r}: give a ControlNet hub id (owner/name), a diffusers ControlNet "
                            f"folder or a .safetensors file")
        case ModelKind.FOLDER:
            if not (Path(ref.value) / "config.json").exists():
                raise ModelNotFoundError(f"folder {ref.value!r} is not a diffusers ControlNet (no config.json)")
            try:
                with _quiet_diffusers():
                    net = ControlNetModel.from_pretrained(ref.value, local_files_only=True, use_safetensors=True, **kw)
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"could not load ControlNet folder {ref.value!r} (safetensors weights "
                                         f"required): {first_line(exc)}") from None
        case ModelKind.HUB:
            net = from_hub(lambda rid, **hub: ControlNetModel.from_pretrained(rid, use_safetensors=True, **hub, **kw),
                           ref.value, lambda: _not_cached(ref.value))
        case ModelKind.SINGLE_FILE:
            p = Path(ref.value)
            if p.suffix.lower() in PICKLE_SUFFIXES:
                raise SpecError(f"{p.name}: pickle checkpoints ({', '.join(PICKLE_SUFFIXES)}) are refused because "
                                f"loading them can run code; use the ControlNet's .safetensors file")
            if not p.is_file():
                raise ModelNotFoundError(f"ControlNet checkpoint {ref.value!r} does not exist; check the path")
            try:
                with _quiet_diffusers():
                    net = ControlNetModel.from_single_file(str(p), local_files_only=hub_offline(),
                                                           cache_dir=str(hub_cache_dir()), **kw)
            except Exception as exc:  # diffusers raises many types for unusable checkpoints
                raise ModelNotFoundError(f"could not load {p.name} as a ControlNet: {first_line(exc)}; single-file "
                                         f"loading needs its diffusers config (Hugging Face cache or network)") from None
    return net.to(device).eval().requires_grad_(False), ref.value


def _arch(config) -> dict:
    get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    out = {}
    for key in ARCHITECTURE_KEYS:
        v = get(key, None)
        if isinstance(v, list):
            v = tuple(v)
        out[key] = v
    return out


def check_fits(controlnet, unet, controlnet_name: str, prior_name: str) -> None:
    """``SpecError`` naming both models when the ControlNet's architecture is not the UNet's."""
    a, b = _arch(controlnet.config), _arch(unet.config)
    diff = [f"{k} {a[k]} vs {b[k]}" for k in ARCHITECTURE_KEYS if a[k] != b[k]]
    if diff:
        raise SpecError(
            f"ControlNet {controlnet_name!r} does not fit the UNet of model {prior_name!r} "
            f"(ControlNet vs UNet: {'; '.join(diff)}); use a ControlNet trained for that model "
            f"(SD 1.5 ControlNets do not fit SD 2.x: their cross-attention is 768-wide, SD 2.x's 1024)")


class ControlledPrior:
    """A Stable Diffusion prior with a ControlNet (see the module doc).

    Attributes besides the wrapped prior's: ``base`` (the prior), ``controlnet`` (the
    ``ControlNetModel``), ``controlnet_name``, ``control`` (``ControlConfig``).
    """

    def __init__(self, prior, controlnet, config: ControlConfig, controlnet_name: str | None = None):
        check_supported(prior)
        self.base = prior
        self.controlnet = controlnet
        self.controlnet_name = controlnet_name or config.model
        self.control = config
        check_fits(controlnet, prior.unet, self.controlnet_name, prior.name)

    def __getattr__(self, name):  # everything else is the wrapped prior's
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def conditioning(self, gbuffer: GBuffer, cameras) -> torch.Tensor:
        """(B, 3, R, R) conditioning images of B views (R = the prior's resolution), on its device."""
        img = control_images(self.control.kind, gbuffer, cameras.view, cameras.proj, self.base.resolution,
                             self.control.images)
        return img.to(self.base.device)

    @torch.no_grad()
    def residuals(self, x_t: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, images: torch.Tensor) -> dict:
        """The ControlNet's UNet residuals, times ``control.scale``, for one batch.

        x_t (N, C, r, r); t (N,); embeddings (N, L, D); images (N, 3, 8r, 8r) in [0, 1].
        Returns the UNet keyword arguments ``down_block_additional_residuals`` (tuple) and
        ``mid_block_additional_residual``.
        """
        base = self.base
        down, mid = self.controlnet(
            x_t.to(base.device, base.dtype), t.to(base.device),
            encoder_hidden_states=embeddings.to(base.device, base.dtype),
            controlnet_cond=images.to(base.device, base.dtype),
            conditioning_scale=float(self.control.scale), return_dict=False,
        )
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}

    @torch.no_grad()
    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor,
                      control: torch.Tensor | None = None) -> torch.Tensor:
        """epsilon-hat (N, C, r, r) float32; ``control`` (N, 3, R, R) the batch's conditioning
        images (one ControlNet call for the batch); None = the plain UNet."""
        if control is None:
            return self.base.predict_noise(latents, t, embeddings)
        return self.base.predict_noise(latents, t, embeddings, residuals=self.residuals(latents, t, embeddings, control))


def check_supported(prior) -> None:
    """``SpecError`` (exit 2) unless ``prior`` is a Stable Diffusion prior (the ones with a UNet)."""
    from engine.priors.stable_diffusion import StableDiffusionPrior

    if not isinstance(prior, StableDiffusionPrior):
        raise SpecError(
            f"model {getattr(prior, 'name', prior)!r} has no ControlNet support; ControlNet conditioning works with "
            f"Stable Diffusion priors (a hub id, a diffusers folder or a .safetensors SD checkpoint, or auto when SD "
            f"is cached), not the embedded model", fix=Fix("controlnet", "leave {field} unset, or choose an SD model"))


def with_control(prior, config: ControlConfig | None):
    """The prior a job runs with: ``prior`` itself without a ControlNet, else a ``ControlledPrior``
    (the ControlNet loaded in the prior's dtype on its device and checked before any step)."""
    if config is None:
        return prior
    check_supported(prior)  # before loading anything
    net, name = load_controlnet(config.model, prior.device, prior.dtype)
    return ControlledPrior(prior, net, config, name)

