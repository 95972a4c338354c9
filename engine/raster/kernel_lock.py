"""One process-wide lock around parallel numba kernel launches.

numba's fallback "workqueue" threading layer (used where OpenMP/TBB are missing) aborts when
parallel kernels are launched concurrently from several threads; serializing the launches
keeps the engine safe to call from a server's threads. ``serial_kernels`` runs them on one
thread for a block. Kept free of numba imports at module level.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

NUMBA_LOCK = threading.RLock()


@contextmanager
def serial_kernels():
    """Run numba's parallel kernels on the calling thread only, inside the block.

    For the optimization loop: its per-step kernels (a 64 px close-up rasterization, the
    lookup gather) are too small to share out, and numba's OpenMP workers spin-wait after
    each parallel region, taking the CPU the denoiser needs. Measured on this 2-core CPU with
    the embedded model (quad, 512 px texture, close-ups): 200 steps of two jobs at once
    36.0 s each with parallel kernels, 8.4 s serial; one job with 2 torch threads, 300 steps
    13.4 s parallel, 11.1 s serial.
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
