"""``texbridge texture MESH --prompt TEXT``: one texturing job from the command line.

Writes the job folder described in ``engine/runner.py`` and shows a progress bar.
Ctrl-C (once) stops after the current step and writes a checkpoint; ``--resume DIR``
continues it. Exit codes: see README ("Exit codes").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from engine.errors import SpecError
from engine.cameras import ViewMode
from engine.guidance.method import GuidanceMethod
from engine.guidance.recipe import Recipe
from engine.job import BACKENDS, DEVICES, TextureJob

#: CLI flag -> TextureJob field, for the options both ``texture`` and ``batch`` take.
JOB_FLAGS = {
    "method": "method", "recipe": "recipe", "views": "views", "steps": "steps", "stage_two_start": "stage_two_start", "cfg": "cfg_scale",
    "lr": "learning_rate", "texture_size": "texture_size", "render_size": "render_size",
    "views_per_step": "views_per_step", "seed": "seed", "model": "model", "device": "device",
    "backend": "backend", "edit_source_prompt": "edit_source_prompt", "init_texture": "init_texture",
    "checkpoint_every": "checkpoint_every", "preview_every": "preview_every",
    "source_modifier": "source_modifier", "target_modifier": "target_modifier",
}


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Options that map onto ``TextureJob`` fields (defaults: the job's, i.e. the paper's)."""
    g = p.add_argument_group("job (defaults come from --recipe; see engine/job.py)")
    g.add_argument("--method", choices=[m.value for m in GuidanceMethod], help="guidance method (default bridge)")
    g.add_argument("--recipe", type=str.lower, choices=[r.value for r in Recipe],
                   help="optimization preset: auto (measured best for the model), paper-2d, paper-3d, embedded (default auto)")
    g.add_argument("--views", type=str.lower, choices=[v.value for v in ViewMode],
                   help="cameras: auto (the model's choice), orbit, closeup (default auto)")
    g.add_argument("--steps", type=int, help="optimization steps (default 1000)")
    g.add_argument("--stage-two-start", type=int, help="bridge stage-2 step (default: the recipe's fraction of the steps)")
    g.add_argument("--cfg", type=float, help="CFG scale (default: the recipe's; 7.5 for nfsd)")
    g.add_argument("--lr", type=float, help="AdamW learning rate (default: the recipe's)")
    g.add_argument("--texture-size", type=int, help="texture side, power of two 64..8192 (default 1024)")
    g.add_argument("--render-size", type=int, help="rendered view side in pixels (default: the model's, 512 for SD, 64 embedded)")
    g.add_argument("--views-per-step", type=int, help="views per step (default 4 on GPU, 1 on CPU)")
    g.add_argument("--seed", type=int, help="random seed (default 0)")
    g.add_argument("--model", help="auto | embedded | hub id | diffusers folder | .safetensors file (default auto)")
    g.add_argument("--device", choices=DEVICES, help="default auto")
    g.add_argument("--backend", choices=BACKENDS, help="rasterizer (default auto)")
    g.add_argument("--edit-source-prompt", help="refine: describes the current texture (bridge src)")
    g.add_argument("--init-texture", help="refine: PNG to start from")
    g.add_argument("--source-modifier", help="bridge source suffix (default: the recipe's)")
    g.add_argument("--target-modifier", help="bridge target suffix (default: the recipe's)")
    g.add_argument("--no-view-prompts", action="store_true", help="no front/side/back view suffixes")
    g.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 50)")
    g.add_argument("--preview-every", type=int, help="steps between progress snapshots (default 10)")


