"""The HTTP error body, in one place (every route and the submit handler answer through it).

``error_response(status, problem)`` answers ``{"error": ...}`` (``ErrorBody``, not cached);
when ``problem`` is an engine ``TexbridgeError`` the body also carries its machine-readable
``kind``, the ``field`` its fix names, the bare ``problem`` and the ``fix`` text with
``{field}`` in it, so a client words the fix itself (the Blender add-on names its panel's
field or button). In ``error`` the server's own options are worded as ``texbridge serve``
flags and job fields as the field's name in quotes; no job-field fix reads as a CLI flag.

``ApiError`` is raised by dependencies (``job_or_404``) and answered by the app's handler.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from engine.errors import TexbridgeError, cli_flag, plain_name

#: Settings that are options of ``texbridge serve`` rather than job fields.
SERVE_OPTIONS = ("max_vertices", "max_triangles", "device", "model")

#: Engine error kinds answered with 413 (the request is over a server limit).
TOO_LARGE_KINDS = ("mesh_too_large",)


class ApiError(Exception):
    """An error answer raised from a dependency or a helper (``status`` and the problem)."""

    def __init__(self, status: int, problem: "str | TexbridgeError"):
        super().__init__(str(problem))
        self.status = status
        self.problem = problem


def server_name(field: str) -> str:
    """How the server's error text names a setting: a ``texbridge serve`` flag for its own
    options, else the job field's name in quotes."""
    return f"texbridge serve {cli_flag(field)}" if field in SERVE_OPTIONS else plain_name(field)


def error_body(problem: "str | TexbridgeError") -> dict[str, Any]:
    """The JSON body of an error answer."""
    if isinstance(problem, TexbridgeError):
        body = problem.to_dict()
        body["error"] = problem.worded(server_name)
        return body
    return {"error": str(problem)}


def engine_status(exc: TexbridgeError) -> int:
    """The status of a submit refused by the engine's checks: 413 over a limit, else 400."""
    return 413 if exc.kind in TOO_LARGE_KINDS else 400


def error_response(status: int, problem: "str | TexbridgeError") -> JSONResponse:
    """An error answer (``ErrorBody``), never cached."""
    return JSONResponse(error_body(problem), status_code=status, headers={"cache-control": "no-store"})
