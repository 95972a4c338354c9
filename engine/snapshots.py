"""Snapshots and checkpoints written beside the loop, with their callbacks kept in step order.

A snapshot is the texture every ``preview_every`` steps as ``progress/step_NNNNNN.png``
(``JobFolder.write_snapshot``); a checkpoint every ``checkpoint_every`` steps replaces
``checkpoints/latest.pt``. Inline, the main job spent about 6 s of its 1000 steps on them
(a 1024² PNG about 45 ms: quantise, zlib; a 38 MB checkpoint about 100 ms with its fsync).
``SnapshotWriter`` writes them on one background thread while the next step runs (numpy,
zlib, file I/O release the GIL); a checkpoint is written from a copy of its tensors.

Event order is unchanged: the previous snapshot is finished and its callbacks
(``on_preview``, ``on_snapshot``) run on the caller's thread before the next event of any
kind (``deliver``), so a listener still sees progress N, preview N, stage, progress N + 1.
At most one write is in flight (a slow disk delays the loop instead of queueing
textures). A failed write (e.g. a full disk) is raised on the caller's thread by the next
``deliver`` or when the ``with`` block ends, with its own exception. A crash mid-write leaves the previous checkpoint (the
writes are atomic), as a crash just before the write did.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.checkpoint import Checkpoint, save_checkpoint
from engine.errors import JobCancelled
from engine.export import encode_png
from engine.jobfolder import JobFolder


def _detached_copy(obj):
    """``obj`` with every tensor cloned (a checkpoint's state must not change under the writer)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached_copy(v) for v in obj)
    return obj


class SnapshotWriter:
    """Writes ``folder``'s snapshots and checkpoints on one background thread, one at a time
    (``background=False``: inline, as before)."""

    def __init__(self, folder: JobFolder, on_preview: Callable[[int, np.ndarray], None] | None = None,
                 on_snapshot: Callable[[int, Path], None] | None = None, background: bool = True):
        self.folder, self.on_preview, self.on_snapshot = folder, on_preview, on_snapshot
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="texbridge-writer") if background else None
        self._pending: tuple[Future, Callable[[object], None]] | None = None

    def _start(self, write: Callable[[], object], finish: Callable[[object], None]) -> None:
        self.deliver()
        if self._pool is None:
            finish(write())
        else:
            self._pending = (self._pool.submit(write), finish)

    def submit(self, step: int, texture: np.ndarray) -> None:
        """Start writing ``texture`` (H, W, 3) float32 in [0, 1] as the snapshot of ``step``;
        ``on_preview`` and ``on_snapshot`` run when it is written (by the next ``deliver``)."""

        def finish(path) -> None:
            if self.on_preview is not None:
                self.on_preview(step, texture)
            if self.on_snapshot is not None:
                self.on_snapshot(step, path)

        self._start(lambda: self.folder.write_snapshot(step, encode_png(texture, 8, compress_level=1)), finish)

    def submit_checkpoint(self, checkpoint: Checkpoint, then: Callable[[Checkpoint], None] | None = None) -> None:
        """Start saving a copy of ``checkpoint`` to ``folder.checkpoint`` (atomic, durable, free
        space checked first); ``then(copy)`` runs once it is on disk (by the next ``deliver``)."""
        copy = dataclasses.replace(checkpoint, logits=_detached_copy(checkpoint.logits),
                                   optimizer=_detached_copy(checkpoint.optimizer))
        self._start(lambda: save_checkpoint(copy, self.folder.checkpoint),
                    lambda _: then(copy) if then is not None else None)

    def deliver(self) -> None:
        """Wait for the write in flight, if any, and run its callbacks (re-raises its error)."""
        if self._pending is not None:
            fut, finish = self._pending
            self._pending = None
            finish(fut.result())

    def before(self, callback: Callable | None) -> Callable:
        """``callback`` (which may be None) preceded by ``deliver``."""

        def wrapped(*args):
            self.deliver()
            return None if callback is None else callback(*args)

        return wrapped

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Deliver the write in flight and stop the thread. Its error is raised when the block
        ended normally or by a cancel (a cancel's checkpoint must be on disk); after any other
        error it is dropped, so the first error is the one reported."""
        try:
            if exc_type is None or issubclass(exc_type, JobCancelled):
                self.deliver()
            else:
                try:
                    self.deliver()
                except Exception:  # noqa: BLE001 - an earlier error is already on its way up
                    pass
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return False
