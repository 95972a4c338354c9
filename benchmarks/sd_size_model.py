"""Write randomly initialised SD-2.1-base-size model folders for a whole GPU job (no download).

    python benchmarks/sd_size_model.py OUT_DIR     # OUT_DIR/sd21_random (fp16), OUT_DIR/taesd_random

``sd21_random``: the architecture of ``benchmarks/step_cost.py``'s SD-size model (UNet 865M,
OpenCLIP-H-size text encoder, SD VAE) with a character tokenizer and SD's scheduler, saved as a
diffusers folder in fp16 (about 2.6 GB). ``taesd_random``: diffusers' ``AutoencoderTiny`` with
TAESD's default architecture. Timings and memory measured with them are those of real weights
(same shapes and kernels); the textures are noise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(out: Path) -> None:
    import torch
    from diffusers import AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline

    from benchmarks.step_cost import sd21_base_components
    from tests.helpers.tiny_sd import write_tiny_clip_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    write_tiny_clip_tokenizer(out / "_tok")
    tok, text, vae, unet = sd21_base_components(out / "_tok")
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")
    pipe = StableDiffusionPipeline(unet=unet.half(), vae=vae.half(), text_encoder=text.half(), tokenizer=tok,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out / "sd21_random", safe_serialization=True)
    AutoencoderTiny().save_pretrained(out / "taesd_random", safe_serialization=True)
    print(f"wrote {out / 'sd21_random'} and {out / 'taesd_random'} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
