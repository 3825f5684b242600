"""The per-entity baseline arrays: one row per entity, fixed size per row.

Struct-of-arrays so a batch reads and writes rows with fancy indexing (no per-event Python).
Per row (defaults: 16 layout fields, 10 tracked categoricals, 4 numeric fields, 32 values):

=================  ==========================  ==============================================
array              dtype / shape               what
=================  ==========================  ==============================================
``entity``         uint64                      entity hash (0 = free row)
``n``              uint32                      events learned
``first``/``last`` uint32                      first/last learned event time (epoch s)
``g_mean/g_var``   float32                     ln(score / threshold) of its events
``z_mean/z_var``   float32 [F]                 each field's global z over its events
``vkey``           uint32 [K]                  seen-value table: key of ``field=value``
``vcount``         uint16 [K]                  times seen
``vday``           uint16 [K]                  day first seen (days since 1970-01-01)
``vfield``         uint8 [K]                   which tracked field
``hist``           uint16 [Fn, B]              numeric histograms over sign·log1p(x)
``hour``           uint16 [24]                 hour-of-day profile (UTC)
=================  ==========================  ==============================================

Counters are uint16: when one reaches :data:`AGE_AT` every counter of that entity is halved
(a value seen once is then forgotten), which both bounds the dtype and gives old habits less
weight than new ones for very busy entities.
"""

from __future__ import annotations

import numpy as np

from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig

AGE_AT = 60_000
HOURS = 24
_INITIAL = 1024


class BaselineState:
    """Rows of per-entity statistics; grows by doubling up to ``max_entities`` rows."""

    ROW_ARRAYS = (
        "entity",
        "n",
        "first",
        "last",
        "g_mean",
        "g_var",
        "z_mean",
        "z_var",
        "vkey",
        "vcount",
        "vday",
        "vfield",
        "hist",
        "hour",
    )

    def __init__(self, config: FingerprintConfig, n_fields: int, n_cat: int, n_num: int) -> None:
        self.config = config
        self.n_fields = n_fields
        self.n_cat = n_cat
        self.n_num = n_num
        self.capacity = 0
        self.high = 0  # rows [0, high) have been used at least once
        self.free: list[int] = []
        self._alloc(min(_INITIAL, config.max_entities))

    # ------------------------------------------------------------------ layout
    def _shapes(self) -> dict[str, tuple[tuple[int, ...], type]]:
        c = self.config
        nz = self.n_fields if c.field_z_stats else 0
        hours = HOURS if c.hour_profile else 0
        k = c.values_per_entity
        return {
            "entity": ((), np.uint64),
            "n": ((), np.uint32),
            "first": ((), np.uint32),
            "last": ((), np.uint32),
            "g_mean": ((), np.float32),
            "g_var": ((), np.float32),
            "z_mean": ((nz,), np.float32),
            "z_var": ((nz,), np.float32),
            "vkey": ((k,), np.uint32),
            "vcount": ((k,), np.uint16),
            "vday": ((k,), np.uint16),
            "vfield": ((k,), np.uint8),
            "hist": ((self.n_num, c.numeric_bins), np.uint16),
            "hour": ((hours,), np.uint16),
        }

    def _alloc(self, capacity: int) -> None:
        old = {name: getattr(self, name) for name in self.ROW_ARRAYS} if self.capacity else {}
        for name, (shape, dtype) in self._shapes().items():
            arr: np.ndarray = np.zeros((capacity, *shape), dtype=dtype)
            if name in old:
                arr[: self.capacity] = old[name]
            setattr(self, name, arr)
        self.capacity = capacity

    @property
    def bytes_per_entity(self) -> int:
        """Bytes one row costs in the arrays (the index adds 12)."""
        total = 0
        for shape, dtype in self._shapes().values():
            total += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return total

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.ROW_ARRAYS)

    # ------------------------------------------------------------------ rows
    def allocate(self, count: int) -> np.ndarray:
        """``count`` fresh zeroed rows (reusing evicted ones first), growing when needed."""
        reuse = [self.free.pop() for _ in range(min(count, len(self.free)))]
        fresh = count - len(reuse)
        if self.high + fresh > self.capacity:
            need = self.high + fresh
            cap = self.capacity
            while cap < need:
                cap *= 2
            self._alloc(min(max(cap, need), max(self.config.max_entities, need)))
        rows = np.array(reuse + list(range(self.high, self.high + fresh)), dtype=np.int64)
        self.high += fresh
        return rows

    def release(self, rows: np.ndarray) -> None:
        """Zero rows and make them reusable (eviction)."""
        for name in self.ROW_ARRAYS:
            getattr(self, name)[rows] = 0
        self.free.extend(sorted(rows.tolist(), reverse=True))

    def used_rows(self) -> np.ndarray:
        return np.flatnonzero(self.entity[: self.high] != 0)

    # ------------------------------------------------------------------ checkpoint support
    def export(self) -> dict[str, np.ndarray]:
        """The used rows only, sorted by entity hash: a canonical form, independent of which
        row an entity happens to occupy (so two runs compare with ``array_equal``)."""
        rows = self.used_rows()
        rows = rows[np.argsort(self.entity[rows], kind="stable")]
        return {name: getattr(self, name)[rows] for name in self.ROW_ARRAYS}

    def load(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Replace everything with exported rows; returns their new row numbers."""
        count = len(arrays["entity"])
        self.capacity, self.high, self.free = 0, 0, []
        self._alloc(max(min(_INITIAL, self.config.max_entities), count))
        for name in self.ROW_ARRAYS:
            getattr(self, name)[:count] = arrays[name]
        self.high = count
        return np.arange(count, dtype=np.int64)

    # The arrays are created in _alloc; declared here for type checkers.
    entity: np.ndarray
    n: np.ndarray
    first: np.ndarray
    last: np.ndarray
    g_mean: np.ndarray
    g_var: np.ndarray
    z_mean: np.ndarray
    z_var: np.ndarray
    vkey: np.ndarray
    vcount: np.ndarray
    vday: np.ndarray
    vfield: np.ndarray
    hist: np.ndarray
    hour: np.ndarray
