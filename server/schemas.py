"""pydantic models of the HTTP edge (they shape docs/openapi.json); see docs/api.md."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine import jobschema, jobstate
from engine.job import SCHEMA_VERSION, TextureJob


def _spec_model() -> type[BaseModel]:
    """The spec's pydantic model, generated from ``TextureJob``'s field metadata
    (``engine.jobschema``): adding a job field adds it here and to docs/openapi.json."""
    defs: dict[str, Any] = {"schema_version": (Literal[SCHEMA_VERSION], Field(SCHEMA_VERSION, description="Spec schema version."))}
    for fs in jobschema.fields(TextureJob):
        kind: Any = Literal[fs.choices] if fs.choices is not None else fs.kind
        bounds = {("gt" if fs.lo_open else "ge"): fs.lo} if fs.lo is not None else {}
        if fs.hi is not None:
            bounds["le"] = fs.hi
        default = ... if fs.required else fs.default_value
        defs[fs.name] = (Optional[kind] if fs.nullable else kind, Field(default, description=fs.description, **bounds))
    return create_model("TextureJobSpec", __config__=ConfigDict(extra="forbid"),
                        __doc__="A TextureJob (engine/job.py) in its JSON form.", **defs)


TextureJobSpec = _spec_model()


class ErrorBody(BaseModel):
    error: str = Field(description="One line: the problem and the fix.")
    kind: Optional[str] = Field(None, description="Machine-readable kind of an engine error (e.g. 'mesh_too_large', 'spec').")
    field: Optional[str] = Field(None, description="The setting the fix changes (a job field or a server option), if any.")
    problem: Optional[str] = Field(None, description="The problem alone, without the fix.")
    fix: Optional[str] = Field(None, description="The fix, with '{field}' where a client puts its own name for the setting.")


class Job(BaseModel):
    id: str = Field(description="Server-generated id: 32 lower-case hex digits.")
    state: Literal[jobstate.WORDS]  # type: ignore[valid-type]  # engine.jobstate.JobState's words
    created_at: str | None = Field(description="ISO 8601 UTC timestamp.")
    started_at: str | None = Field(description="ISO 8601 UTC timestamp of the first start.")
    finished_at: str | None = Field(description="ISO 8601 UTC timestamp.")
    step: int = Field(description="Steps completed.")
    total_steps: int = Field(description="Steps the job runs: the spec's steps; 0 until the first progress event "
                                         "when the spec sets none (the recipe's steps, known once the model is loaded).")
    stage: int = Field(description="0 before the first step; 1 = SDS warm-up, 2 = bridge.")
    preview_version: int = Field(description="Latest texture version (0 = none yet).")
    error: str | None
    spec: TextureJobSpec = Field(description="The TextureJob JSON as the server will run it.")
    attempts: int = Field(description="How many times the job has been started (retries and resumes count).")


class JobList(BaseModel):
    jobs: list[Job]


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="texbridge version.")
    api_version: int
    device: str = Field(description="Device the worker runs on (the configured one until the worker has started).")
    loaded_model: str | None
    models: list[str] = Field(description="Models jobs may use (besides 'auto').")
    queue_length: int = Field(description="Jobs queued (not counting the running one).")
    running_job: str | None
    worker_pid: int | None = Field(description="Process id of the worker (None while none runs).")
    versions: dict[str, str] = Field(description="Versions of texbridge and its main libraries, as the worker reports them.")


class Unloaded(BaseModel):
    unloaded: str | None = Field(description="The model that was freed, or null if none was loaded.")
