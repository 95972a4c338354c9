"""Rasterizer: one small API, numba (CPU, default) and nvdiffrast (CUDA) backends.

    ctx = RasterContext(RasterBackend.AUTO, device="cpu")
    gbuf = rasterize(ctx, mesh, cameras, 512)      # GBuffer, B = len(cameras)
"""

from engine.raster.backend import RasterBackend
from engine.raster.context import RasterContext, rasterize
from engine.raster.gbuffer import GBuffer

__all__ = ["GBuffer", "RasterBackend", "RasterContext", "rasterize"]
