"""The engine's error types.

Every error a user can cause carries a one-line message that names the problem
and the fix; the CLI prints ``error: <message>`` and exits with the error's
``exit_code`` (see README, "Exit codes") without a traceback.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound=Enum)


class TexbridgeError(Exception):
    """Base class: a user-facing, one-line error."""

    exit_code: int = 1


class MeshError(TexbridgeError):
    """A mesh file or mesh arrays cannot be used (missing, malformed, too large)."""

    exit_code = 3


class SpecError(TexbridgeError, ValueError):
    """A job spec or config value is out of range; the message lists what is allowed."""

    exit_code = 2


class BackendUnavailableError(TexbridgeError):
    """A requested rasterizer backend or device is not available here."""

    exit_code = 4


class ModelNotFoundError(TexbridgeError):
    """Diffusion model weights are not available (not cached, offline, bad path)."""

    exit_code = 5


class JobCancelled(TexbridgeError):
    """The optimization was cancelled; a checkpoint was written."""

    exit_code = 130


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
