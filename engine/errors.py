"""The engine's error types.

Every error a user can cause carries a one-line message that names the problem
and the fix; the CLI prints ``error: <message>`` and exits with the error's
``exit_code`` (see README, "Exit codes") without a traceback.
"""

from __future__ import annotations


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
