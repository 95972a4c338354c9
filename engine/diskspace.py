"""Free-space guard for job files (torch-free, so the server process can use it too).

A checkpoint holds the texture and Adam's two moments (three arrays the size of the
texture) and is written to a temp file next to the previous one before it replaces it,
so a job needs about twice that free before each checkpoint. ``require_free`` fails
before anything is written, with ``disk full: need N MB in DIR, M MB free``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.errors import TexbridgeError

MB = 1024 * 1024


class DiskFull(TexbridgeError):
    """Not enough free space to write a job's files; the message names the folder and both sizes."""

    kind = "disk_full"


def texture_bytes(texture_size: int, channels: int = 3, itemsize: int = 4) -> int:
    """Bytes of one float32 (H, W, 3) texture array of side ``texture_size``."""
    return int(texture_size) * int(texture_size) * channels * itemsize


def checkpoint_bytes(texture_nbytes: int) -> int:
    """Free space a checkpoint needs: (texture + Adam's two moments) x 2 for the temp file."""
    return 2 * 3 * int(texture_nbytes)


def existing_ancestor(path: str | Path) -> Path:
    """``path`` or its nearest existing parent (free space is asked of a folder that exists)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int:
    """Bytes available to this process on the filesystem holding ``path``."""
    return int(shutil.disk_usage(existing_ancestor(path)).free)


def disk_full_message(need: int, directory: str | Path, free: int) -> str:
    return f"disk full: need {need / MB:.1f} MB in {directory}, {free / MB:.1f} MB free"


def require_free(directory: str | Path, need: int, fix: str = "free disk space there and resubmit") -> int:
    """Raise ``DiskFull`` unless ``need`` bytes are free where ``directory`` lives; returns the free bytes."""
    free = free_bytes(directory)
    if free < need:
        raise DiskFull(f"{disk_full_message(need, directory, free)}; {fix}")
    return free
