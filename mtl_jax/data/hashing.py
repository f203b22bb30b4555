"""Seeded integer hashing: SplitMix64 and a hash of integers to [0, 1).

``prepare`` assigns rows to the validation split by hashing a row's line number (or user id), so
the split depends on the data and the seed only, never on block sizes or worker counts; the raw
Ali-CCP writer derives common-feature keys and item attributes with the same mixer.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised (a bijection on uint64; wraps on overflow)."""
    x = np.asarray(x).astype(np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def unit_hash(values: np.ndarray, seed: int) -> np.ndarray:
    """A seeded hash of integers to [0, 1): the same value always lands in the same place."""
    s = mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    h = mix64(mix64(np.asarray(values).astype(np.uint64)) ^ s)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
