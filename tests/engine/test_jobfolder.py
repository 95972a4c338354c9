"""engine.jobfolder: the atomic-write helper, the layout's owner, the state vocabulary.

The layout check at the end is the grep of docs/architecture.md ("Job folder"), run in
Python so it fails the suite when a module outside engine/jobfolder.py spells a file name.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
import torch

from engine.checkpoint import Checkpoint, capture_rng, save_checkpoint
from engine.jobfolder import JobFolder, atomic_write, write_json_atomic
from engine.jobstate import TERMINAL, WORDS, JobState

ROOT = Path(__file__).resolve().parents[2]


def _disk_full(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a.json"
    write_json_atomic(p, {"b": 1, "a": 2})
    assert json.loads(p.read_text()) == {"a": 2, "b": 1} and list(p.read_text().splitlines())[1].strip() == '"a": 2,'
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new" and os.listdir(tmp_path) == ["a.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "job.json"
    p.write_text("old")
    with pytest.raises(OSError, match="No space left"):
        atomic_write(p, _disk_full)  # the writer itself fails (a full disk mid-write)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["job.json"]


def test_failed_rename_leaves_no_temp(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "x.png", b"\x89PNG")
    assert os.listdir(tmp_path) == []


def test_checkpoint_write_on_full_disk_leaves_no_temp(tmp_path, monkeypatch):
    folder = JobFolder(tmp_path)
    folder.prepare()
    ck = Checkpoint(3, torch.zeros(4, 4, 3), {}, capture_rng(torch.Generator()), {"seed": 1})
    monkeypatch.setattr(torch, "save", _disk_full)
    with pytest.raises(OSError):
        save_checkpoint(ck, folder.checkpoint)
    assert os.listdir(folder.checkpoints_dir) == [] and not folder.has_checkpoint()


def test_has_checkpoint_ignores_temp_files(tmp_path):
    folder = JobFolder(tmp_path)
    folder.prepare()
    (folder.checkpoints_dir / f".{folder.checkpoint.name}.tmp-123-456").write_bytes(b"half")
    assert not folder.has_checkpoint()
    assert folder.remove_temp_files() == 1 and os.listdir(folder.checkpoints_dir) == []
    save_checkpoint(Checkpoint(1, torch.zeros(2, 2, 3), {}, capture_rng(torch.Generator()), {}), folder.checkpoint)
    assert folder.has_checkpoint()


def test_state_words_and_the_old_done(tmp_path):
    assert WORDS == ("queued", "running", "succeeded", "failed", "cancelled")
    assert TERMINAL == {"succeeded", "failed", "cancelled"} and "failed" in TERMINAL
    assert JobState.parse("done") is JobState.SUCCEEDED and JobState.parse("nonsense") is None
    assert JobState.SUCCEEDED.terminal and not JobState.RUNNING.terminal
    folder = JobFolder(tmp_path)
    assert folder.state() is None
    folder.job_json.write_text(json.dumps({"status": "done"}))  # written before the vocabulary was one
    assert folder.state() is JobState.SUCCEEDED
    folder.job_json.write_text("{torn")
    assert folder.state() is None


def test_relative_refuses_paths_outside(tmp_path):
    folder = JobFolder(tmp_path / "job")
    folder.prepare()
    assert folder.relative(folder.snapshot(10)) == "progress/step_000010.png"
    assert folder.relative("../other/job.json") is None
    assert folder.result("texture.png") == folder.texture_png and folder.result("../x") is None


def test_keep_preview_shares_the_snapshot(tmp_path):
    folder = JobFolder(tmp_path)
    folder.prepare()
    snap = folder.write_snapshot(10, b"\x89PNG-10")
    kept = folder.keep_preview(10, snap, 1)
    folder.write_snapshot(10, b"\x89PNG-resumed")  # a resume rewrites the snapshot ...
    assert kept.read_bytes() == b"\x89PNG-10"  # ... the kept version keeps its bytes
    assert kept.parent == folder.previews_dir


#: The check of docs/architecture.md, section "Job folder" (same expression).
LAYOUT_NAMES = re.compile(
    r"""["'/](job\.json|texture\.png|textured\.glb|preview\.png|latest\.pt|spec\.json|init_texture\.png|cancel\.flag"""
    r"""|suspend\.flag|batch_attempt\.json|mesh\.\{)["']|["'](checkpoints|progress|previews|inputs)/"""
    r"""|/ *["']progress["']|["'](checkpoints|previews|inputs)["']|["']step_\{"""
)


def test_no_module_but_jobfolder_spells_a_job_folder_name():
    hits = []
    for pkg in ("engine", "server", "blender_addon"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "engine" / "jobfolder.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if LAYOUT_NAMES.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == [], "job-folder paths belong in engine/jobfolder.py:\n" + "\n".join(hits)
    assert LAYOUT_NAMES.search('out / "checkpoints" / "latest.pt"')  # the check does catch the old spelling
