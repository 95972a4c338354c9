"""``POST /v1/jobs``: parse the multipart submit, validate everything, create the job.

The spec's ``mesh`` and ``init_texture`` are always replaced by the uploaded files'
paths inside the job folder (a client cannot name server paths), ``model`` must be one
the server was started with (or ``auto``), and ``device`` is the server's. While the
store cannot write, or the disk lacks room for the upload and the store's headroom, the
submit is refused with 507 (disk full) or 503 and nothing is written.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from engine.errors import SpecError, TexbridgeError
from engine.job import TextureJob
from server.config import ServerConfig
from server.errors import engine_status, error_response
from server.events import EventHub
from server.statewrites import STORE_ERRORS, submit_problem, unavailable
from server.store import DuplicateKey, JobStore
from server.supervisor import JobManager
from server.uploads import UploadError, check_mesh, check_png

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

OPENAPI_REQUEST: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "A repeated submit with the same key returns the first job (200).",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["spec", "mesh"],
                    "properties": {
                        "spec": {"type": "string", "contentMediaType": "application/json",
                                 "contentSchema": {"$ref": "#/components/schemas/TextureJobSpec"},
                                 "description": "TextureJob JSON (engine/job.py); its schema: TextureJobSpec."},
                        "mesh": {"type": "string", "format": "binary", "description": ".npz arrays, .glb or .obj"},
                        "init_texture": {"type": "string", "format": "binary", "description": "optional PNG to start from"},
                    },
                }
            }
        },
    },
}


def _resolve_model(requested: str, config: ServerConfig) -> str:
    if requested == "auto":
        return config.models[0] if config.models else "auto"
    if requested in config.models:
        return requested
    allowed = ", ".join(("auto",) + config.models)
    raise SpecError(f"model {requested[:80]!r} is not one this engine was started with; allowed: {allowed} (start it with --model)")


def _prepare(spec_text: str, mesh_bytes: bytes, mesh_name: str | None, init_bytes: bytes | None, config: ServerConfig):
    """Validate everything (in a worker thread); returns (spec dict without paths, mesh kind)."""
    limits = config.limits
    try:
        data = json.loads(spec_text)
    except ValueError as exc:
        raise UploadError(f"spec is not valid JSON ({exc}); send the TextureJob JSON in the 'spec' field") from None
    if not isinstance(data, dict):
        raise UploadError("spec must be a JSON object (the TextureJob JSON)")
    data.pop("mesh", None)
    data.pop("init_texture", None)
    job = TextureJob.from_dict(data)
    job = job.replace(model=_resolve_model(job.model, config), device=config.device)
    info = check_mesh(mesh_bytes, mesh_name, limits)
    if init_bytes is not None:
        check_png(init_bytes, limits)
    return job, info


async def _field_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raw = await value.read(limit + 1)
        if len(raw) > limit:
            raise UploadError(f"spec is larger than {limit} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError("spec is not UTF-8 text") from None
    return str(value)


async def handle_submit(request: Request, config: ServerConfig, store: JobStore, manager: JobManager, hub: EventHub):
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        return error_response(400, "Idempotency-Key must be 1..200 printable ASCII characters without spaces")
    if key is not None:
        existing = await run_in_threadpool(store.find_by_key, key)
        if existing is not None:
            return JSONResponse(existing, status_code=200)
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return error_response(400, "send multipart/form-data with fields 'spec' (TextureJob JSON) and 'mesh' (a .npz, .glb or .obj file)")
    try:
        form = await request.form(max_files=2, max_fields=2, max_part_size=config.limits.max_spec_bytes)
    except Exception as exc:
        if type(exc).__name__ == "BodyTooLarge":
            raise
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        return error_response(400, f"malformed multipart body ({detail}); send fields 'spec' and 'mesh'")
    try:
        unknown = sorted(set(form.keys()) - {"spec", "mesh", "init_texture"})
        if unknown:
            raise UploadError(f"unknown form field(s) {', '.join(unknown)}; allowed: spec, mesh, init_texture")
        spec_text = await _field_text(form.get("spec"), config.limits.max_spec_bytes)
        if spec_text is None:
            raise UploadError("the 'spec' field (TextureJob JSON) is missing")
        mesh = form.get("mesh")
        if not isinstance(mesh, UploadFile):
            raise UploadError("the 'mesh' file is missing; attach a .npz, .glb or .obj file as 'mesh'")
        init = form.get("init_texture")
        if init is not None and not isinstance(init, UploadFile):
            raise UploadError("'init_texture' must be a PNG file")
        mesh_bytes = await mesh.read()
        init_bytes = await init.read() if init is not None else None
        job, info = await run_in_threadpool(_prepare, spec_text, mesh_bytes, mesh.filename, init_bytes, config)
    except UploadError as exc:
        return error_response(400, str(exc))
    except TexbridgeError as exc:  # the engine's spec and mesh checks (kind, field, fix in the body)
        return error_response(engine_status(exc), exc)
    finally:
        await form.close()

    upload = len(mesh_bytes) + len(init_bytes or b"") + len(spec_text.encode())
    headroom = config.reliability.store_headroom_bytes
    problem = await run_in_threadpool(submit_problem, manager.writes, store.path, manager.jobs_dir, upload, headroom)
    if problem is not None:
        return error_response(problem.status, str(problem))
    job_id = uuid.uuid4().hex
    folder = manager.folder(job_id)
    job_dir = folder.root

    def write_inputs() -> dict[str, Any]:
        mesh_path, init_path = folder.write_inputs(mesh_bytes, info.kind, init_bytes)
        spec = job.replace(mesh=str(mesh_path), init_texture=str(init_path) if init_path else None).to_dict()
        folder.write_input_spec(spec)
        return spec

    try:
        spec = await run_in_threadpool(write_inputs)
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return error_response(507, f"disk full: the engine cannot store the job's inputs in {manager.jobs_dir} ({exc.strerror}); "
                        f"need {upload / 2**20:.1f} MB there: free disk space and resubmit")
        raise
    try:
        created = await run_in_threadpool(store.create_job, job_id, spec, job.steps or 0, key)  # 0: the recipe's, known at the first step
    except DuplicateKey as dup:
        shutil.rmtree(job_dir, ignore_errors=True)
        return JSONResponse(dup.job, status_code=200)
    except STORE_ERRORS as exc:  # the store cannot write: nothing of this job is kept
        shutil.rmtree(job_dir, ignore_errors=True)
        manager.writes.note_failure(job_id, "create it", exc)
        failure = unavailable(manager.writes, store.path, upload + headroom, "store new jobs", exc=exc)
        return error_response(failure.status, str(failure))
    except Exception:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    hub.notify(job_id)
    manager.wake()
    return JSONResponse(created, status_code=201)
