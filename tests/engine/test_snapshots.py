"""Snapshots and checkpoints written on a background thread (engine/snapshots.py): the files
are the ones written inline, events keep their order, a checkpoint is saved from a copy,
and a failed write reaches the caller's thread with its own error."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import Checkpoint, capture_rng, load_checkpoint
from engine.errors import JobCancelled
from engine.jobfolder import JobFolder
from engine.snapshots import SnapshotWriter


def _checkpoint(step: int, value: float) -> Checkpoint:
    param = torch.nn.Parameter(torch.full((4, 4, 3), value))
    opt = torch.optim.AdamW([param])
    param.grad = torch.ones_like(param)
    opt.step()
    return Checkpoint(step, param.detach(), opt.state_dict(), capture_rng(torch.Generator().manual_seed(0)),
                      {"prompt": "x"})


def test_events_keep_their_order_and_the_files_equal_inline_writes(tmp_path):
    events: list = []
    texture = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    files = {}
    for background in (False, True):
        folder = JobFolder(tmp_path / str(background))
        folder.prepare()
        log: list = []
        w = SnapshotWriter(folder, on_preview=lambda s, t: log.append(("preview", s)),
                           on_snapshot=lambda s, p: log.append(("snapshot", s, p.name)), background=background)
        progress = w.before(lambda e: log.append(("progress", e)))
        with w:
            progress(10)
            w.submit(10, texture)
            w.submit_checkpoint(_checkpoint(10, 0.25), then=lambda ck: log.append(("checkpoint", ck.step)))
            progress(11)
            w.submit(20, texture)
        events.append(log)
        files[background] = (folder.snapshot(10).read_bytes(), load_checkpoint(folder.checkpoint).logits)
    assert events[0] == events[1] == [("progress", 10), ("preview", 10), ("snapshot", 10, "step_000010.png"),
                                      ("checkpoint", 10), ("progress", 11), ("preview", 20),
                                      ("snapshot", 20, "step_000020.png")]
    assert files[False][0] == files[True][0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "True" / "progress" / "step_000010.png")),
                          np.round(texture * 255).astype(np.uint8))
    assert torch.equal(files[False][1], files[True][1])


def test_a_checkpoint_is_saved_from_a_copy(tmp_path):
    folder = JobFolder(tmp_path)
    folder.prepare()
    ck = _checkpoint(50, 0.5)
    logits, exp_avg = ck.logits.clone(), ck.optimizer["state"][0]["exp_avg"].clone()
    with SnapshotWriter(folder) as w:
        w.submit_checkpoint(ck)
        ck.logits.fill_(9.0)  # the loop's next optimizer step changes the live tensors in place
        ck.optimizer["state"][0]["exp_avg"].fill_(9.0)
    saved = load_checkpoint(folder.checkpoint)
    assert saved.step == 50 and torch.equal(saved.logits, logits)
    assert torch.equal(saved.optimizer["state"][0]["exp_avg"], exp_avg)


def _failing_writer(folder: JobFolder) -> SnapshotWriter:
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    folder.write_snapshot = full  # this folder's disk is full
    return SnapshotWriter(folder)


def test_a_failed_write_is_raised_by_the_next_event(tmp_path):
    folder = JobFolder(tmp_path)
    folder.prepare()
    w = _failing_writer(folder)
    seen: list = []
    progress = w.before(seen.append)
    with pytest.raises(OSError, match="No space left"):
        with w:
            w.submit(10, np.zeros((4, 4, 3), np.float32))
            progress(11)
    assert seen == []  # the failure comes first


def test_a_cancel_waits_for_its_checkpoint_and_a_failed_one_wins(tmp_path):
    folder = JobFolder(tmp_path)
    folder.prepare()
    with pytest.raises(JobCancelled):
        with SnapshotWriter(folder) as w:
            w.submit_checkpoint(_checkpoint(7, 0.1))
            raise JobCancelled("cancelled at step 7/10")
    assert load_checkpoint(folder.checkpoint).step == 7  # on disk when the cancel is reported

    with pytest.raises(OSError, match="No space left"):
        with _failing_writer(folder) as w:
            w.submit(8, np.zeros((4, 4, 3), np.float32))
            raise JobCancelled("cancelled at step 8/10")
    with pytest.raises(ValueError, match="first"):  # any other error is the one reported
        with _failing_writer(folder) as w:
            w.submit(9, np.zeros((4, 4, 3), np.float32))
            raise ValueError("first")
