"""The job folder: the one owner of its layout, and the one atomic-write helper.

Every flow (``texbridge texture``, ``texbridge batch``, the server's worker, supervisor and
HTTP routes) reads and writes a job through ``JobFolder``, so a file name is spelled here
and nowhere else (docs/architecture.md has the grep that checks it)::

    JOB/
      inputs/           the server's copy of the upload: mesh.<kind>, spec.json, init_texture.png
      job.json          spec, versions, timings, device, model that ran, status (a JobState word)
      texture.png       final texture (8-bit sRGB, UV-padded)
      textured.glb      the mesh with the user's UVs and the texture embedded
      preview.png       contact sheet of 8 views
      checkpoints/      latest.pt (texture, optimizer state, step, RNG states)
      progress/         snapshots every ``preview_every`` steps: step_000010.png, ...
      previews/         the server's texture versions: hard links to progress snapshots under
                        names unique per write (a resume replaces progress/step_N.png; an old
                        version must keep its bytes), step_0000010_<pid>_<n>.png
      batch_attempt.json  the batch's current attempt (batch only)
      cancel.flag       written by the server: stop after this step (checkpoint first)
      suspend.flag      written by the server on a clean shutdown: checkpoint, stop, requeue

Snapshots live in two folders under two numbering schemes (``progress/`` by the engine,
``previews/`` by the server) because the server's versions must outlive a resume; both
names are made here.

The module imports only the standard library (the server imports it without torch).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import IO, Callable, Union

from engine.jobstate import JobState

#: File names of the results the HTTP API serves (``GET /v1/jobs/{id}/results/{name}``).
RESULT_NAMES = ("textured.glb", "texture.png", "preview.png", "job.json")

Payload = Union[bytes, str, Callable[[IO[bytes]], None]]


def atomic_write(path: str | Path, data: Payload, *, durable: bool = True, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never half.

    data: bytes, a str (UTF-8), or a function that writes into the open binary file.
    The temp file ``.NAME.tmp-PID-THREAD`` sits in the same folder (``os.replace`` is atomic
    only within one filesystem) and is removed when anything fails, so a write that hits a
    full disk leaves no temp file to eat the disk's last megabytes.
    durable: fsync before the rename (a crash then keeps the new bytes); snapshots skip it.
    mode: permission bits of the new file (e.g. 0o600 for the server's discovery file).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)  # the umask must not widen or narrow it
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def write_json_atomic(path: str | Path, data: dict, *, durable: bool = True, mode: int | None = None,
                      sort_keys: bool = True) -> Path:
    """``data`` as indented JSON (keys sorted unless ``sort_keys`` is False) through ``atomic_write``."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str)
    return atomic_write(path, text, durable=durable, mode=mode)


def is_temp_name(name: str) -> bool:
    """True for a name ``atomic_write`` (or an older writer: ``*.tmp``) uses for its temp file."""
    return name.endswith(".tmp") or ".tmp-" in name


