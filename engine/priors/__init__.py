"""Diffusion priors (Stable Diffusion family through diffusers; the embedded model)."""
