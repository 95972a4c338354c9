#!/usr/bin/env python
"""Evaluate the embedded prior (the model-card metrics).

    nice python scripts/eval_embedded_prior.py [--model engine/models/embedded] [--per-caption 8]

1. Held-out captions (colour pair x pattern combinations the training never saw),
   plain DDIM 50 steps, CFG 1.5 (the prior's sample default): dominant-colour match rate and pattern-classifier
   recognition rate (classifier: ``PatternClassifier``, trained here, seeded).
2. Artifact words on 16+ samples each: mean saturation of "X" vs "X, oversaturated";
   high-frequency energy of "X, sharp" vs "X, blurry".
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.priors.embedded import EMBEDDED_MODEL_DIR, PixelDiffusionPrior, load_pixel_prior  # noqa: E402
from engine.procedural.degrade import high_frequency_energy, mean_saturation  # noqa: E402
from engine.procedural.metrics import PatternClassifier, dominant_colours_match  # noqa: E402
from engine.procedural.world import TextureSpec, held_out_specs  # noqa: E402

#: Base captions for the artifact-word checks (in-distribution, varied patterns and colours).
ARTIFACT_BASES = ("red and white checkerboard", "blue and yellow stripes", "green dots on white", "orange bricks",
                  "purple and cyan speckle noise", "pink tiles with black grout", "brown wood grain", "blue to orange gradient")


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """(N, 3, r, r) tensor in [0, 1] -> (N, r, r, 3) numpy."""
    return images.permute(0, 2, 3, 1).numpy().astype(np.float32)


def held_out_metrics(prior: PixelDiffusionPrior, clf: PatternClassifier, specs: list[TextureSpec], per_caption: int,
                     seed: int = 0, steps: int = 50, guidance_scale: float | None = None) -> dict:
    """Colour-match and pattern-recognition rates over ``per_caption`` samples of each spec."""
    all_specs = [s for s in specs for _ in range(per_caption)]
    g = torch.Generator().manual_seed(seed)
    imgs = to_hwc(prior.sample([s.caption for s in all_specs], steps=steps, guidance_scale=guidance_scale, generator=g))
    colour = [dominant_colours_match(im, s.colours) for im, s in zip(imgs, all_specs)]
    preds = clf.predict(imgs)
    from engine.procedural.metrics import pattern_matches

    pattern = [pattern_matches(p, s) for p, s in zip(preds, all_specs)]
    return {"n": len(all_specs), "colour_match": float(np.mean(colour)), "pattern_match": float(np.mean(pattern)),
            "failures": [s.caption for s, c, p in zip(all_specs, colour, pattern) if not (c and p)][:20],
            "_images": imgs}


def artifact_metrics(prior: PixelDiffusionPrior, bases: tuple[str, ...], per_caption: int, seed: int = 0,
                     steps: int = 50, guidance_scale: float | None = None) -> dict:
    """Saturation of X vs "X, oversaturated" and HF energy of "X, sharp" vs "X, blurry"."""
    out = {}
    groups = {"plain": "{}", "oversaturated": "{}, oversaturated", "sharp": "{}, sharp", "blurry": "{}, blurry"}
    imgs = {}
    for i, (k, fmt) in enumerate(groups.items()):
        g = torch.Generator().manual_seed(seed + i)
        prompts = [fmt.format(b) for b in bases for _ in range(per_caption)]
        imgs[k] = to_hwc(prior.sample(prompts, steps=steps, guidance_scale=guidance_scale, generator=g))
    out["n_per_group"] = int(len(imgs["plain"]))
    out["saturation_plain"] = mean_saturation(imgs["plain"])
    out["saturation_oversaturated"] = mean_saturation(imgs["oversaturated"])
    out["hf_energy_sharp"] = high_frequency_energy(imgs["sharp"])
    out["hf_energy_blurry"] = high_frequency_energy(imgs["blurry"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(EMBEDDED_MODEL_DIR))
    ap.add_argument("--per-caption", type=int, default=8, help="samples per held-out caption")
    ap.add_argument("--artifact-per-caption", type=int, default=4, help="samples per artifact base caption (x8 bases)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--guidance-scale", type=float, default=None,
                    help="CFG scale of the DDIM sampler (default: the prior's sample_guidance_scale)")
    ap.add_argument("--grid", default=None, help="write a PNG grid of the held-out samples here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    prior = load_pixel_prior(args.model, "cpu")
    clf = PatternClassifier.train(seed=args.seed)
    specs = held_out_specs()
    scale = prior.config.sample_guidance_scale if args.guidance_scale is None else args.guidance_scale
    res = {"model": args.model, "held_out_captions": len(specs), "guidance_scale": scale, "ddim_steps": 50}
    held = held_out_metrics(prior, clf, specs, args.per_caption, seed=args.seed, guidance_scale=args.guidance_scale)
    imgs = held.pop("_images")
    res["held_out"] = held
    res["artifacts"] = artifact_metrics(prior, ARTIFACT_BASES, args.artifact_per_caption, seed=args.seed,
                                        guidance_scale=args.guidance_scale)
    res["seconds"] = round(time.time() - t0, 1)
    if args.grid:
        from PIL import Image

        n = args.per_caption
        rows = [np.concatenate(list(imgs[i * n:(i + 1) * n]), 1) for i in range(len(specs))]
        Image.fromarray((np.concatenate(rows, 0) * 255).astype(np.uint8)).save(args.grid)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