class JobFolder:
    """The paths of one job folder (see the module docstring) and the few operations on them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"JobFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # -- inputs (the server's copy of an upload) --------------------------------------
    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    def input_mesh(self, kind: str) -> Path:
        return self.inputs_dir / f"mesh.{kind}"

    @property
    def input_spec(self) -> Path:
        return self.inputs_dir / "spec.json"

    @property
    def input_init_texture(self) -> Path:
        return self.inputs_dir / "init_texture.png"

    def write_inputs(self, mesh: bytes, kind: str, init_texture: bytes | None) -> tuple[Path, Path | None]:
        """Store an upload (the folder must not exist yet); returns (mesh path, init texture path)."""
        self.inputs_dir.mkdir(parents=True)
        mesh_path = self.input_mesh(kind)
        mesh_path.write_bytes(mesh)
        init_path = None
        if init_texture is not None:
            init_path = self.input_init_texture
            init_path.write_bytes(init_texture)
        return mesh_path, init_path

    def write_input_spec(self, spec: dict) -> Path:
        return write_json_atomic(self.input_spec, spec)

    # -- the record ------------------------------------------------------------------
    @property
    def job_json(self) -> Path:
        return self.root / "job.json"

    def read_record(self) -> dict | None:
        """The parsed ``job.json``; None when there is none or it cannot be read."""
        try:
            data = json.loads(self.job_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_record(self, record: dict) -> Path:
        return write_json_atomic(self.job_json, record)

    def state(self) -> JobState | None:
        """The state ``job.json`` records (an old "done" reads as succeeded); None without one."""
        record = self.read_record()
        return JobState.parse(record.get("status")) if record is not None else None

    # -- checkpoint and snapshots ------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        return self.checkpoints_dir / "latest.pt"

    def has_checkpoint(self) -> bool:
        """True when a complete checkpoint is there (``atomic_write`` renames only whole files)."""
        return self.checkpoint.is_file()

    def clear_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)

    @property
    def progress_dir(self) -> Path:
        return self.root / "progress"

    def snapshot(self, step: int) -> Path:
        return self.progress_dir / f"step_{int(step):06d}.png"

    def write_snapshot(self, step: int, png: bytes) -> Path:
        """The progress snapshot of ``step`` (not fsynced: a snapshot lost in a crash is redrawn)."""
        return atomic_write(self.snapshot(step), png, durable=False)

    @property
    def previews_dir(self) -> Path:
        return self.root / "previews"

    def keep_preview(self, step: int, snapshot: Path, n: int) -> Path:
        """A server texture version of ``snapshot``: a hard link under a name unique to this
        process and count (a copy where links are not supported); returns its path."""
        self.previews_dir.mkdir(parents=True, exist_ok=True)
        dest = self.previews_dir / f"step_{int(step):07d}_{os.getpid()}_{n}.png"
        try:
            os.link(snapshot, dest)
        except OSError:
            atomic_write(dest, Path(snapshot).read_bytes(), durable=False)
        return dest

    # -- results -----------------------------------------------------------------------
    @property
    def texture_png(self) -> Path:
        return self.root / "texture.png"

    @property
    def glb(self) -> Path:
        return self.root / "textured.glb"

    @property
    def preview_png(self) -> Path:
        return self.root / "preview.png"

    def result(self, name: str) -> Path | None:
        """The result file called ``name`` (one of ``RESULT_NAMES``), else None."""
        return self.root / name if name in RESULT_NAMES else None

    def outputs(self) -> dict[str, str]:
        """Result paths as a batch summary lists them."""
        return {"glb": str(self.glb), "texture": str(self.texture_png), "preview": str(self.preview_png),
                "job_json": str(self.job_json)}

    @property
    def batch_attempt(self) -> Path:
        return self.root / "batch_attempt.json"

    # -- flags the server writes ---------------------------------------------------------
    @property
    def cancel_flag(self) -> Path:
        return self.root / "cancel.flag"

    @property
    def suspend_flag(self) -> Path:
        return self.root / "suspend.flag"

    def stop_requested(self) -> bool:
        """True when the server asked the running job to stop (cancel or clean shutdown)."""
        return self.cancel_flag.exists() or self.suspend_flag.exists()

    # -- housekeeping ----------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folder and the sub-folders the runner writes into."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(exist_ok=True)
        self.progress_dir.mkdir(exist_ok=True)

    def relative(self, path: str | Path) -> str | None:
        """``path`` (absolute, or relative to the folder) as a POSIX path relative to the folder;
        None when it points outside it."""
        root = self.root.resolve()
        full = (root / path).resolve()
        return full.relative_to(root).as_posix() if root in full.parents else None

    def remove_temp_files(self) -> int:
        """Delete temp files a stopped job left (a writer killed between write and rename);
        returns how many."""
        removed = 0
        for root, _dirs, files in os.walk(self.root):
            for name in files:
                if is_temp_name(name):
                    try:
                        os.unlink(os.path.join(root, name))
                        removed += 1
                    except OSError:
                        pass  # gone already (the job folder may be deleted concurrently)
        return removed
