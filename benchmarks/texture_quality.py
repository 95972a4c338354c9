"""Texture quality of real texturing jobs, measured in the procedural world (embedded prior).

Every (mesh, caption) runs as a real job through ``engine.runner.run_texture_job`` (the code
behind ``texbridge texture``), for each method column, and is scored on fixed close-up
evaluation views that no optimization uses (``engine.quality``):

    colour   caption colours dominant (fraction of views)     goal >= 0.90 (quad 0.95)
    pattern  pattern classifier recognises the caption        goal >= 0.60 (quad 0.80)
             (at the texture's own scale: the best of the 3 zoom levels; ``engine.quality``)
    pat_all  the same over every zoom level together (no goal; a perfect texture scores 0.6-0.7)
    sat_err  |mean saturation - real samples'|                goal <= 0.05
    hf       high-frequency energy / real samples'            goal >= 0.50
    wall     seconds per job

Sanity rows: a world sample laid into the UV square ("perfect"), flat mid-grey, and the perfect
texture scored against the next caption's pattern ("wrong caption": what the best-zoom
choice gives a texture of the wrong pattern).
An edit suite refines finished textures (colour edit, pattern edit, face-selection edit).

    python benchmarks/texture_quality.py --quick            # < 10 min on an idle 2-core CPU
    python benchmarks/texture_quality.py --out /tmp/tq      # the full table (README)
    python benchmarks/texture_quality.py --out /tmp/tq --rescore   # re-score its textures, no jobs

Writes OUT/results.json, OUT/grid.png (rows: jobs; columns: methods) and prints the tables.
``--workers N`` runs N jobs at a time (default 1: on 2 cores two at once were slower overall).
"""

from __future__ import annotations

import argparse
import os
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.procedural import NamedColour as C  # noqa: E402
from engine.procedural import Pattern, TextureSpec  # noqa: E402

MESHES = ("quad", "sphere", "cube", "sample")
CURVED = ("sphere", "cube", "sample")
CAPTIONS = {
    "stripes": TextureSpec(Pattern.STRIPES_HORIZONTAL, (C.BLUE, C.WHITE)),
    "checker": TextureSpec(Pattern.CHECKER, (C.RED, C.WHITE)),
    "bricks": TextureSpec(Pattern.BRICKS, (C.RED,)),
    "dots": TextureSpec(Pattern.DOTS, (C.YELLOW, C.BLUE)),
    "wood": TextureSpec(Pattern.WOOD, (C.BROWN,)),
    "tiles": TextureSpec(Pattern.TILES, (C.GREEN, C.WHITE)),
}
#: column -> job fields (every column uses the embedded model and the default views)
METHODS = {
    "default": {},
    "paper-2d": {"recipe": "paper-2d"},
    "paper-3d": {"recipe": "paper-3d"},
    "sds": {"method": "sds"},
    "nfsd": {"method": "nfsd"},
}
QUICK = dict(meshes=MESHES, captions=("stripes", "bricks"), methods=("default", "sds"), steps=None)
GOALS = {"colour": 0.90, "pattern": 0.60, "sat_err": 0.05, "hf": 0.50}
QUAD_GOALS = {"colour": 0.95, "pattern": 0.80}


def make_mesh(name: str):
    from engine.mesh import load_mesh
    from engine.shapes import island_cube, quad, uv_sphere

    if name == "sample":
        return load_mesh(Path(__file__).resolve().parents[1] / "engine" / "assets" / "sample_mesh.obj")
    return {"quad": quad, "sphere": uv_sphere, "cube": island_cube}[name]()


_STATE: dict = {}


def _worker_init(threads: int, classifier) -> None:
    import torch

    torch.set_num_threads(threads)
    _STATE["clf"] = classifier


def _tools():
    """Per process: the prior, the pattern classifier (trained once, in the parent) and a raster context."""
    if "prior" not in _STATE:
        from engine.priors.embedded import load_embedded_prior
        from engine.raster import RasterContext

        _STATE.update(prior=load_embedded_prior("cpu"), ctx=RasterContext("numba"))
    if "clf" not in _STATE:
        from engine.procedural.metrics import PatternClassifier

        _STATE["clf"] = PatternClassifier.train()
    return _STATE


