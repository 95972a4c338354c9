"""The discovery file: how the add-on finds the running engine and its token.

``<config dir>/texbridge/engine.json`` (``$TEXBRIDGE_RUNTIME_DIR/engine.json`` when set),
holding ``{"url", "port", "pid", "token", "version"}``. Written atomically with mode 0600
in a 0700 folder (modelled on Jupyter's runtime files), removed on a clean exit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engine.jobfolder import write_json_atomic

FILE_NAME = "engine.json"


def runtime_dir() -> Path:
    """The folder holding the discovery file (see docs/api.md)."""
    override = os.environ.get("TEXBRIDGE_RUNTIME_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "texbridge"


def discovery_path() -> Path:
    return runtime_dir() / FILE_NAME


def write_discovery(info: dict, path: Path | None = None) -> Path:
    """Atomically write ``info`` to the discovery file, readable by the owner only."""
    path = path or discovery_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_json_atomic(path, info, mode=0o600)  # fsynced; a failed write leaves no temp file
    return path


def remove_discovery(pid: int, path: Path | None = None) -> None:
    """Remove the discovery file if it still describes process ``pid``."""
    path = path or discovery_path()
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if info.get("pid") == pid:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
