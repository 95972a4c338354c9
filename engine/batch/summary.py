"""What a batch reports: ``batch_summary.json``, the optional HTML page, the progress bar.

``batch_summary.json`` (rewritten atomically after every asset, so a crash leaves a current one)::

    {"mode": "sequential" | "ray", "shard": [I, N], "started_at": ..., "wall_s": ...,
     "totals": {"assets": n, "succeeded": n, "failed": n, "skipped": n, "cancelled": n, "queued": n, "running": n},
     "assets_per_hour": ..., "cancelled": bool, "ray": {...} (ray mode),
     "assets": [{"asset", "out", "status", "prompt", "node", "gpu", "attempts", "seconds",
                 "error", "outputs", "resumed", "resumed_from_step", "steps", "reason", ...}]}

assets_per_hour counts assets textured in this run (succeeded, not skipped) over the wall time.
Status words are the job states of ``engine.jobstate`` plus "skipped" (summaries written
before said "done" for succeeded; nothing reads a summary back, an asset's own job.json
decides whether it is skipped or resumed, and there "done" still reads as succeeded).
"""

from __future__ import annotations

import html
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from engine.batch.work import ASSET_STATUSES, CANCELLED, FAILED, SKIPPED, SUCCEEDED
from engine.jobfolder import JobFolder, write_json_atomic


class BatchSummary:
    """Per-asset records in plan order, written to ``path`` on every change."""

    def __init__(self, path: Path, records: list[dict], mode: str, shard: tuple[int, int], extra: dict | None = None):
        self.path = path
        self.records = records
        self.mode = mode
        self.shard = shard
        self.extra = dict(extra or {})
        self.cancelled = False
        self._index = {r["asset"]: i for i, r in enumerate(records)}
        self._t0 = time.perf_counter()
        self._started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def update(self, rec: dict) -> None:
        self.records[self._index[rec["asset"]]] = rec
        self.write()

    def get(self, asset: str) -> dict:
        return self.records[self._index[asset]]

    def counts(self) -> dict[str, int]:
        out = {"assets": len(self.records)}
        out.update({s: sum(1 for r in self.records if r["status"] == s) for s in ASSET_STATUSES})
        return out

    def to_dict(self) -> dict:
        wall = time.perf_counter() - self._t0
        counts = self.counts()
        ran = sum(1 for r in self.records if r["status"] == SUCCEEDED and r.get("attempts", 0) > 0)
        return {"mode": self.mode, "shard": list(self.shard), "started_at": self._started, "wall_s": round(wall, 3),
                "totals": counts, "assets_per_hour": round(ran / wall * 3600.0, 2) if wall > 0 else 0.0,
                "cancelled": self.cancelled, **self.extra, "assets": self.records}

    def write(self) -> dict:
        data = self.to_dict()
        write_json_atomic(self.path, data, sort_keys=False)  # mode, shard, ... first; assets last
        return data

    def exit_code(self) -> int:
        """0 all succeeded or skipped; 6 some failed; 1 all failed; 130 cancelled."""
        c = self.counts()
        if self.cancelled or c[CANCELLED]:
            return 130
        if c[FAILED]:
            return 1 if c[FAILED] == len(self.records) else 6
        return 0

    def line(self) -> str:
        c = self.counts()
        return "batch: " + ", ".join(f"{c[s]} {s}" for s in (SUCCEEDED, SKIPPED, FAILED, CANCELLED) if c[s] or s == SUCCEEDED)


def write_report(path: Path, summary: dict) -> Path:
    """One static HTML page: per asset its contact sheet, prompt, state and a link to its GLB."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def rel(p: str) -> str:
        return html.escape(os.path.relpath(p, path.parent).replace(os.sep, "/"), quote=True)

    cards = []
    for r in summary["assets"]:
        out = r.get("outputs") or {}
        preview, glb = out.get("preview"), out.get("glb")
        if not preview:
            folder = JobFolder(r["out"])
            preview, glb = str(folder.preview_png), str(folder.glb)
        have = Path(preview).is_file()
        img = f'<img src="{rel(preview)}" alt="{html.escape(r["asset"])}">' if have else '<div class="none">no preview</div>'
        link = f'<a href="{rel(glb)}">{html.escape(Path(glb).name)}</a>' if Path(glb).is_file() else ""
        err = f'<p class="err">{html.escape(str(r["error"]))}</p>' if r.get("error") and r["status"] != SUCCEEDED else ""
        cards.append(f'<div class="card {html.escape(r["status"])}">{img}<h2>{html.escape(r["asset"])}</h2>'
                     f'<p class="state">{html.escape(r["status"])}</p><p>{html.escape(r.get("prompt") or "")}</p>'
                     f'{err}{link}</div>')
    t = summary["totals"]
    head = ", ".join(f"{t[s]} {s}" for s in (SUCCEEDED, SKIPPED, FAILED, CANCELLED))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>texbridge batch</title><style>
body{{font-family:sans-serif;margin:1em}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{width:280px;border:1px solid #ccc;padding:8px}} .card img{{width:100%}} h2{{font-size:1em;margin:.3em 0}}
.state{{font-weight:bold}} .failed .state,.err{{color:#b00}} .none{{height:140px;background:#eee}}
</style></head><body>
<h1>texbridge batch</h1><p>{html.escape(head)}; {summary["assets_per_hour"]} assets/hour; {summary["wall_s"]} s</p>
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


class BatchProgress:
    """One bar for the whole batch: assets finished of those to run, succeeded/failed/running, ETA."""

    def __init__(self, total: int, quiet: bool) -> None:
        self._bar = None
        if not quiet and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="batch", unit="asset", dynamic_ncols=True, file=sys.stderr)

    def show(self, summary: BatchSummary, running: int) -> None:
        if self._bar is None:
            return
        c = summary.counts()
        finished = sum(1 for r in summary.records if r["status"] in (SUCCEEDED, FAILED, CANCELLED) and r.get("attempts"))
        self._bar.n = finished
        self._bar.set_postfix(succeeded=c[SUCCEEDED], failed=c[FAILED], running=running, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