def score_texture(mesh_name: str, spec: TextureSpec, texture: np.ndarray) -> dict:
    from engine.quality import evaluation_cameras, reference_stats, render_views, score_views

    t = _tools()
    mesh = make_mesh(mesh_name)
    cams = evaluation_cameras(t["ctx"], mesh)
    views = render_views(t["ctx"], mesh, texture, cams)
    s = score_views(views, spec, t["clf"], reference_stats(spec), cams.zoom)
    return {"colour": s.colour_rate, "pattern": s.pattern_rate, "pattern_all": s.pattern_all,
            "pattern_by_zoom": [round(v, 3) for v in s.pattern_by_zoom], "sat": s.saturation,
            "sat_err": s.saturation_error, "hf": s.hf_ratio, "views": s.views, "thumbs": views[:4].tolist()}


def run_job(task: dict) -> dict:
    """One job folder under task['out'] (``task['rescore']``: the finished one there); returns its scores."""
    import dataclasses

    from engine.export import load_texture_png
    from engine.job import TextureJob
    from engine.runner import run_texture_job

    t = _tools()
    mesh = make_mesh(task["mesh"])
    if task.get("face_mask") is not None:
        mesh = dataclasses.replace(mesh, face_mask=np.asarray(task["face_mask"], bool))
    if task.get("rescore"):
        texture_png, wall = _finished_job(Path(task["out"]))
    else:
        job = TextureJob(prompt=task["prompt"], model="embedded", device="cpu", seed=task.get("seed", 0),
                         texture_size=task.get("texture_size", 512), checkpoint_every=10**6, preview_every=10**6,
                         **task["fields"])
        t0 = time.perf_counter()
        texture_png = run_texture_job(job, task["out"], mesh=mesh, prior=t["prior"]).texture_png
        wall = time.perf_counter() - t0
    texture = load_texture_png(texture_png)
    spec = CAPTIONS[task["score_as"]] if isinstance(task["score_as"], str) else task["score_as"]
    out = score_texture(task["mesh"], spec, texture)
    out.update(wall=round(wall, 1), job=task["name"], out=str(task["out"]))
    if task.get("init_texture_png"):
        init = load_texture_png(task["init_texture_png"])
        out["outside_unchanged"] = _outside_unchanged(mesh, init, texture)
    return out


def _finished_job(folder: Path) -> tuple[Path, float]:
    """(texture.png, wall seconds from job.json) of a job folder a run already filled (``--rescore``)."""
    from datetime import datetime

    if not (folder / "texture.png").is_file():
        raise SystemExit(f"--rescore: {folder / 'texture.png'} does not exist; run the benchmark into this --out "
                         "without --rescore first (it runs the jobs)")
    meta = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    wall = (datetime.fromisoformat(meta["finished_at"]) - datetime.fromisoformat(meta["started_at"])).total_seconds()
    return folder / "texture.png", wall


def _outside_unchanged(mesh, init: np.ndarray, final: np.ndarray) -> bool | None:
    """Texels covered only by unselected faces are bit-identical (8-bit) in the result."""
    import dataclasses

    from engine.jobrun import face_texel_mask

    if mesh.face_mask is None:
        return None
    size = init.shape[0]
    inside = face_texel_mask(mesh, size).numpy()  # the texels the job may change
    outside = face_texel_mask(dataclasses.replace(mesh, face_mask=~np.asarray(mesh.face_mask, bool)), size).numpy()
    only_out = outside & ~inside
    q = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    return bool(np.array_equal(q(init)[only_out], q(final)[only_out]))


def sanity_rows(meshes, captions) -> list[dict]:
    from engine.quality import perfect_texture

    rows = []
    names = list(CAPTIONS)
    for m in meshes:
        mesh = make_mesh(m)
        for c in captions:
            spec = CAPTIONS[c]
            perfect = perfect_texture(mesh, spec, 512)
            rows.append({"mesh": m, "caption": c, "kind": "perfect", **score_texture(m, spec, perfect)})
            wrong = CAPTIONS[names[(names.index(c) + 1) % len(names)]]
            rows.append({"mesh": m, "caption": c, "kind": "wrong caption", **score_texture(m, wrong, perfect)})
            rows.append({"mesh": m, "caption": c, "kind": "grey",
                         **score_texture(m, spec, np.full((512, 512, 3), 0.5, np.float32))})
    return rows


@dataclass
class Plan:
    meshes: tuple
    captions: tuple
    methods: tuple
    steps: int | None


