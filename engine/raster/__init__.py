"""Rasterizer: one small API, numba (CPU, default) and nvdiffrast (CUDA) backends."""
