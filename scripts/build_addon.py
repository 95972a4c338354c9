"""Build the installable texbridge extension zip from ``blender_addon/``.

Same result as ``blender --command extension build``: it runs Blender's own
extension tool (``blender_ext.py build``) when it can find it (a ``blender`` on
PATH, or the one inside the ``bpy`` wheel); otherwise it writes the zip itself
with the same rules (manifest at the root, files named ``<id>-<version>.zip``,
``[build] paths_exclude_pattern`` applied).

    python scripts/build_addon.py [--output-dir dist] [--builtin]

Prints the zip's path.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "blender_addon"
DEFAULT_EXCLUDE = ["__pycache__/", ".*", "/*.zip", "*.blend[1-9]"]


def read_manifest(source: Path = SOURCE) -> dict:
    with open(source / "blender_manifest.toml", "rb") as f:
        return tomllib.load(f)


def zip_name(manifest: dict) -> str:
    return f"{manifest['id']}-{manifest['version']}.zip"


def find_blender_ext() -> Path | None:
    """Blender's ``blender_ext.py`` from the bpy wheel, if installed (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        for cand in Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"):
            return cand
    return None


def _excluded(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        dir_only = pat.endswith("/")
        p = pat.rstrip("/")
        if dir_only and not is_dir:
            continue
        if p.startswith("/"):
            if fnmatch.fnmatchcase(rel, p[1:]):
                return True
        elif fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p):
            return True
    return False


def build_builtin(source: Path, output_dir: Path) -> Path:
    """Write the zip with the stdlib (the fallback when Blender's tool is not available)."""
    manifest = read_manifest(source)
    patterns = manifest.get("build", {}).get("paths_exclude_pattern", DEFAULT_EXCLUDE)
    if not (source / "__init__.py").exists():
        raise SystemExit(f"{source} is not a Python package: add __init__.py")
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(source):
        rel_dir = os.path.relpath(dirpath, source).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir + d, True, patterns))
        files += [rel_dir + f for f in sorted(filenames) if not _excluded(rel_dir + f, False, patterns)]
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / zip_name(manifest)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(source / rel, rel)
    return out


def build_with_blender(source: Path, output_dir: Path) -> Path | None:
    """Run Blender's own ``extension build``; None if no Blender tool is available."""
    output_dir.mkdir(parents=True, exist_ok=True)
    args = ["build", "--source-dir", str(source), "--output-dir", str(output_dir)]
    blender = shutil.which("blender")
    ext = find_blender_ext()
    if blender:
        cmd = [blender, "--factory-startup", "--command", "extension", *args]
    elif ext is not None:
        cmd = [sys.executable, str(ext), *args]
    else:
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"extension build failed:\n{proc.stdout}\n{proc.stderr}")
    return output_dir / zip_name(read_manifest(source))


def build(output_dir: Path = ROOT / "dist", builtin: bool = False, source: Path = SOURCE) -> Path:
    out = None if builtin else build_with_blender(source, output_dir)
    return out or build_builtin(source, output_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    ap.add_argument("--builtin", action="store_true", help="use the stdlib builder even if Blender's tool is available")
    args = ap.parse_args(argv)
    print(build(args.output_dir, args.builtin))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