def summarise(rows: list[dict], key_fn) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(key_fn(r), []).append(r)
    return {k: {m: round(float(np.mean([r[m] for r in v])), 3) for m in ("colour", "pattern", "pattern_all", "sat_err", "hf", "wall") if m in v[0]}
            | {"jobs": len(v)} for k, v in groups.items()}


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"{'':26s} {'colour':>7s} {'pattern':>8s} {'pat_all':>8s} {'sat_err':>8s} {'hf':>6s} {'wall s':>7s} {'jobs':>5s}")
    for k, v in table.items():
        name = " / ".join(map(str, k)) if isinstance(k, tuple) else str(k)
        print(f"{name:26s} {v['colour']:7.2f} {v['pattern']:8.2f} {v['pattern_all']:8.2f} {v['sat_err']:8.3f} {v['hf']:6.2f} "
              f"{v.get('wall', float('nan')):7.1f} {v['jobs']:5d}")


def write_grid(rows: list[dict], methods, path: Path) -> None:
    """Rows: (mesh, caption); columns: methods; each cell 2 x 2 evaluation views (32 px each, x2)."""
    from PIL import Image

    jobs = sorted({(r["mesh"], r["caption"]) for r in rows}, key=lambda k: (MESHES.index(k[0]), k[1]))
    cell = 128
    grid = np.full((len(jobs) * cell, len(methods) * cell, 3), 255, np.uint8)
    for r in rows:
        i, j = jobs.index((r["mesh"], r["caption"])), list(methods).index(r["method"])
        th = np.asarray(r["thumbs"], np.float32)
        th = np.concatenate([th, np.full((4 - len(th), 32, 32, 3), 0.5, np.float32)]) if len(th) < 4 else th
        tile = np.concatenate([np.concatenate(th[:2], 1), np.concatenate(th[2:4], 1)], 0)
        tile = np.repeat(np.repeat(tile, 2, 0), 2, 1)
        grid[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell] = (tile * 255).round().astype(np.uint8)
    Image.fromarray(grid).save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 captions x 4 meshes x (default, sds) at the job default steps, plus the edit suite")
    ap.add_argument("--out", default="/tmp/texbridge_texture_quality", help="folder for job folders and results")
    ap.add_argument("--steps", type=int, help="steps per job (default: the job default)")
    ap.add_argument("--methods", help="comma-separated columns (default: all; quick: default,sds)")
    ap.add_argument("--meshes", help="comma-separated meshes (default: quad,sphere,cube,sample)")
    ap.add_argument("--captions", help=f"comma-separated captions of {','.join(CAPTIONS)}")
    ap.add_argument("--workers", type=int, default=1,
                    help="jobs run at once (torch threads = cores / workers); two jobs at once on 2 cores were "
                         "measured 4-5x slower each (numba's and torch's thread pools contend), so 1 is the default")
    ap.add_argument("--no-edits", action="store_true", help="skip the edit suite")
    ap.add_argument("--rescore", action="store_true",
                    help="run no jobs: score the textures already in OUT's job folders (after a change to the "
                         "measurement); wall times come from their job.json")
    a = ap.parse_args(argv)
    plan = Plan(**QUICK) if a.quick else Plan(MESHES, tuple(CAPTIONS), tuple(METHODS), None)
    if a.methods:
        plan.methods = tuple(a.methods.split(","))
    if a.meshes:
        plan.meshes = tuple(a.meshes.split(","))
    if a.captions:
        plan.captions = tuple(a.captions.split(","))
    steps = a.steps or plan.steps
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tasks = []
    for m in plan.meshes:
        for c in plan.captions:
            for meth in plan.methods:
                fields = dict(METHODS[meth], **({"steps": steps} if steps else {}))
                tasks.append(dict(name=f"{m}/{c}/{meth}", mesh=m, prompt=CAPTIONS[c].caption, score_as=c,
                                  fields=fields, out=str(out / m / c / meth), rescore=a.rescore))
    from engine.procedural.metrics import PatternClassifier

    _STATE["clf"] = PatternClassifier.train()
    import multiprocessing

    # spawn, not fork: a forked child of a process that has run torch ops can hang in its first parallel op
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                             initargs=(max(1, (os.cpu_count() or 1) // a.workers), _STATE["clf"])) as pool:
        results = list(pool.map(run_job, tasks))
        rows = [{"mesh": t["mesh"], "caption": t["score_as"], "method": t["name"].split("/")[2], **r}
                for t, r in zip(tasks, results)]
        edits = [] if a.no_edits else run_edit_suite(pool, out, steps, rows, a.rescore)
    sanity = sanity_rows(plan.meshes, plan.captions)
    strip = lambda r: {k: v for k, v in r.items() if k != "thumbs"}  # noqa: E731
    report = {
        "plan": {"meshes": plan.meshes, "captions": plan.captions, "methods": plan.methods, "steps": steps or "job default"},
        "by_method_curved": summarise([r for r in rows if r["mesh"] in CURVED], lambda r: r["method"]),
        "by_method_quad": summarise([r for r in rows if r["mesh"] == "quad"], lambda r: r["method"]),
        "by_method_mesh": {"/".join(k): v for k, v in summarise(rows, lambda r: (r["method"], r["mesh"])).items()},
        "sanity": {"/".join(k): v for k, v in summarise(sanity, lambda r: (r["kind"], r["mesh"])).items()},
        "jobs": [strip(r) for r in rows],
        "edits": [strip(e) for e in edits],
        "total_s": round(time.perf_counter() - started, 1),
        "goals": {"curved": GOALS, "quad": QUAD_GOALS},
    }
    (out / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_grid(rows, plan.methods, out / "grid.png")
    print_table("curved meshes (sphere, cube, sample), mean per method", report["by_method_curved"])
    print_table("flat quad, mean per method", report["by_method_quad"])
    print_table("per method and mesh", summarise(rows, lambda r: (r["method"], r["mesh"])))
    print_table("sanity rows (perfect = a world sample in the UV square; grey = flat 0.5; wrong caption = "
                "the perfect texture scored as the next caption)",
                summarise(sanity, lambda r: (r["kind"], r["mesh"])))
    if edits:
        print("\nedit suite")
        for e in edits:
            extra = f" outside-selection bit-identical: {e['outside_unchanged']}" if e.get("outside_unchanged") is not None else ""
            print(f"  {e['job']:44s} colour {e['colour']:.2f} pattern {e['pattern']:.2f} (all zooms {e['pattern_all']:.2f}) "
                  f"hf {e['hf']:.2f}{extra}")
    print(f"\nwrote {out / 'results.json'} and {out / 'grid.png'}; total {report['total_s']} s")
    return 0


def run_edit_suite(pool, out: Path, steps: int | None, rows: list[dict], rescore: bool = False) -> list[dict]:
    """Refine finished cube textures: red bricks -> blue bricks (colour), stripes -> checkerboard
    (pattern), and blue bricks on the selected faces only (texels outside stay bit-identical)."""
    base = out / "edits"
    src, stripes_src = base / "cube_red_bricks", base / "cube_stripes"
    fields = dict(steps=steps) if steps else {}
    first, _ = pool.map(run_job, [
        dict(name="edit-source: cube red bricks", mesh="cube", prompt=CAPTIONS["bricks"].caption, score_as="bricks",
             fields=fields, out=str(src), rescore=rescore),
        dict(name="edit-source: cube stripes", mesh="cube", prompt=CAPTIONS["stripes"].caption, score_as="stripes",
             fields=fields, out=str(stripes_src), rescore=rescore)])
    from engine.guidance.recipe import EMBEDDED

    edit_steps = max(1, (steps or EMBEDDED.steps) // 2)  # half the source jobs' steps
    mask = np.zeros(12, bool)
    mask[:6] = True  # faces +Z, -Z, +X
    tasks = [
        dict(name="red bricks -> blue bricks", mesh="cube", prompt="blue bricks",
             score_as=TextureSpec(Pattern.BRICKS, (C.BLUE,)), out=str(base / "colour"),
             fields=dict(steps=edit_steps, edit_source_prompt="red bricks", init_texture=str(src / "texture.png"))),
        dict(name="blue and white stripes -> checkerboard", mesh="cube", prompt="blue and white checkerboard",
             score_as=TextureSpec(Pattern.CHECKER, (C.BLUE, C.WHITE)), out=str(base / "pattern"),
             fields=dict(steps=edit_steps, edit_source_prompt="blue and white stripes",
                         init_texture=str(stripes_src / "texture.png"))),
        dict(name="red -> blue bricks, 3 of 6 faces selected", mesh="cube", prompt="blue bricks",
             score_as=TextureSpec(Pattern.BRICKS, (C.BLUE,)), out=str(base / "selection"), face_mask=mask.tolist(),
             init_texture_png=str(src / "texture.png"),
             fields=dict(steps=edit_steps, edit_source_prompt="red bricks", init_texture=str(src / "texture.png"))),
    ]
    first["job"] = "source: cube red bricks (before edits)"
    return [first] + list(pool.map(run_job, [dict(t, rescore=rescore) for t in tasks]))


if __name__ == "__main__":
    raise SystemExit(main())
