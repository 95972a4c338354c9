"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: tiny models run fastest single-threaded (and
    are robust to a busy machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def prior(tiny_sd_dir):
    """The tiny random SD folder loaded on the CPU (one per module)."""
    from engine.priors.loading import load_prior

    return load_prior(str(tiny_sd_dir), "cpu")
