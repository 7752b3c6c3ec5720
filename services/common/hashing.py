"""Fast 64-bit hashing for numba loops (note-sequence n-grams in the pruner and statistics)."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def mix64(x):
    """splitmix64's finaliser: spreads nearby uint64 keys over the whole range."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
