"""The engine's error types.

Every error a user can cause carries a one-line message that names the problem
and the fix. The fix is data, not text: ``TexbridgeError(problem, kind=..., fix=Fix(field,
text))``, where ``field`` is the setting to change (a job field or option, snake_case) and
``text`` words the fix with ``{field}`` where each front end puts its own name for it:

- the CLI: a flag (``cli_flag``: ``resume`` -> ``--resume``), in ``error: <message>``, and it
  exits with the error's ``exit_code`` (see README, "Exit codes") without a traceback;
- the server: ``to_dict()`` in its error bodies and failed-job events (``kind``, ``field``,
  ``problem``, ``fix``; ``error`` is the neutral wording, the field's name in quotes);
- the Blender add-on: the panel's name for the field or button (``blender_addon/client.py``).

``str(exc)`` is the neutral wording; no engine message names a CLI flag itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, TypeVar

E = TypeVar("E", bound=Enum)


@dataclass(frozen=True)
class Fix:
    """How to fix an error, for each front end to word.

    field: the setting to change, snake_case (``resume``, ``device``, ``model``, ``max_triangles``).
    text: the fix with ``{field}`` where the front end's name for the setting goes.
    """

    field: str
    text: str

    def words(self, name: str) -> str:
        return self.text.replace("{field}", name)


def cli_flag(field: str) -> str:
    """The CLI's name for a setting: ``max_triangles`` -> ``--max-triangles``."""
    return "--" + field.replace("_", "-")


def plain_name(field: str) -> str:
    """The neutral name for a setting (HTTP clients): the field in quotes."""
    return f"'{field}'"


def _rebuild(cls, problem: str, state: dict[str, Any]) -> "TexbridgeError":
    exc = cls.__new__(cls)
    Exception.__init__(exc, problem)
    exc.__dict__.update(state)
    return exc


class TexbridgeError(Exception):
    """Base class: a user-facing, one-line error with a machine-readable ``kind`` and ``fix``."""

    exit_code: int = 1
    kind: str = "engine"

    def __init__(self, message: str = "", *, kind: str | None = None, fix: Fix | None = None):
        super().__init__(message)
        self.problem = message
        if kind is not None:
            self.kind = kind
        self.fix = fix

    def worded(self, name: Callable[[str], str] = plain_name) -> str:
        """The problem, then the fix with the setting called ``name(field)``."""
        if self.fix is None:
            return self.problem
        return f"{self.problem}; {self.fix.words(name(self.fix.field))}"

    def __str__(self) -> str:
        return self.worded()

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form (the server's error body and failed-job event)."""
        return {"error": str(self), "kind": self.kind, "field": self.fix.field if self.fix else None,
                "problem": self.problem, "fix": self.fix.text if self.fix else None}

    def __reduce__(self):  # keep kind and fix across pickling (Ray, multiprocessing)
        return (_rebuild, (type(self), self.problem, dict(self.__dict__)))


class MeshError(TexbridgeError):
    """A mesh file or mesh arrays cannot be used (missing, malformed, too large)."""

    exit_code = 3
    kind = "mesh"


class SpecError(TexbridgeError, ValueError):
    """A job spec or config value is out of range; the message lists what is allowed."""

    exit_code = 2
    kind = "spec"


class BackendUnavailableError(TexbridgeError):
    """A requested rasterizer backend or device is not available here."""

    exit_code = 4
    kind = "backend_unavailable"


class ModelNotFoundError(TexbridgeError):
    """Diffusion model weights are not available (not cached, offline, bad path)."""

    exit_code = 5
    kind = "model_not_found"


class JobCancelled(TexbridgeError):
    """The optimization was cancelled; a checkpoint was written."""

    exit_code = 130
    kind = "cancelled"


def parse_choice(enum: type[E], value, what: str) -> E:
    """``value`` (a member or its case-insensitive value) as a member of ``enum``; else
    ``SpecError("unknown <what> ...; allowed: a, b, c")``."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(getattr(value, "value", value)).lower())
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise SpecError(f"unknown {what} {value!r}; allowed: {allowed}") from None
