"""Raw feature id → provisional id 1, 2, ... of one field, assigned in the order ids are seen.

``prepare`` numbers ids provisionally while it streams (so the shards can be written before the
vocabulary is known) and maps provisional → final ids once the training counts are complete.
"""

from __future__ import annotations

import numpy as np


class IdMap:
    """Raw feature id → provisional id 1, 2, ... of one field (0 stays "absent").

    Ids are looked up in a dense table over the field's id span while it stays under
    ``TABLE_LIMIT`` entries, else in a sorted array. Each real Ali-CCP field spans at most ~1.6M
    ids of the global id space (205: ~4.9M–6.5M), so 4M entries (16 MB, 36 MB while growing)
    hold every real field while one stray id far from the rest cannot cost more. New ids of a
    block are numbered in ascending raw order.
    """

    TABLE_LIMIT = 1 << 22

    def __init__(self):
        self.size = 0
        self._raw = np.zeros(1024, np.int64)  # raw id of provisional id i + 1
        self.lo = 0
        self.table: np.ndarray | None = None
        self.keys: np.ndarray | None = None  # sorted mode: raw ids and their provisional ids
        self.vals: np.ndarray | None = None

    @property
    def raw(self) -> np.ndarray:
        return self._raw[: self.size]

    def _append(self, new_raw: np.ndarray) -> np.ndarray:
        ids = np.arange(self.size + 1, self.size + 1 + len(new_raw), dtype=np.int32)
        if self.size + len(new_raw) > len(self._raw):
            grown = np.zeros(max(2 * len(self._raw), self.size + len(new_raw)), np.int64)
            grown[: self.size] = self._raw[: self.size]
            self._raw = grown
        self._raw[self.size : self.size + len(new_raw)] = new_raw
        self.size += len(new_raw)
        return ids

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Provisional ids (int32, ≥ 1) of ``raw`` (int64, ≥ 0), assigning new ones."""
        if raw.size == 0:
            return np.zeros(raw.shape, np.int32)
        if self.keys is None and self._fit_table(int(raw.min()), int(raw.max())):
            idx = raw - self.lo
            prov = self.table[idx]
            new = prov == 0
            if new.any():
                u = np.unique(raw[new])
                self.table[u - self.lo] = self._append(u)
                prov = self.table[idx]
            return prov
        return self._encode_sorted(raw)

    def _fit_table(self, lo: int, hi: int) -> bool:
        """Makes the table cover [lo, hi]; False (and sorted mode) when the span is too wide."""
        if self.table is not None and lo >= self.lo and hi < self.lo + len(self.table):
            return True
        new_lo = lo if self.table is None else min(lo, self.lo)
        new_hi = hi if self.table is None else max(hi, self.lo + len(self.table) - 1)
        span = new_hi - new_lo + 1
        if span > self.TABLE_LIMIT:
            self._to_sorted()
            return False
        slack = min(span // 4, self.TABLE_LIMIT - span)  # room to grow without re-copying
        start = max(0, new_lo - slack // 2)
        table = np.zeros(span + slack, np.int32)
        if self.table is not None:
            table[self.lo - start : self.lo - start + len(self.table)] = self.table
        self.lo, self.table = start, table
        return True

    def _to_sorted(self) -> None:
        if self.table is not None:
            nz = np.flatnonzero(self.table)
            self.keys, self.vals = nz.astype(np.int64) + self.lo, self.table[nz]
            self.table = None
        else:
            self.keys, self.vals = np.zeros(0, np.int64), np.zeros(0, np.int32)

    def _encode_sorted(self, raw: np.ndarray) -> np.ndarray:
        u, inv = np.unique(raw, return_inverse=True)
        pos = np.searchsorted(self.keys, u)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == u[found]
        prov_u = np.empty(len(u), np.int32)
        prov_u[found] = self.vals[pos[found]]
        new = u[~found]
        if len(new):
            ids = self._append(new)
            prov_u[~found] = ids
            at = np.searchsorted(self.keys, new)
            self.keys = np.insert(self.keys, at, new)
            self.vals = np.insert(self.vals, at, ids)
        return prov_u[inv.reshape(raw.shape)]
