"""``texbridge doctor``: Python, torch, device, rasterizer backends, nvdiffrast status, versions."""

from __future__ import annotations

import argparse
import platform
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="show the environment: Python, torch, device, rasterizer backends")
    p.set_defaults(func=run)


def report() -> list[tuple[str, str]]:
    """(name, value) lines of the environment report."""
    import torch

    from engine.environment import package_version
    from engine.raster.backend import RasterBackend
    from engine.raster.context import resolve_backend
    from engine.raster.nvdiffrast_raster import nvdiffrast_status

    rows = [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("cuda available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("cuda device", torch.cuda.get_device_name(0)))
        rows.append(("cuda version", str(torch.version.cuda)))
    rows.append(("cpu threads", str(torch.get_num_threads())))
    try:
        import numba

        rows.append(("numba backend", f"available (numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads)"))
    except Exception as exc:  # pragma: no cover
        rows.append(("numba backend", f"unavailable ({type(exc).__name__})"))
    ok, reason = nvdiffrast_status()
    rows.append(("nvdiffrast backend", "available" if ok else f"unavailable: {reason}"))
    rows.append(("nvdiffrast licence", "NVIDIA Source Code License (non-commercial); optional, extra 'cuda'"))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows.append(("auto backend", f"{resolve_backend(RasterBackend.AUTO, dev).value} on {dev}"))
    for dist in ("texbridge", "numpy", "diffusers", "transformers", "trimesh", "xatlas", "pillow", "fastapi", "uvicorn"):
        rows.append((dist, package_version(dist)))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    return 0
