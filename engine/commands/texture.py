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

from engine import jobschema
from engine.errors import SpecError
from engine.job import TextureJob

def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """The options that map onto ``TextureJob`` fields, generated from its field metadata
    (``engine.jobschema``): names, choices, help text and defaults all come from there."""
    jobschema.add_job_arguments(p, TextureJob)


def job_overrides(args: argparse.Namespace) -> dict:
    """The job fields given on the command line."""
    return jobschema.job_overrides(args, TextureJob)


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


def progress_callbacks(total: int | None, quiet: bool, cancel=None, desc: str = "texture", stream=None,
                       interval_s: float = LOG_INTERVAL_S, clock=time.monotonic):
    """(JobCallbacks, close) reporting progress on ``stream`` (default stderr).

    A terminal gets a tqdm bar showing stage, t and loss. Anything else (a log file, CI) gets
    plain lines, at most one every ``interval_s`` seconds plus the last step's, instead of
    a line per step. ``total``: the job's steps; None = the events' ``total_steps`` (a job that
    sets no steps gets its recipe's, known once the model is loaded).
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
            bar = state["bar"] = tqdm(total=total if total is not None else ev.total_steps, initial=ev.step - 1, desc=desc, unit="step",
                                      dynamic_ncols=True, file=stream)
        bar.n = ev.step
        bar.set_postfix(stage=ev.stage, t=ev.t, loss=f"{ev.loss:.4g}", refresh=False)
        bar.refresh()

    def close() -> None:
        if "bar" in state:
            state.pop("bar").close()

    return JobCallbacks(on_progress=on_progress, should_cancel=cancel), close


def _log_lines(total_given: int | None, desc: str, stream, interval_s: float, clock):
    """on_progress for a stream that is not a terminal: one line per ``interval_s``."""
    last = {"t": None}

    def on_progress(ev) -> None:
        total = total_given if total_given is not None else ev.total_steps
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

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from engine.jobfolder import JobFolder
    from engine.runner import run_texture_job

    configure_logging()
    job, out, resume = build_job(args)
    with CancelOnSigint() as cancel:
        callbacks, close = progress_callbacks(job.steps, args.quiet, cancel)  # None: the events carry the recipe's
        try:
            result = run_texture_job(job, out, callbacks=callbacks, resume=resume)
        finally:
            close()
    print(f"model: {result.model_name}")
    names = (result.texture_png.name, result.glb.name, result.preview_png.name, JobFolder(result.out_dir).job_json.name)
    print(f"wrote {result.out_dir}/ ({', '.join(names)})")
    return 0
