"""The batch plan: which meshes, which job spec each, which shard, validated up front.

Manifest (``--prompts FILE``), two forms with the same meaning:

- JSON: ``{"mesh name or stem": "prompt" | {"prompt": ..., job fields...}}``.
- CSV (what a spreadsheet exports): one row per mesh, ``mesh,prompt[,field=value...]``;
  an optional header row ``mesh,prompt``; blank rows and rows starting with ``#`` are ignored.
  Values are converted to the job field's type (``steps=200``, ``cfg_scale=7.5``, ``seed=3``,
  ``view_dependent_prompts=false``, ``stage_two_start=none``).

``--prompt`` gives the prompt of every asset without one; command-line job flags override
both. ``plan_batch`` checks every row and every asset's spec and raises one ``SpecError``
listing all the bad ones, so nothing is scheduled from a half-valid manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SpecError, TexbridgeError
from engine.job import TextureJob

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".npz")
_FIELDS = {f.name: f for f in dataclasses.fields(TextureJob)}


@dataclass(frozen=True)
class AssetSpec:
    """One mesh of the batch.

    name: the mesh's file name (the key in the summary).
    mesh: path of the mesh file.
    out: its job folder (``--out``/<stem>; <stem>_<ext> when two meshes share a stem).
    job: the validated job spec; ``None`` when the asset has no prompt.
    """

    name: str
    mesh: str
    out: str
    job: TextureJob | None

    @property
    def stem(self) -> str:
        return Path(self.out).name


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


def load_manifest(path: str | None) -> tuple[dict[str, tuple[str, dict]], list[str]]:
    """``({mesh key: (row label, fields)}, errors)`` from a JSON or CSV manifest."""
    if path is None:
        return {}, []
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return _load_csv(p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"--prompts {path}: cannot read JSON ({exc}); give an object {{name: prompt}} or a .csv file") from None
    if not isinstance(data, dict):
        raise SpecError(f"--prompts {path}: must be a JSON object mapping mesh names to prompts")
    entries: dict[str, tuple[str, dict]] = {}
    errors: list[str] = []
    for key, value in data.items():
        label = f"entry {key!r}"
        if isinstance(value, str):
            entries[key] = (label, {"prompt": value})
        elif isinstance(value, dict):
            entries[key] = (label, dict(value))
        else:
            errors.append(f"{label}: must be a prompt string or an object of job fields")
    return entries, errors


def _load_csv(path: Path) -> tuple[dict[str, tuple[str, dict]], list[str]]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SpecError(f"--prompts {path}: cannot read CSV ({exc}); give rows mesh,prompt[,field=value...]") from None
    entries: dict[str, tuple[str, dict]] = {}
    errors: list[str] = []
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[:2]] == ["mesh", "prompt"]:
            continue  # header
        label = f"row {number}"
        if len(cells) < 2 or not cells[0]:
            errors.append(f"{label}: need at least two columns, mesh,prompt (got {','.join(row)!r})")
            continue
        fields: dict = {"prompt": cells[1]} if cells[1] else {}
        for cell in cells[2:]:
            if not cell:
                continue
            name, eq, text = cell.partition("=")
            name = name.strip()
            if not eq:
                errors.append(f"{label}: column {cell!r} is not field=value (e.g. steps=200)")
            elif name not in _FIELDS or name == "mesh":
                allowed = ", ".join(sorted(set(_FIELDS) - {"mesh"}))
                errors.append(f"{label}: unknown job field {name!r}; allowed: {allowed}")
            else:
                try:
                    fields[name] = _convert(name, text.strip())
                except ValueError as exc:
                    errors.append(f"{label}: {exc}")
        if cells[0] in entries:
            errors.append(f"{label}: mesh {cells[0]!r} is already in {entries[cells[0]][0]}; give each mesh one row")
        entries[cells[0]] = (label, fields)
    return entries, errors


def _convert(name: str, text: str):
    """A CSV cell as the type of job field ``name``."""
    kind = str(_FIELDS[name].type)
    if "None" in kind and text.lower() in ("", "none", "null"):
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if kind.startswith("bool"):
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"{name}={text!r} is not true/false")
    return text


def plan_batch(folder: str | Path, out_root: str | Path, manifest: str | None, default_prompt: str | None,
               overrides: dict) -> list[AssetSpec]:
    """Every mesh of ``folder`` with its validated job; one ``SpecError`` lists all bad rows."""
    if default_prompt is None and manifest is None:
        raise SpecError("give --prompt TEXT and/or --prompts FILE.json|FILE.csv")
    try:
        TextureJob.from_dict({"prompt": "check", **overrides})  # a bad flag is one error, not one per asset
    except TexbridgeError as exc:
        raise SpecError(f"job options: {exc}") from None
    entries, errors = load_manifest(manifest)
    assets = list_assets(Path(folder))
    names = job_folder_names(assets)
    by_key = {a.name: a for a in assets} | {a.stem: a for a in assets}
    used: set[str] = set()
    for key, (label, _) in entries.items():
        if key not in by_key:
            errors.append(f"{label}: no mesh named {key!r} in {folder} (give a file name or stem of a mesh there)")
        elif by_key[key].name in used:
            errors.append(f"{label}: {by_key[key].name} has two entries (by name and by stem); keep one")
        else:
            used.add(by_key[key].name)
    plan: list[AssetSpec] = []
    for asset in assets:
        key = asset.name if asset.name in entries else asset.stem
        label, fields = entries.get(key, (f"asset {asset.name!r}", {}))
        fields = dict(fields)
        if "prompt" not in fields and default_prompt is not None:
            fields["prompt"] = default_prompt
        job = None
        if "prompt" in fields:
            try:
                job = TextureJob.from_dict({**fields, **overrides, "mesh": str(asset)})
            except TexbridgeError as exc:
                errors.append(f"{label} ({asset.name}): {exc}")
        plan.append(AssetSpec(asset.name, str(asset), str(Path(out_root) / names[asset]), job))
    if errors:
        where = f"--prompts {manifest}" if manifest else "the job options"
        raise SpecError(f"{where}: {len(errors)} bad row(s), nothing was run; fix them and run again:\n  "
                        + "\n  ".join(errors))
    return plan
