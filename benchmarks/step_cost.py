"""Milliseconds per optimization step, split into render / encode / UNet / backward / optimizer.

Each figure is the median over single measured steps (robust on a shared machine).

Models: the tiny random test pipeline, and randomly initialised models with the exact
architecture of SD 2.1-base (UNet 865M, OpenCLIP-H text encoder, SD VAE), built from
configs below (no download). fp32 on CPU, fp16 on CUDA. Runs the real loop
(``engine.optimize.optimize_texture``) on a UV sphere built in code.

    python benchmarks/step_cost.py                 # tiny + SD-size (SD-size: 1 measured step on CPU)
    python benchmarks/step_cost.py --only tiny
    python benchmarks/step_cost.py --device cuda --steps 10
    python benchmarks/step_cost.py --device cuda --only sd21 --memory full,low --encoder full,tiny --json rows.json

``--memory`` / ``--encoder`` (comma lists) time every combination on the SD-size model
(``tiny``: a random TAESD of the real architecture); ``low`` rows are run with the views of the
other rows and again with low mode's own default (1 view). ``peak MiB`` is
``torch.cuda.max_memory_allocated`` over the measured steps, weights included (CUDA only).

``--controlnet`` (comma list of none, depth, normal; default none,depth) adds rows with a
ControlNet (``engine.priors.controlnet.ControlledPrior``): the tiny test ControlNet for the
tiny model, a random ControlNet of SD 2.1-base's size (``ControlNetModel.from_unet``, 361M)
for the SD-size one; the ``unet`` column then holds the conditioning images, the ControlNet
and the UNet of each denoiser call.

Goal on a 2-core CPU: tiny-model step at a 64 x 64 render under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.cameras import OrbitConfig, sample_orbit  # noqa: E402
from engine.guidance.config import GuidanceConfig  # noqa: E402
from engine.mesh import mesh_from_arrays  # noqa: E402
from engine.callbacks import JobCallbacks  # noqa: E402
from engine.optimize import PHASES, OptimizeConfig, gray_texture, optimize_texture  # noqa: E402
from engine.priors.controlnet import ControlConfig, ControlledPrior, with_control  # noqa: E402
from engine.priors.stable_diffusion import StableDiffusionPrior  # noqa: E402
from engine.raster.control_images import ControlKind  # noqa: E402
from engine.raster import RasterContext  # noqa: E402
from engine.render import ViewCache  # noqa: E402
from engine.views import CachedViews  # noqa: E402


def uv_sphere(n_lat: int = 32, n_lon: int = 64):
    """Lat-long sphere (Y up) with a seam, per-corner UVs; 2 * n_lat * n_lon triangles."""
    pos, faces, uvs = [], [], []
    for i in range(n_lat + 1):
        th = np.pi * i / n_lat
        for j in range(n_lon + 1):
            ph = 2 * np.pi * j / n_lon
            pos.append([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)])
    vid = lambda i, j: i * (n_lon + 1) + j  # noqa: E731
    uv = lambda i, j: (j / n_lon, 1 - i / n_lat)  # noqa: E731
    for i in range(n_lat):
        for j in range(n_lon):
            a, b, c, d = (i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)
            for tri in ((a, b, c), (a, c, d)):
                faces.append([vid(*p) for p in tri])
                uvs.append([uv(*p) for p in tri])
    return mesh_from_arrays(np.array(pos, np.float32) * 0.5, np.array(faces), np.array(uvs, np.float32), up_axis="Y")


def sd21_base_components(tokenizer_dir: Path):
    """Randomly initialised modules with SD 2.1-base's architecture."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
    ))
    return CLIPTokenizer.from_pretrained(tokenizer_dir), text, vae, unet


def sd_alphas(t: int = 1000) -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, t, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def measure(prior, render_size: int, texture_size: int, views_per_step: int, warmup: int, steps: int, device) -> dict:
    from engine.priors.memory import peak_memory_bytes, reset_peak_memory

    reset_peak_memory(device)
    ms = _measure(prior, render_size, texture_size, views_per_step, warmup, steps, device)
    peak = peak_memory_bytes(device)
    ms["peak_mib"] = None if peak is None else peak / 2**20
    return ms


