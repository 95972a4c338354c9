"""Where the engine runs: the device a job gets and the versions it records.

The one home of two things every front end needs (issue 11: there were three device
resolvers and four version reporters):

- ``resolve_device("auto" | "cpu" | "cuda[:N]")``: ``auto`` is CUDA when it is available,
  else the CPU; CUDA asked for on a machine without it is a ``BackendUnavailableError``
  whose fix names the ``device`` setting (each front end words it: ``--device`` in the
  terminal). The job, the rasterizer context, the priors, batch actors and the server's
  worker all call it.
- ``versions()`` / ``package_version(name)``: installed versions from package metadata,
  so reporting them imports nothing heavy (the server process never imports torch).
  ``job.json``, ``texbridge doctor``, the worker's hello and ``/v1/health`` use them.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from engine.errors import BackendUnavailableError, Fix

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The device choices of a job (``TextureJob.device``, ``texbridge serve --device``).
DEVICES = ("auto", "cpu", "cuda")

#: The packages whose versions a job records (besides Python).
VERSION_PACKAGES = ("texbridge", "torch", "diffusers", "transformers", "numpy", "numba")

NOT_INSTALLED = "not installed"


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``"not installed"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def versions(packages: tuple[str, ...] = VERSION_PACKAGES) -> dict[str, str]:
    """``{"python": ..., package: version}`` for ``packages`` (package metadata only)."""
    out = {"python": platform.python_version()}
    out.update((name, package_version(name)) for name in packages)
    return out


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA raises
    ``BackendUnavailableError`` (exit code 4) with a fix naming the ``device`` setting."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(str(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {str(device)!r} was requested but CUDA is not available here",
            kind="cuda_unavailable", fix=Fix("device", "use {field} cpu or auto"),
        )
    return dev
