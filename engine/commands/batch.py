"""``texbridge batch FOLDER --out DIR``: texture every mesh of a folder (headless, clusters).

- Prompts: ``--prompt TEXT`` for all assets, and/or ``--prompts FILE.json|FILE.csv`` (see
  ``engine.batch.manifest``). The whole manifest is checked first; every bad row is reported in
  one message (exit 2) and nothing runs. Assets with no prompt are reported and skipped.
- ``--ray [ADDRESS]``: run the assets as tasks on Ray actors (``engine.batch.ray_backend``;
  needs ``pip install "texbridge[ray]"``), with ``--actors``, ``--retries``, ``--stage-inputs``.
  Without ``--ray`` the assets run here, one after another, with the prior kept loaded.
- ``--shard I/N``: this machine takes the assets whose name hashes (SHA-1) to I mod N, so N
  machines split a folder without coordination, stable when files are added.
- Each asset gets ``DIR/<stem>/`` with the same layout as ``texbridge texture``. A finished
  asset is skipped with ``--skip-done`` (the default with ``--ray``); an interrupted one
  (checkpoint, not succeeded) resumes.
- One asset failing does not stop the batch. ``DIR/batch_summary[_shard-I-of-N].json``
  (``engine.batch.summary``) lists every asset's outcome; ``--report FILE.html`` draws it.
  Exit: 0 all succeeded or skipped; 6 some failed; 1 all failed; 2 bad arguments; 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.batch.manifest import in_shard, parse_shard, plan_batch  # noqa: F401  (in_shard: public helper)
from engine.batch.work import CANCELLED, FAILED, QUEUED, RUNNING, SKIPPED, SUCCEEDED, base_record, job_status
from engine.commands.texture import CancelOnSigint, add_job_arguments, configure_logging, job_overrides
from engine.errors import SpecError

EXIT_SOME_FAILED = 6


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("batch", help="texture every mesh in a folder (Ray cluster or shards; skip, resume)",
                              description="Texture every mesh in FOLDER; one job folder per asset under --out.")
    p.add_argument("folder", help="folder of meshes (.obj .glb .gltf .ply .npz; not recursive)")
    p.add_argument("--prompt", help="prompt for every asset without an entry in --prompts")
    p.add_argument("--prompts", metavar="FILE", help='FILE.json {"name or stem": "prompt" | {job fields}} or '
                                                     "FILE.csv rows mesh,prompt[,field=value...]")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per asset; shared storage on a cluster)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="take shard I of N (0-based; default 0/1)")
    p.add_argument("--skip-done", action=argparse.BooleanOptionalAction, default=None,
                   help="skip assets whose job.json says succeeded (default: on with --ray, off without)")
    p.add_argument("--report", metavar="FILE.html", help="write a static page: contact sheet, prompt, state, GLB link")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    r = p.add_argument_group("Ray (pip install \"texbridge[ray]\")")
    r.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run on Ray: no ADDRESS (or auto) = local instance on 127.0.0.1; HEAD:6379 = that cluster")
    r.add_argument("--actors", type=int, help="CPU actors (default: one per CPU; with GPUs: one per GPU)")
    r.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs (torch threads) per actor (default 1)")
    r.add_argument("--no-gpus", action="store_true", help="CPU actors even when the cluster has GPUs")
    r.add_argument("--retries", type=int, default=2, help="attempts after an actor died on an asset (default 2)")
    r.add_argument("--stage-inputs", action="store_true",
                   help="send meshes through Ray's object store (workers cannot see FOLDER)")
    add_job_arguments(p)
    p.set_defaults(func=run)


def _check_ray_flags(args: argparse.Namespace) -> None:
    ray_only = [f for f, v in (("--actors", args.actors), ("--stage-inputs", args.stage_inputs or None),
                               ("--no-gpus", args.no_gpus or None)) if v is not None]
    if args.ray is None and ray_only:
        raise SpecError(f"{', '.join(ray_only)} only apply with --ray; add --ray or drop them")
    if args.retries < 0 or args.cpus_per_actor < 1 or (args.actors is not None and args.actors < 1):
        raise SpecError("need --retries >= 0, --cpus-per-actor >= 1 and --actors >= 1")


def run(args: argparse.Namespace) -> int:
    from engine.batch.summary import BatchSummary, write_report

    configure_logging()
    _check_ray_flags(args)
    shard = parse_shard(args.shard)
    out_root = Path(args.out)
    plan = plan_batch(args.folder, out_root, args.prompts, args.prompt, job_overrides(args))
    ray_cfg = None
    if args.ray is not None:
        from engine.batch.ray_backend import RayBatchConfig, import_ray

        import_ray()  # missing extra -> exit 2 with the install command, before any work
        ray_cfg = RayBatchConfig(address=args.ray, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                                 use_gpus=not args.no_gpus and args.device != "cpu", retries=args.retries, stage_inputs=args.stage_inputs,
                                 quiet=args.quiet)
    skip_done = args.skip_done if args.skip_done is not None else ray_cfg is not None
    mine = [a for a in plan if in_shard(a.name, shard)]
    records, todo = [], []
    for asset in mine:
        if asset.job is None:
            records.append(base_record(asset, SKIPPED, reason="no prompt for this asset"))
        elif skip_done and job_status(asset.out) == SUCCEEDED:
            records.append(base_record(asset, SKIPPED, reason=SUCCEEDED))
        else:
            records.append(base_record(asset, QUEUED))
            todo.append(asset)
    out_root.mkdir(parents=True, exist_ok=True)
    tag = "" if shard == (0, 1) else f"_shard-{shard[0]}-of-{shard[1]}"
    summary = BatchSummary(out_root / f"batch_summary{tag}.json", records, "ray" if ray_cfg else "sequential", shard)
    summary.write()
    print(f"batch: {len(todo)} to run, {len(mine) - len(todo)} skipped, of {len(mine)} assets in shard "
          f"{shard[0]}/{shard[1]} ({len(plan)} in the folder)", file=sys.stderr)
    try:
        with CancelOnSigint() as cancel:
            if not todo:
                pass
            elif ray_cfg is not None:
                from engine.batch.ray_backend import run_ray_batch

                run_ray_batch(todo, summary, ray_cfg, cancel)
            else:
                _run_here(todo, summary, args.quiet, cancel)
    finally:
        for rec in summary.records:  # aborted mid-asset (a second Ctrl-C): resumes from its last checkpoint
            if rec["status"] == RUNNING:
                summary.cancelled = True
                rec.update(status=CANCELLED, error="interrupted; it resumes from its last checkpoint")
        data = summary.write()
        if args.report:
            write_report(Path(args.report), data)
    for rec in summary.records:
        if rec["status"] == FAILED:
            print(f"error: {rec['asset']}: {rec['error']}", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    return summary.exit_code()


def _run_here(todo, summary, quiet: bool, cancel) -> None:
    """The assets one after another in this process, the prior kept loaded between them."""
    from engine.batch.summary import BatchProgress
    from engine.batch.work import AssetWorker

    worker, bar = AssetWorker(), BatchProgress(len(todo), quiet)
    try:
        for i, asset in enumerate(todo):
            if cancel():
                for rest in todo[i:]:
                    summary.update({**summary.get(rest.name), "status": CANCELLED,
                                    "reason": "not started: the batch was cancelled"})
                summary.cancelled = True
                break
            summary.update({**summary.get(asset.name), "status": RUNNING, "attempts": 1})
            bar.show(summary, 1)
            summary.update(worker.texture(asset, 1, should_cancel=cancel))
            bar.show(summary, 0)
    finally:
        bar.close()
        worker.unload()