def _measure(prior, render_size: int, texture_size: int, views_per_step: int, warmup: int, steps: int, device) -> dict:
    mesh = uv_sphere()
    cams = sample_orbit(OrbitConfig(), 16, torch.Generator().manual_seed(0))
    views = CachedViews(ViewCache.build(RasterContext(device=device), mesh, cams, render_size))
    guidance = GuidanceConfig(stage_two_start=10**9)
    saved = []  # the loop's checkpoints (the last one of a run is its final state)
    common = dict(prior=prior, views=views, guidance=guidance, prompt="a red brick wall",
                  callbacks=JobCallbacks(on_checkpoint=saved.append))
    cfg = OptimizeConfig(steps=warmup, views_per_step=views_per_step, checkpoint_every=1, profile=True)
    optimize_texture(config=cfg, init_texture=gray_texture(texture_size), **common)
    samples = []  # one resumed single-step run each (robust medians on a shared machine)
    for i in range(steps):
        cfg = OptimizeConfig(steps=warmup + i + 1, views_per_step=views_per_step, checkpoint_every=10**9, profile=True)
        res = optimize_texture(config=cfg, start=saved[-1], **common)
        one = {k: 1000 * v for k, v in res.timings.items()}
        one["total"] = sum(one.values())
        samples.append(one)  # the run's last step handed over the checkpoint the next one resumes
    return {k: float(np.median([s[k] for s in samples])) for k in samples[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=("tiny", "sd21"), help="run one model only")
    ap.add_argument("--steps", type=int, default=None, help="measured steps (default: 20 tiny; SD-size 1 CPU / 10 CUDA)")
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--memory", default="full", help="SD-size rows: comma list of full, low (default full)")
    ap.add_argument("--encoder", default="full", help="SD-size rows: comma list of full, tiny (default full)")
    ap.add_argument("--views", type=int, default=None, help="SD-size views per step (default 4 on CUDA, 1 on CPU)")
    ap.add_argument("--controlnet", default="none,depth", help="comma list of none, depth, normal (default none,depth)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    from engine.priors.memory import MemoryConfig, MemoryMode, parse_memory_mode
    from engine.priors.tiny_encoder import EncoderKind, parse_encoder_kind

    controls = [None if c.strip() == "none" else ControlKind(c.strip()) for c in args.controlnet.split(",")]
    memories = [parse_memory_mode(m) for m in args.memory.split(",")]
    encoders = [parse_encoder_kind(e) for e in args.encoder.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "tiny"):
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.helpers.tiny_sd import build_tiny_sd
            from engine.priors.loading import load_prior

            from tests.helpers.tiny_controlnet import build_tiny_controlnet

            tiny_dir = build_tiny_sd(Path(tmp) / "tiny")
            base = load_prior(str(tiny_dir), device)
            for kind in controls:
                prior = base if kind is None else with_control(
                    base, ControlConfig(str(build_tiny_controlnet(Path(tmp) / "tiny_cn", tiny_dir)), kind))
                for rs, ts in ((64, 256), (64, args.texture_size), (128, args.texture_size)):
                    ms = measure(prior, rs, ts, 1, 3, args.steps or 20, device)
                    rows.append((f"tiny ({str(prior.dtype)[6:]}){_cn_label(kind)}", rs, ts, 1, ms))
        if args.only in (None, "sd21"):
            from tests.helpers.tiny_sd import write_tiny_clip_tokenizer

            write_tiny_clip_tokenizer(Path(tmp) / "tok")
            t0 = time.perf_counter()
            tok, text, vae, unet = sd21_base_components(Path(tmp) / "tok")
            print(f"built SD-2.1-base-size random model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            sd = StableDiffusionPrior(name="random SD-2.1-base architecture", tokenizer=tok, text_encoder=text, vae=vae,
                                      unet=unet, alphas_cumprod=sd_alphas(), prediction_type="epsilon", device=device)
            b = args.views or (4 if cuda else 1)
            tiny = _random_taesd(device, sd.dtype) if EncoderKind.TINY in encoders else None
            net = _random_sd_controlnet(sd) if any(k is not None for k in controls) else None
            for kind in controls:
                prior = sd if kind is None else ControlledPrior(sd, net, ControlConfig("random", kind),
                                                                "random SD-2.1-base-size ControlNet")
                for mem in memories:
                    levers = sd.set_memory_mode(mem)
                    for enc in encoders:
                        sd.set_tiny_encoder(tiny if enc is EncoderKind.TINY else None)
                        low_b = MemoryConfig().low_views_per_step
                        for views in [b] + ([low_b] if mem is MemoryMode.LOW and low_b != b else []):
                            ms = measure(prior, 512, args.texture_size, views, 2 if cuda else 1,
                                         args.steps or (10 if cuda else 1), device)
                            name = (f"SD-2.1-base size ({str(sd.dtype)[6:]}), memory {mem.value}, encoder {enc.value}"
                                    f"{_cn_label(kind)}")
                            rows.append((name, 512, args.texture_size, views, dict(ms, levers=list(levers))))
    dev = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nms per step on {dev}, torch {torch.__version__}\n")
    head = ["model", "render", "texture", "views"] + [p if p != "guidance" else "unet" for p in PHASES] + ["total", "peak MiB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, rs, ts, b, ms in rows:
        cells = [name, f"{rs}x{rs}", f"{ts}x{ts}", str(b)] + [f"{ms[p]:.1f}" for p in PHASES] + [f"{ms['total']:.1f}"]
        cells.append("-" if ms["peak_mib"] is None else f"{ms['peak_mib']:.0f}")
        print("| " + " | ".join(cells) + " |")
    if args.json:
        import json

        out = [{"model": n, "render_px": rs, "texture_px": ts, "views": b, **ms} for n, rs, ts, b, ms in rows]
        Path(args.json).write_text(json.dumps({"device": dev, "torch": torch.__version__, "rows": out}, indent=2))


def _cn_label(kind) -> str:
    return "" if kind is None else f", + ControlNet {kind.value}"


def _random_sd_controlnet(prior):
    """A random ControlNet of SD 2.1-base's size, copied from the UNet; zero-convolutions made
    non-zero (the cost is the same, but the UNet then really adds what it gets)."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(prior.unet)
    with torch.no_grad():
        for conv in list(net.controlnet_down_blocks) + [net.controlnet_mid_block]:
            conv.weight.normal_(0, 1e-3)
    return net.to(prior.device, prior.dtype).eval().requires_grad_(False)


def _random_taesd(device, dtype):
    """A randomly initialised TAESD (the real architecture: AutoencoderTiny's defaults)."""
    from diffusers import AutoencoderTiny

    from engine.priors.tiny_encoder import TinyEncoder

    module = AutoencoderTiny().to(device, dtype).eval().requires_grad_(False)
    return TinyEncoder("random TAESD architecture", module, 1.0, 4)


if __name__ == "__main__":
    main()
