"""``texbridge batch FOLDER --out DIR``: texture every mesh of a folder (headless, clusters).

- Prompts: ``--prompt TEXT`` for all assets, and/or ``--prompts FILE.json``: an object mapping
  a mesh file name or stem to a prompt string, or to an object of job fields
  (``{"prompt": ..., "steps": ...}``). Assets with no prompt are reported and skipped.
- ``--shard I/N``: this machine takes the assets whose name hashes (SHA-1) to I mod N, so N
  machines split a folder without coordination, stable when files are added.
- Each asset gets ``DIR/<stem>/`` with the same layout as ``texbridge texture``. A finished
  asset is skipped with ``--skip-done``; an interrupted one (checkpoint, not done) resumes.
- One asset failing does not stop the batch. ``DIR/batch_summary[_shard-I-of-N].json``
  lists every asset's outcome. Exit: 0 all done or skipped; 6 some failed; 1 all failed;
  2 bad arguments; 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from engine.commands.texture import CancelOnSigint, add_job_arguments, configure_logging, job_overrides, progress_callbacks
from engine.errors import JobCancelled, SpecError, TexbridgeError
from engine.job import TextureJob

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".npz")
EXIT_SOME_FAILED = 6


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("batch", help="texture every mesh in a folder (sharding, skip, resume)",
                              description="Texture every mesh in FOLDER; one job folder per asset under --out.")
    p.add_argument("folder", help="folder of meshes (.obj .glb .gltf .ply .npz; not recursive)")
    p.add_argument("--prompt", help="prompt for every asset without an entry in --prompts")
    p.add_argument("--prompts", metavar="FILE.json", help='{"name or stem": "prompt" | {job fields}}')
    p.add_argument("--out", required=True, help="output folder (one sub-folder per asset)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="take shard I of N (0-based; default 0/1)")
    p.add_argument("--skip-done", action="store_true", help="skip assets whose job.json says done")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_job_arguments(p)
    p.set_defaults(func=run)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SpecError(f"--shard {text!r} is not I/N; allowed: two integers with 0 <= I < N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise SpecError(f"--shard {text!r}: need 0 <= I < N, e.g. 0/4 .. 3/4")
    return i, n


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Deterministic: SHA-1 of the file name modulo N."""
    i, n = shard
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") % n == i


def list_assets(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SpecError(f"{folder} is not a folder; give a folder of meshes")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def job_folder_names(assets: list[Path]) -> dict[Path, str]:
    """<stem>, or <stem>_<ext> when two assets share a stem."""
    stems: dict[str, int] = {}
    for a in assets:
        stems[a.stem] = stems.get(a.stem, 0) + 1
    return {a: a.stem if stems[a.stem] == 1 else f"{a.stem}_{a.suffix[1:].lower()}" for a in assets}


def load_prompts(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"--prompts {path}: cannot read JSON ({exc}); give an object {{name: prompt}}") from None
    if not isinstance(data, dict):
        raise SpecError(f"--prompts {path}: must be a JSON object mapping mesh names to prompts")
    return data


def asset_fields(asset: Path, prompts: dict, default_prompt: str | None) -> dict | None:
    entry = prompts.get(asset.name, prompts.get(asset.stem))
    if entry is None:
        return None if default_prompt is None else {"prompt": default_prompt}
    if isinstance(entry, str):
        return {"prompt": entry}
    if isinstance(entry, dict):
        return {"prompt": default_prompt, **entry} if default_prompt is not None else dict(entry)
    raise SpecError(f"--prompts entry for {asset.name} must be a string or an object")


def run(args: argparse.Namespace) -> int:
    from engine.jobrun import read_job_json
    from engine.mesh import load_mesh
    from engine.priors.loading import load_prior, resolve_device
    from engine.runner import CHECKPOINT, run_texture_job

    configure_logging()
    shard = parse_shard(args.shard)
    if args.prompt is None and args.prompts is None:
        raise SpecError("give --prompt TEXT and/or --prompts FILE.json")
    prompts = load_prompts(args.prompts)
    assets = list_assets(Path(args.folder))
    names = job_folder_names(assets)
    mine = [a for a in assets if in_shard(a.name, shard)]
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    overrides = job_overrides(args)
    outcomes: list[dict] = []
    prior, prior_key = None, None
    print(f"batch: {len(mine)} of {len(assets)} assets in shard {shard[0]}/{shard[1]}", file=sys.stderr)
    with CancelOnSigint() as cancel:
        for asset in mine:
            out = out_root / names[asset]
            rec = {"asset": asset.name, "out": str(out)}
            outcomes.append(rec)
            try:
                fields = asset_fields(asset, prompts, args.prompt)
                if fields is None:
                    rec.update(status="skipped", reason="no prompt for this asset")
                    continue
                job = TextureJob.from_dict({**fields, **overrides, "mesh": str(asset)})
                resume = False
                if (out / "job.json").is_file():
                    status = read_job_json(out).get("status")
                    if status == "done" and args.skip_done:
                        rec.update(status="skipped", reason="done")
                        continue
                    if status != "done" and (out / CHECKPOINT).is_file():
                        resume = True
                    elif status == "done":
                        shutil.rmtree(out / "checkpoints", ignore_errors=True)
                mesh = load_mesh(asset)  # a broken mesh fails before any model is loaded
                if prior is None or prior_key != (job.model, job.device):
                    if prior is not None:
                        prior.unload()
                    prior = load_prior(job.model, resolve_device(job.device))  # kept for the next assets
                    prior_key = (job.model, job.device)
                callbacks, close = progress_callbacks(job.steps, args.quiet, cancel, desc=asset.stem)
                try:
                    result = run_texture_job(job, out, mesh=mesh, prior=prior, callbacks=callbacks, resume=resume)
                finally:
                    close()
                rec.update(status="done", resumed=resume, steps=result.steps_done)
            except JobCancelled:
                rec.update(status="cancelled")
                break
            except TexbridgeError as exc:
                rec.update(status="failed", error=str(exc))
                print(f"error: {asset.name}: {exc}", file=sys.stderr)
            except Exception as exc:  # one asset's crash must not stop the batch
                rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                print(f"error: {asset.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    tag = "" if shard == (0, 1) else f"_shard-{shard[0]}-of-{shard[1]}"
    (out_root / f"batch_summary{tag}.json").write_text(json.dumps({"shard": list(shard), "assets": outcomes}, indent=2))
    counts = {s: sum(1 for r in outcomes if r.get("status") == s) for s in ("done", "skipped", "failed", "cancelled")}
    print("batch: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=sys.stderr)
    if counts["cancelled"]:
        return 130
    if counts["failed"]:
        return 1 if counts["failed"] == len(outcomes) else EXIT_SOME_FAILED
    return 0
