"""Entity hash -> state row, for a million entities at 12 bytes each, looked up in batches.

A Python dict of a million ints costs ~100 bytes per entry; two sorted numpy arrays cost 12
(uint64 key + int32 row) and answer a whole batch with one ``searchsorted``. New entities go
into a small sorted *delta* (cheap inserts) that is merged into the main arrays when it grows
past ``merge_at`` — a two-level log-structured merge, so an insert costs O(delta), not O(all).
"""

from __future__ import annotations

import numpy as np


class EntityIndex:
    """Sorted (hash, row) pairs in two levels; hashes are unique, 0 is never a key."""

    def __init__(self, merge_at: int = 65_536) -> None:
        self.merge_at = merge_at
        self._keys = np.zeros(0, dtype=np.uint64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._dkeys = np.zeros(0, dtype=np.uint64)
        self._drows = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._keys) + len(self._dkeys)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._keys, self._rows, self._dkeys, self._drows))

    @staticmethod
    def _find(keys: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[pos] == query, rows[pos].astype(np.int64), -1)

    def lookup(self, query: np.ndarray) -> np.ndarray:
        """Row of each hash, -1 where unknown."""
        q = np.asarray(query, dtype=np.uint64)
        found = self._find(self._keys, self._rows, q)
        missing = found < 0
        if missing.any() and len(self._dkeys):
            found[missing] = self._find(self._dkeys, self._drows, q[missing])
        return found

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Insert new (absent, unique) hashes."""
        if len(keys) == 0:
            return
        k = np.concatenate([self._dkeys, keys.astype(np.uint64)])
        r = np.concatenate([self._drows, rows.astype(np.int32)])
        order = np.argsort(k, kind="stable")
        self._dkeys, self._drows = k[order], r[order]
        if len(self._dkeys) >= max(self.merge_at, len(self._keys) // 8):
            self._merge()

    def _merge(self) -> None:
        k = np.concatenate([self._keys, self._dkeys])
        r = np.concatenate([self._rows, self._drows])
        order = np.argsort(k, kind="stable")
        self._keys, self._rows = k[order], r[order]
        self._dkeys = np.zeros(0, dtype=np.uint64)
        self._drows = np.zeros(0, dtype=np.int32)

    def remove(self, keys: np.ndarray) -> None:
        """Drop hashes (eviction); O(entities), so callers evict in large, rare chunks."""
        if len(keys) == 0:
            return
        self._merge()
        keep = ~np.isin(self._keys, keys.astype(np.uint64))
        self._keys, self._rows = self._keys[keep], self._rows[keep]

    def rebuild(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Replace everything (restore from a checkpoint)."""
        order = np.argsort(keys.astype(np.uint64), kind="stable")
        self._keys = keys.astype(np.uint64)[order]
        self._rows = rows.astype(np.int32)[order]
        self._dkeys = np.zeros(0, dtype=np.uint64)
        self._drows = np.zeros(0, dtype=np.int32)
