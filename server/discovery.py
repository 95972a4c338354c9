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


def user_dir(kind: str) -> Path:
    """The per-user base folder of ``kind``: ``"config"`` (the discovery file's) or ``"data"``
    (``texbridge serve``'s default data dir), per platform. The one resolver on the server side;
    the add-on keeps a stdlib copy of the config one (``blender_addon/client.py`` ``config_dir``,
    drift-tested in tests/addon/test_spec_drift.py)."""
    home = Path.home()
    if sys.platform == "win32":
        var, fallback = ("APPDATA", home / "AppData" / "Roaming") if kind == "config" else ("LOCALAPPDATA", home / "AppData" / "Local")
        return Path(os.environ.get(var) or fallback)
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    var, fallback = ("XDG_CONFIG_HOME", home / ".config") if kind == "config" else ("XDG_DATA_HOME", home / ".local" / "share")
    return Path(os.environ.get(var) or fallback)


def runtime_dir() -> Path:
    """The folder holding the discovery file (see docs/api.md)."""
    override = os.environ.get("TEXBRIDGE_RUNTIME_DIR")
    if override:
        return Path(override)
    return user_dir("config") / "texbridge"


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
