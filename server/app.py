"""The FastAPI application: routes of docs/api.md over the store and the supervisor.

``create_app`` composes everything explicitly; the security middleware wraps the whole
app (see ``server.security``). ``python -m server.app --write-openapi PATH`` regenerates
docs/openapi.json.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.environment import package_version
from engine.jobfolder import RESULT_NAMES
from server import submit
from server.config import API_VERSION, ServerConfig
from server.errors import ApiError, error_response
from server.events import EventHub, stream_events
from server.schemas import ErrorBody, Health, Job, JobList, Unloaded
from server.security import BodyLimitMiddleware, GuardMiddleware
from server.statewrites import StoreUnavailable
from server.store import JobStore
from server.supervisor import EngineBusy, JobConflict, JobManager

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_MEDIA = {".glb": "model/gltf-binary", ".png": "image/png", ".json": "application/json"}

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 503)}
STORE_ERRORS = {**ERRORS, 507: {"model": ErrorBody}}


def create_app(config: ServerConfig, store: JobStore, manager: JobManager, hub: EventHub, on_ready=None, on_stop=None):
    """The ASGI app (FastAPI inside the guard middleware)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.bind(asyncio.get_running_loop())
        manager.start()
        if on_ready:
            on_ready()
        try:
            yield
        finally:
            if on_stop:
                on_stop()
            await run_in_threadpool(manager.stop)

    api = FastAPI(
        title="texbridge engine API",
        version=package_version("texbridge"),
        description="Local engine process of texbridge. Every route needs 'Authorization: Bearer <token>'; see docs/api.md.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(404, "no such route; see GET /v1/openapi.json")
        if exc.status_code == 405:
            return error_response(405, "method not allowed on this route; see GET /v1/openapi.json")
        return error_response(exc.status_code, str(exc.detail))

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"bad request: {where}: {first.get('msg', 'invalid')}")

    @api.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.problem)

    @api.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # pragma: no cover - a bug if reached
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    def job_or_404(job_id: str) -> dict[str, Any]:
        """Dependency: the job named by the path (raises ``ApiError`` 404 for a bad or unknown id)."""
        if not JOB_ID.match(job_id):
            raise ApiError(404, f"no job with id {job_id[:40]!r}; ids are 32 hex digits (GET /v1/jobs lists them)")
        job = manager.view(job_id)  # a state the store could not take yet is reported from memory
        if job is None:
            raise ApiError(404, f"no job with id {job_id}; GET /v1/jobs lists the jobs")
        return job

    @api.get("/v1/health", response_model=Health, responses=ERRORS, tags=["engine"])
    def health():
        return {
            "status": "ok",
            "version": package_version("texbridge"),
            "api_version": API_VERSION,
            "device": manager.device,
            "loaded_model": manager.loaded_model,
            "models": list(config.models),
            "queue_length": manager.queue_length(),
            "running_job": manager.running_job,
            "worker_pid": manager.worker_pid,
            "versions": dict(manager.versions),
        }

    @api.post(
        "/v1/jobs",
        status_code=201,
        response_model=Job,
        responses={**ERRORS, 200: {"model": Job, "description": "Repeated Idempotency-Key: the first job."}, 507: {"model": ErrorBody}},
        openapi_extra=submit.OPENAPI_REQUEST,
        tags=["jobs"],
    )
    async def submit_job(request: Request):
        return await submit.handle_submit(request, config, store, manager, hub)

    @api.get("/v1/jobs", response_model=JobList, responses=ERRORS, tags=["jobs"])
    def list_jobs():
        return {"jobs": manager.list_view()}

    @api.get("/v1/jobs/{job_id}", response_model=Job, responses=ERRORS, tags=["jobs"])
    def get_job(job: dict[str, Any] = Depends(job_or_404)):
        return job

    @api.post("/v1/jobs/{job_id}/cancel", response_model=Job, responses=ERRORS, tags=["jobs"])
    def cancel_job(job_id: str, job: dict[str, Any] = Depends(job_or_404)):
        return manager.cancel(job_id) or error_response(404, f"no job with id {job_id}")

    @api.delete("/v1/jobs/{job_id}", status_code=204, responses=STORE_ERRORS, tags=["jobs"])
    def delete_job(job_id: str, job: dict[str, Any] = Depends(job_or_404)):
        try:
            manager.delete(job_id)
        except JobConflict as exc:
            return error_response(409, str(exc))
        except StoreUnavailable as exc:
            return error_response(exc.status, str(exc))
        return Response(status_code=204)

    @api.get(
        "/v1/jobs/{job_id}/events",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
        tags=["jobs"],
    )
    async def job_events(request: Request, job_id: str, after: int | None = Query(None, ge=0, description="Same as Last-Event-ID."),
                         job: dict[str, Any] = Depends(job_or_404)):
        last = after or 0
        header = request.headers.get("last-event-id")
        if header is not None:
            if not header.strip().isdigit() or len(header.strip()) > 12:
                return error_response(400, "Last-Event-ID must be the integer id of an event")
            last = int(header.strip())
        return StreamingResponse(
            stream_events(store, hub, job_id, last, run_in_threadpool, pending=manager.writes.event),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @api.get(
        "/v1/jobs/{job_id}/texture",
        responses={**ERRORS, 200: {"content": {"image/png": {}, "application/octet-stream": {}}}},
        tags=["jobs"],
    )
    def job_texture(
        job_id: str,
        version: int | None = Query(None, ge=1, description="Preview version (latest if omitted)."),
        format: str = Query("png", pattern="^(png|rgba8)$"),
        job: dict[str, Any] = Depends(job_or_404),
    ):
        row = store.preview(job_id, version)
        if row is None:
            what = f"version {version}" if version else "any texture version"
            return error_response(404, f"job {job_id} has no {what} yet (latest is {job['preview_version']}); follow its events")
        path = manager.folder(job_id).root / row["path"]  # stored relative to the job folder
        if not path.is_file():
            return error_response(404, f"texture version {row['version']} of job {job_id} is no longer on disk")
        headers = {"X-Texture-Version": str(row["version"]), "X-Texture-Step": str(row["step"]), "cache-control": "no-store"}
        if format == "png":
            return FileResponse(path, media_type="image/png", headers=headers)
        from PIL import Image

        with Image.open(path) as img:
            rgba = img.convert("RGBA")
            headers["X-Texture-Width"], headers["X-Texture-Height"] = str(rgba.width), str(rgba.height)
            data = rgba.tobytes()
        return Response(data, media_type="application/octet-stream", headers=headers)

    @api.get(
        "/v1/jobs/{job_id}/results/{name}",
        responses={**ERRORS, 200: {"content": {"model/gltf-binary": {}, "image/png": {}, "application/json": {}}}},
        tags=["jobs"],
    )
    def job_result(job_id: str, name: str, job: dict[str, Any] = Depends(job_or_404)):
        path = manager.folder(job_id).result(name)
        if path is None:
            return error_response(404, f"no result named {name[:40]!r}; allowed: {', '.join(RESULT_NAMES)}")
        if not path.is_file():
            return error_response(404, f"job {job_id} has no {name} (state {job['state']}); results exist once it succeeded")
        return FileResponse(path, media_type=_MEDIA[path.suffix], headers={"cache-control": "no-store"})

    @api.post("/v1/unload", response_model=Unloaded, responses=ERRORS, tags=["engine"])
    def unload():
        try:
            return manager.unload()
        except EngineBusy as exc:
            return error_response(503, str(exc))
        except TimeoutError:
            return error_response(503, "the worker did not answer the unload request in time; try again")

    guarded = BodyLimitMiddleware(api, max_bytes=config.limits.max_body_bytes)
    host_list = config.host_allow_list() if config.check_host else None
    app = GuardMiddleware(guarded, token=config.token, host_allow_list=host_list, allowed_origins=config.allowed_origins)
    app.fastapi = api  # type: ignore[attr-defined]
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the app (built without starting anything)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(host="127.0.0.1", port=0, token="x", data_dir=Path(tmp))
        store = JobStore(Path(tmp) / "store.sqlite3")
        hub = EventHub()
        app = create_app(config, store, JobManager(config, store, hub.notify), hub)
        doc = app.fastapi.openapi()
        store.close()
    return doc


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Write the engine's OpenAPI document.")
    parser.add_argument("--write-openapi", required=True, help="output path (docs/openapi.json)")
    args = parser.parse_args(argv)
    with open(args.write_openapi, "w", encoding="utf-8") as f:
        json.dump(openapi_document(), f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
