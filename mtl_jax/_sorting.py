"""Fast exact sorting for the metrics: numpy's stable argsort order, via a SIMD value sort.

``np.sort`` on values is SIMD-accelerated where ``np.argsort`` is not; packing an order key and
the row index into one uint64 lets a value sort return the stable argsort order, several times
faster on 10M rows. Private to ``mtl_jax.metrics``: every result equals numpy's own.
"""

from __future__ import annotations

import numpy as np

_LOW32 = np.uint64(0xFFFFFFFF)


def _uint32_key(x: np.ndarray) -> np.ndarray | None:
    """Order-preserving map of ``x`` into ``[0, 2**32)`` (as uint64), or None if impossible.

    Works for integers spanning fewer than 2**32 values (e.g. user ids) and for floats that are
    exactly representable in float32 (e.g. model outputs): equal inputs map to equal keys and
    the order is kept, so sorting the keys sorts ``x``.
    """
    if x.dtype.kind == "b":
        return x.astype(np.uint64)
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if hi - lo >= 2**32:
            return None
        if x.dtype.kind == "u":
            return x.astype(np.uint64) - np.uint64(lo)
        # The difference fits in [0, 2**32), so int64 arithmetic cannot overflow.
        return (x.astype(np.int64) - lo).view(np.uint64)
    if x.dtype.kind == "f":
        f = x.astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0: they compare equal
        with np.errstate(over="ignore"):  # too large for float32: caught by the check below
            f32 = f.astype(np.float32)
        if not np.array_equal(f32, f):
            return None
        # IEEE-754 bit trick: for negatives flip the magnitude bits, so that the signed integer
        # order of the bit patterns equals the float order; then shift into [0, 2**32).
        k = f32.view(np.int32).astype(np.int64)
        k ^= (k >> 31) & 0x7FFFFFFF
        k += 2**31
        return k.view(np.uint64)
    return None


def stable_argsort(x: np.ndarray) -> np.ndarray:
    """Same result as ``np.argsort(x, kind="stable")``, usually several times faster.

    When ``x`` maps to a 32-bit order key, (key << 32 | row index) is sorted by value with
    ``np.sort``, which is SIMD-accelerated (unlike argsort) and, since row indices are unique
    and in the low bits, yields exactly the stable order. Otherwise falls back to argsort.
    """
    n = x.shape[0]
    key = _uint32_key(x) if 0 < n < 2**32 else None
    if key is None:
        return np.argsort(x, kind="stable")
    key <<= np.uint64(32)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & _LOW32).astype(np.intp)


def run_starts(*sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal consecutive key tuples starts (input already sorted)."""
    n = sorted_keys[0].shape[0]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for k in sorted_keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)
