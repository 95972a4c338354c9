"""The closed set of score-distillation methods (the only place a name picks one)."""

from __future__ import annotations

from enum import Enum


class GuidanceMethod(str, Enum):
    """Which latent gradient the optimization loop uses.

    - ``SDS``: score distillation sampling (Poole et al. 2022).
    - ``NFSD``: noise-free score distillation (Katzir et al. 2024).
    - ``BRIDGE``: calibrated score distillation, SDS warm-up then the
      source->target bridge (McAllister et al., NeurIPS 2024). The default.
    """

    SDS = "sds"
    NFSD = "nfsd"
    BRIDGE = "bridge"
