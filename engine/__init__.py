"""texbridge engine: a pure library (no HTTP, no bpy).

mesh and UVs -> cameras -> rasterizer (G-buffers) -> differentiable texture
rendering -> diffusion priors -> guidance -> optimization loop -> export.
"""

__version__ = "0.1.0"
