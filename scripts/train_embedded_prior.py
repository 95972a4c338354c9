#!/usr/bin/env python
"""Train the embedded pixel-space prior on the procedural texture world.

Documented command (the shipped weights; about 40 min on an idle 2-core CPU, about
5 steps/s; the defaults are these values):

    python scripts/train_embedded_prior.py --seed 0 --steps 12000 --threads 2 \
        --work /tmp/texbridge_embedded_train --out engine/models/embedded

Resume after an interruption by adding ``--resume`` (same arguments). Data and
noise for step ``s`` are drawn from generators seeded by ``(seed, s)``, so a
resumed run sees exactly the batches an uninterrupted one would.

Recipe: v-prediction (the prior converts to epsilon), cosine betas, T = 1000, plain MSE
on v (``--min-snr-steps N`` weights the first N steps by min-SNR-5 instead),
AdamW (lr 1e-3, 100 warm-up steps, cosine decay to 10%), grad clip 1, EMA of the
weights (0.998) saved as the result, caption dropped to "" for 10% of samples
(classifier-free guidance). The (pattern family, colour pair) combinations of
``engine.procedural.world.held_out_combinations`` never appear in training.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from engine.priors.embedded_model import EmbeddedModelConfig, build_components, denoise, save_components, tokenize  # noqa: E402
from engine.procedural.vocab import caption_vocabulary  # noqa: E402
from engine.procedural.world import TextureWorldConfig, held_out_combinations, make_batch  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--min-snr", type=float, default=5.0)
    ap.add_argument("--min-snr-steps", type=int, default=0,
                    help="use min-SNR weighting for the first N steps only, then the plain epsilon loss "
                         "(L_simple), which trains the low-noise end that sampling needs")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--work", default="/tmp/texbridge_embedded_train", help="checkpoints and log")
    ap.add_argument("--out", default="engine/models/embedded", help="final diffusers folder (EMA weights)")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true", help="continue from <work>/checkpoint.pt")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop (and export) after this step; the LR schedule still follows --steps. "
                         "With --resume and the checkpoint's step it only exports the checkpoint's EMA weights")
    return ap.parse_args(argv)


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = TextureWorldConfig()
    model_cfg = EmbeddedModelConfig()
    held = frozenset(held_out_combinations(world))

    torch.manual_seed(args.seed)
    unet, text_encoder, tokenizer, scheduler = build_components(model_cfg, caption_vocabulary())
    unet.to(device).train()
    text_encoder.to(device).train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    ac = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    snr = ac / (1 - ac)
    loss_w = torch.clamp(snr, max=args.min_snr) / snr  # min-SNR-gamma weights for epsilon loss

    start, history = 0, []
    ckpt = work / "checkpoint.pt"
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
        print(f"resumed from {ckpt} at step {start}", flush=True)

    def save_ckpt(step: int) -> None:
        tmp = work / "checkpoint.pt.tmp"
        torch.save(
            {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
             "ema_text": ema_text.state_dict(), "opt": opt.state_dict(), "step": step, "history": history, "args": vars(args)},
            tmp,
        )
        os.replace(tmp, ckpt)

    t0 = time.time()
    stop = args.steps if args.stop_at is None else min(args.steps, args.stop_at)
    bar = tqdm(range(start, stop), initial=start, total=stop, mininterval=20, desc="train", file=sys.stdout)
    running = None
    for step in bar:
        seed = args.seed * 1_000_003 + step
        images, captions, _ = make_batch(world, seed, args.batch_size, held)
        drop = np.random.default_rng(seed + 7).random(len(captions)) < args.cfg_dropout
        captions = ["" if d else c for c, d in zip(captions, drop)]
        x0 = torch.from_numpy(images).permute(0, 3, 1, 2).to(device) * 2 - 1
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, model_cfg.num_train_timesteps, (x0.shape[0],), generator=g).to(device)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        emb = text_encoder(tokenize(tokenizer, captions).to(device)).last_hidden_state
        pred = denoise(unet, xt, t, emb)
        if model_cfg.prediction_type == "v_prediction":
            target = a.sqrt() * noise - (1 - a).sqrt() * x0
        else:
            target = noise
        per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        loss = per_sample.mul(loss_w[t]).mean() if step < args.min_snr_steps else per_sample.mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema_params, params):
                pe.lerp_(p, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        if (step + 1) % 50 == 0:
            history.append([step + 1, round(running, 5), round(time.time() - t0, 1)])
        if (step + 1) % args.ckpt_every == 0 or step + 1 == stop:
            save_ckpt(step + 1)
    bar.close()
    out = save_components(args.out, ema_unet.cpu(), ema_text.cpu(), tokenizer, scheduler)
    (work / "train_log.json").write_text(json.dumps({"args": vars(args), "history": history}, indent=1))
    print(f"saved EMA weights to {out}; history (step, loss, s): {history[-3:]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