def job_overrides(args: argparse.Namespace) -> dict:
    """The job fields given on the command line."""
    out = {field: getattr(args, flag) for flag, field in JOB_FLAGS.items() if getattr(args, flag, None) is not None}
    if getattr(args, "no_view_prompts", False):
        out["view_dependent_prompts"] = False
    return out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("texture", help="texture a mesh from a prompt (batch mode)",
                              description="Optimize a UV texture for MESH under PROMPT and write a job folder.")
    p.add_argument("mesh", nargs="?", help="mesh file: OBJ, GLB/glTF, PLY or .npz")
    p.add_argument("--prompt", help="what the texture should depict")
    p.add_argument("--out", help="output folder (default: texbridge_output/<mesh name>)")
    p.add_argument("--resume", metavar="DIR", help="continue the job in DIR from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_job_arguments(p)
    p.set_defaults(func=run)


def build_job(args: argparse.Namespace) -> tuple[TextureJob, Path, bool]:
    """(job, out_dir, resume) from parsed arguments."""
    if args.resume:
        from engine.jobrun import read_job_json

        out = Path(args.resume)
        spec = dict(read_job_json(out)["spec"])
        spec.update(job_overrides(args))  # e.g. --device; the resume check rejects math changes
        if args.mesh:
            spec["mesh"] = args.mesh
        return TextureJob.from_dict(spec), out, True
    if not args.mesh:
        raise SpecError("no mesh given; usage: texbridge texture MESH --prompt TEXT (or --resume DIR)")
    if args.prompt is None:
        raise SpecError("prompt is empty; give a text prompt such as --prompt 'red brick wall'")
    job = TextureJob(prompt=args.prompt, mesh=str(args.mesh), **job_overrides(args))
    out = Path(args.out) if args.out else Path("texbridge_output") / Path(args.mesh).stem
    return job, out, False


class CancelOnSigint:
    """First Ctrl-C asks the loop to stop after this step (checkpoint written); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after this step (Ctrl-C again to abort without a checkpoint)", file=sys.stderr)

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


#: Seconds between progress lines when stderr is not a terminal (logs, CI).
LOG_INTERVAL_S = 5.0


def progress_callbacks(total: int, quiet: bool, cancel=None, desc: str = "texture", stream=None,
                       interval_s: float = LOG_INTERVAL_S, clock=time.monotonic):
    """(JobCallbacks, close) reporting progress on ``stream`` (default stderr).

    A terminal gets a tqdm bar showing stage, t and loss. Anything else (a log file, CI) gets
    plain lines, at most one every ``interval_s`` seconds plus the last step's, instead of
    a line per step.
    """
    from engine.runner import JobCallbacks

    if quiet:
        return JobCallbacks(should_cancel=cancel), lambda: None
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return JobCallbacks(on_progress=_log_lines(total, desc, stream, interval_s, clock), should_cancel=cancel), lambda: None
    from tqdm import tqdm

    state: dict = {}  # the bar starts at the first step, after model loading and view caching

    def on_progress(ev) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, initial=ev.step - 1, desc=desc, unit="step",
                                      dynamic_ncols=True, file=stream)
        bar.n = ev.step
        bar.set_postfix(stage=ev.stage, t=ev.t, loss=f"{ev.loss:.4g}", refresh=False)
        bar.refresh()

    def close() -> None:
        if "bar" in state:
            state.pop("bar").close()

    return JobCallbacks(on_progress=on_progress, should_cancel=cancel), close


def _log_lines(total: int, desc: str, stream, interval_s: float, clock):
    """on_progress for a stream that is not a terminal: one line per ``interval_s``."""
    last = {"t": None}

    def on_progress(ev) -> None:
        now = clock()
        if ev.step < total and last["t"] is not None and now - last["t"] < interval_s:
            return
        last["t"] = now
        eta = f", eta {ev.eta_s:.0f} s" if ev.step < total else ""
        print(f"{desc}: step {ev.step}/{total} stage {ev.stage} t {ev.t} loss {ev.loss:.4g} "
              f"({ev.it_per_s:.2f} step/s{eta})", file=stream, flush=True)

    return on_progress


def configure_logging() -> None:
    """Warnings as ``warning: ...`` lines; library chatter (transformers/diffusers) off."""
    import os
    from engine.jobfolder import JobFolder

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from engine.runner import run_texture_job

    configure_logging()
    job, out, resume = build_job(args)
    with CancelOnSigint() as cancel:
        callbacks, close = progress_callbacks(job.steps, args.quiet, cancel)
        try:
            result = run_texture_job(job, out, callbacks=callbacks, resume=resume)
        finally:
            close()
    print(f"model: {result.model_name}")
    names = (result.texture_png.name, result.glb.name, result.preview_png.name, JobFolder(result.out_dir).job_json.name)
    print(f"wrote {result.out_dir}/ ({', '.join(names)})")
    return 0
