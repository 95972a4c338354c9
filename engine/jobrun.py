"""The body of ``engine.runner.run_texture_job``: set up, optimize, export, record.

Steps: write the job record (state "running"); load the mesh and the prior (unless given);
build the view cache; optimize (checkpoints and progress snapshots into the job folder on the
way, through the loop's callbacks); export the texture (UV-padded), the GLB and the contact
sheet; record "succeeded" with timings. Cancel -> "cancelled"; any error -> "failed" with the
message. Every path comes from ``engine.jobfolder.JobFolder``. A resume reads the checkpoint
once: the same ``Checkpoint`` is checked against the spec and handed to the loop as its start.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from engine import jobschema
from engine.callbacks import JobCallbacks
from engine.checkpoint import Checkpoint
from engine.environment import resolve_device, versions
from engine.errors import Fix, JobCancelled, SpecError, TexbridgeError
from engine.job import TextureJob
from engine.jobfolder import JobFolder
from engine.jobstate import JobState

#: Orbit views whose G-buffers are precomputed per job (the loop samples among them):
#: steps * views_per_step clamped to this range (a short job needs fewer distinct views).
VIEW_CACHE_MIN, VIEW_CACHE_MAX = 16, 64
#: Spec fields that may differ when resuming (they do not change the optimization's math).
RESUME_MAY_DIFFER = ("mesh", "device", "backend", "memory", "checkpoint_every", "preview_every")


def build_views(resolved, ctx, mesh, views_per_step: int):
    """The loop's ``ViewSource``: fresh close-ups, or a cache of seeded orbit views."""
    from engine.cameras import CloseupConfig, OrbitConfig, ViewMode, sample_orbit
    from engine.render import ViewCache
    from engine.views import CachedViews, CloseupViews

    job = resolved.job
    if resolved.views is ViewMode.CLOSEUP:
        return CloseupViews(ctx, mesh, CloseupConfig(), resolved.render_size)
    n_views = min(VIEW_CACHE_MAX, max(VIEW_CACHE_MIN, resolved.steps * views_per_step))
    cams = sample_orbit(OrbitConfig(), n_views, torch.Generator().manual_seed(job.seed))
    return CachedViews(ViewCache.build(ctx, mesh, cams, resolved.render_size))


def optimization_render_config(texture_size: int, render_size: int):
    """Mip-mapped rendering with the pyramid capped at lod log2(texture/render) + 1.

    That covers the minification of views facing the camera (plus one level for slanted
    ones) while keeping coarse levels, which average whole UV islands together, out of
    the optimization: through them every texel of a coarse block, even one no view sees,
    would get a gradient (and Adam turns any gradient into a full-size step).
    """
    from engine.render import RenderConfig

    ratio = max(0, math.ceil(math.log2(max(texture_size / render_size, 1.0))))
    return RenderConfig(max_mip_levels=ratio + 2)


def read_job_json(out_dir: str | Path) -> dict:
    """The job record of ``out_dir`` (for a resume); ``SpecError`` when there is none."""
    folder = JobFolder(out_dir)
    record = folder.read_record()
    if record is None:
        raise SpecError(f"{out_dir} has no readable {folder.job_json.name}", kind="not_a_job_folder",
                        fix=Fix("resume", "{field} needs a folder written by texbridge texture"))
    return record


def load_init_texture(path: str, size: int) -> torch.Tensor:
    """A PNG/JPEG as (size, size, 3) float32 in [0, 1], row 0 = top (resized bilinearly)."""
    from PIL import Image

    try:
        img = Image.open(path).convert("RGB")
    except (OSError, ValueError) as exc:
        raise SpecError(f"init_texture {path!r} cannot be read as an image ({exc}); give a PNG file") from None
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def face_texel_mask(mesh, size: int) -> torch.Tensor | None:
    """(size, size) bool: texels covered by the faces in ``mesh.face_mask`` (None = all may change)."""
    if mesh.face_mask is None or bool(np.all(mesh.face_mask)):
        return None
    from engine.export import uv_coverage_mask

    sel = np.asarray(mesh.face_mask, bool)
    if not sel.any():
        raise SpecError("face_mask selects no faces; select at least one face to refine, or send no mask")
    sub = dataclasses.replace(mesh, faces=mesh.faces[sel], uvs=mesh.uvs[sel], face_mask=None)
    return torch.from_numpy(np.asarray(uv_coverage_mask(sub, size), bool))


