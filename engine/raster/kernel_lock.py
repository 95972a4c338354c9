"""One process-wide lock around parallel numba kernel launches.

numba's fallback "workqueue" threading layer (used where OpenMP/TBB are missing) aborts when
parallel kernels are launched concurrently from several threads; serializing the launches
keeps the engine safe to call from a server's threads. Kept free of numba imports.
"""

from __future__ import annotations

import threading

NUMBA_LOCK = threading.RLock()
