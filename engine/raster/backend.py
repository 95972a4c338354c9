"""The one closed choice of rasterizer implementation."""

from __future__ import annotations

from enum import Enum


class RasterBackend(str, Enum):
    """Rasterizer backend.

    AUTO: nvdiffrast when CUDA is available and ``nvdiffrast.torch`` imports, else NUMBA.
    NUMBA: CPU z-buffer rasterizer (ours, permissive licence; the default everywhere without CUDA).
    NVDIFFRAST: NVIDIA's CUDA rasterizer (``pip install "texbridge[cuda]"``; NVIDIA Source Code
        License, non-commercial use only).
    """

    AUTO = "auto"
    NUMBA = "numba"
    NVDIFFRAST = "nvdiffrast"