def execute(job: TextureJob, folder: JobFolder, *, mesh, prior, callbacks: JobCallbacks,
            start: Checkpoint | None) -> tuple[int, str]:
    """Run ``job`` in ``folder`` (from ``start`` when resuming); returns (steps done, model name)."""
    from engine.export import contact_sheet, export_glb, pad_texture, save_texture_png, uv_coverage_mask
    from engine.mesh import load_mesh
    from engine.optimize import OptimizeConfig, gray_texture, optimize_texture
    from engine.priors.loading import load_prior
    from engine.priors.memory import reset_peak_memory
    from engine.priors.setup import record_peak, setup_prior
    from engine.raster import RasterContext
    from engine.snapshots import SnapshotWriter

    folder.prepare()
    if start is not None:
        check_resume(job, start.spec)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    spec = job.to_dict()
    record: dict = {
        "status": JobState.RUNNING.value,
        "spec": spec,
        "versions": versions(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed": start is not None,
        "timings": timings,
        "error": None,
    }
    folder.write_record(record)
    try:
        t0 = time.perf_counter()
        if mesh is None:
            if not job.mesh:
                raise SpecError("job has no mesh; give a mesh file (OBJ, GLB/glTF, PLY or .npz)")
            mesh = load_mesh(job.mesh)
        timings["load_mesh_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        device = prior.device if prior is not None else resolve_device(job.device)
        if prior is None:
            prior = load_prior(job.model, device)
        timings["load_model_s"] = time.perf_counter() - t0
        record["model"] = prior.name
        record["device"] = {"type": device.type, "dtype": str(prior.dtype).replace("torch.", ""),
                            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"}

        resolved = job.resolve(prior.preferred_views, prior.preferred_render_size)  # the recipe's steps and views
        t0 = time.perf_counter()  # --memory and --encoder on the prior (switched per job: servers keep priors)
        prior_setup = setup_prior(prior, device=device, memory=job.memory, encoder=job.encoder,
                                  tiny_encoder=job.tiny_encoder, views_per_step=resolved.values.views_per_step)
        record.update(prior_setup.to_dict())
        record["device"]["dtype"] = str(prior.dtype).replace("torch.", "")  # low mode may cast to fp16
        timings["prior_setup_s"] = time.perf_counter() - t0
        reset_peak_memory(device)

        if job.controlnet is not None:  # loaded in the prior's final dtype, checked against its UNet before any step
            from engine.priors.controlnet import with_control

            t0 = time.perf_counter()
            prior = with_control(prior, job.control_config())
            record["controlnet"] = {"model": prior.controlnet_name, "control": job.control.value,
                                    "control_scale": float(job.control_scale)}
            timings["load_controlnet_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        views_per_step = prior_setup.views_per_step
        ctx = RasterContext(job.backend, device=device)
        record["backend"] = getattr(ctx.backend, "value", str(ctx.backend))
        views = build_views(resolved, ctx, mesh, views_per_step)
        timings["view_cache_s"] = time.perf_counter() - t0

        render_config = optimization_render_config(job.texture_size, resolved.render_size)
        guidance = resolved.guidance_config()
        record["resolved"] = {**resolved.to_dict(), "views_per_step": views_per_step}  # what the loop renders
        folder.write_record(record)
        init = None
        if start is None:
            init = load_init_texture(job.init_texture, job.texture_size) if job.init_texture else gray_texture(job.texture_size)

        # snapshots and checkpoints are written on a background thread; every other event first
        # delivers the pending write (engine.snapshots), so events keep their order
        snapshots = SnapshotWriter(folder, callbacks.on_preview, callbacks.on_snapshot)

        def on_checkpoint(ckpt: Checkpoint) -> None:
            snapshots.submit_checkpoint(dataclasses.replace(ckpt, spec=spec), callbacks.on_checkpoint)

        cb = dataclasses.replace(callbacks, on_preview=snapshots.submit, on_checkpoint=on_checkpoint,
                                 on_progress=snapshots.before(callbacks.on_progress),
                                 on_stage=snapshots.before(callbacks.on_stage))
        t0 = time.perf_counter()
        with snapshots:  # at the end: the last writes delivered, a failed one raised
            result = optimize_texture(
                prior=prior, views=views, guidance=guidance, prompt=job.prompt, render_config=render_config,
                config=OptimizeConfig(steps=resolved.steps, learning_rate=resolved.values.learning_rate,
                                      betas=resolved.values.betas, eps=resolved.values.eps,
                                      lr_final_fraction=resolved.values.lr_final_fraction,
                                      views_per_step=views_per_step, checkpoint_every=job.checkpoint_every,
                                      preview_every=job.preview_every, seed=job.seed),
                init_texture=init, start=start, texel_mask=face_texel_mask(mesh, job.texture_size), callbacks=cb,
            )
        timings["optimize_s"] = time.perf_counter() - t0
        record_peak(record, device)  # torch.cuda.max_memory_allocated since the prior was set up
        timings["optimize_total_s"] = result.elapsed_s
        timings["phases_s"] = {k: round(v, 4) for k, v in result.timings.items()}

        t0 = time.perf_counter()
        coverage = np.asarray(uv_coverage_mask(mesh, job.texture_size), bool)
        texture = pad_texture(result.texture, coverage)
        save_texture_png(texture, folder.texture_png)
        export_glb(mesh, texture, folder.glb)
        contact_sheet(mesh, texture, folder.preview_png, ctx=ctx)
        timings["export_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        record.update(status=JobState.SUCCEEDED.value, steps_done=result.steps_done,
                      finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        folder.write_record(record)
        return result.steps_done, prior.name
    except JobCancelled as exc:
        record.update(status=JobState.CANCELLED.value, error=str(exc))
        folder.write_record(record)
        raise
    except BaseException as exc:
        record.update(status=JobState.FAILED.value,
                      error=str(exc) if isinstance(exc, TexbridgeError) else f"{type(exc).__name__}: {exc}")
        folder.write_record(record)
        raise


def check_resume(job: TextureJob, saved: dict) -> None:
    """``SpecError`` when ``job`` differs from the checkpoint's spec ``saved`` in a field that
    changes the optimization (``RESUME_MAY_DIFFER`` may differ). A field the checkpoint
    predates counts as its default, so adding a job field does not strand older jobs."""
    defaults = {fs.name: fs.default_value for fs in jobschema.fields(TextureJob) if not fs.required}
    saved = {**defaults, **saved}
    now = job.to_dict()
    diff = sorted(k for k in set(saved) | set(now) if k not in RESUME_MAY_DIFFER and saved.get(k) != now.get(k))
    if diff:
        raise SpecError(f"cannot resume: the spec differs from the checkpoint's in {', '.join(diff)}; "
                        f"resume with the same settings or start a new job folder")
