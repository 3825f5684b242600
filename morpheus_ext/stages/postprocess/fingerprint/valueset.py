"""Per-entity seen-value tables: a small open-addressing hash table per row, vectorised.

Each entity row has ``K`` slots (``values_per_entity``) shared by all tracked categorical
fields; ``field=value`` hashes to a 32-bit key whose home slot is ``key % K``, and it may sit in
any of the ``L`` (``probes``) slots after it. A lookup reads exactly ``L`` slots — one gather of
``[pairs, L]`` for a whole batch — and never a Python loop per event.

Inserting new keys is done in rounds: every pending key picks the first empty slot of its
window (or, if the window is full, the least-counted slot not written in this batch — the
capped top-k counter's eviction); when several keys pick the same slot the one seen most in
the batch (then the smaller key) wins and the others retry. The outcome depends only on the
table and the batch, never on the order of rows, which keeps replays exact.
"""

from __future__ import annotations

import numpy as np

from morpheus_ext.stages.postprocess.fingerprint.state import BaselineState

_COUNT_MAX = np.iinfo(np.uint16).max
_BLOCKED = np.iinfo(np.int64).max
_WORDS: dict[int, type[np.unsignedinteger]] = {
    8: np.uint8,
    16: np.uint16,
    32: np.uint32,
    64: np.uint64,
}  # table sizes whose rows pack into one machine word


def _windows(rows: np.ndarray, keys: np.ndarray, k: int, probes: int) -> np.ndarray:
    """Flat slot indices ``row * K + (key % K + j) % K`` for j < probes, shape [M, probes]."""
    if k & (k - 1) == 0:  # power of two: masks instead of divisions
        home = (keys & np.uint32(k - 1)).astype(np.int64)[:, None]
        return rows[:, None] * k + ((home + np.arange(probes)) & (k - 1))
    home = (keys.astype(np.int64) % k)[:, None]
    return rows[:, None] * k + (home + np.arange(probes)) % k


def lookup(
    state: BaselineState, rows: np.ndarray, keys: np.ndarray, probes: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each (row, key): (times seen, flat slot or -1)."""
    k = state.vkey.shape[1]
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if k in _WORDS:
        # A key only ever sits in its own window and at most once per row (insert looks it up
        # first), so matching the whole row finds the same slot: one contiguous row gather
        # instead of a computed window, the match packed into one word per row.
        eq = state.vkey[rows] == keys[:, None]
        bits = np.packbits(eq, axis=1, bitorder="little").view(_WORDS[k]).ravel()
        found = bits != 0
        at = rows * k + np.log2(np.maximum(bits, 1)).astype(np.int64)  # the set bit
        slot = np.where(found, at, -1)
        counts = np.where(found, state.vcount.reshape(-1)[at], 0).astype(np.int64)
        return counts, slot
    flat = _windows(rows, keys, k, probes)
    vkey = state.vkey.reshape(-1)
    eq = vkey[flat] == keys[:, None]
    if probes == 8:  # one row of 8 bools is one uint64: its lowest set byte is the match
        bits = np.ascontiguousarray(eq).view(np.uint64).ravel()
        low = bits & (~bits + np.uint64(1))
        j = (np.log2(np.maximum(low, np.uint64(1)).astype(np.float64)).astype(np.int64)) // 8
        if not np.little_endian:  # pragma: no cover - big-endian hosts
            j = 7 - j
    else:  # argmax along a short axis is slow in numpy; fine for other window sizes
        j = eq.argmax(axis=1)
    at = flat[np.arange(len(rows)), j]
    found = vkey[at] == keys  # argmax is 0 when nothing matched: check that slot
    slot = np.where(found, at, -1)
    counts = np.where(found, state.vcount.reshape(-1)[at].astype(np.int64), 0)
    return counts, slot


def insert(
    state: BaselineState,
    rows: np.ndarray,
    keys: np.ndarray,
    fields: np.ndarray,
    counts: np.ndarray,
    day: int,
    probes: int,
    absent: bool = False,
) -> int:
    """Add ``counts`` sightings of unique (row, key) pairs; returns how many keys were dropped.

    A key is dropped only when every slot of its window was written earlier in the same batch.
    ``absent``: the caller knows none of the pairs is in the table (skips looking them up).
    """
    if len(rows) == 0:
        return 0
    vkey, vcount = state.vkey.reshape(-1), state.vcount.reshape(-1)
    vday, vfield = state.vday.reshape(-1), state.vfield.reshape(-1)
    if absent:
        miss = np.arange(len(rows))
    else:
        _, slot = lookup(state, rows, keys, probes)
        hit = slot >= 0
        s = slot[hit]
        vcount[s] = np.minimum(vcount[s].astype(np.int64) + counts[hit], _COUNT_MAX)
        miss = np.flatnonzero(~hit)
    pending = miss[np.lexsort((keys[miss], -counts[miss]))]  # priority order
    written = np.zeros(0, dtype=np.int64)
    dropped = 0
    k = state.vkey.shape[1]
    while len(pending):
        flat = _windows(rows[pending], keys[pending], k, probes)
        cost = np.where(vkey[flat] == 0, -1, vcount[flat].astype(np.int64))
        cost = np.where(np.isin(flat, written), _BLOCKED, cost)
        j = cost.argmin(axis=1)  # first empty slot, else least counted, in probe order
        ok = cost[np.arange(len(pending)), j] < _BLOCKED
        dropped += int((~ok).sum())
        pending, target = pending[ok], flat[np.arange(len(flat)), j][ok]
        _, first = np.unique(target, return_index=True)
        winners, slots = pending[first], target[first]
        vkey[slots] = keys[winners]
        vcount[slots] = np.minimum(counts[winners], _COUNT_MAX)
        vday[slots] = day
        vfield[slots] = fields[winners]
        written = np.concatenate([written, slots])
        lost = np.ones(len(pending), dtype=bool)
        lost[first] = False
        pending = pending[lost]
    return dropped


def field_stats(
    state: BaselineState, rows: np.ndarray, n_cat: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (row, tracked field): (n events, d distinct values, entropy H of the predictive
    distribution ``P(v) = c_v / (n + d + 1)``, ``P(new) = (d + 1) / (n + d + 1)``), [U, T] each."""
    u = len(rows)
    vk, vc, vf = state.vkey[rows], state.vcount[rows].astype(np.float64), state.vfield[rows]
    used = (vk != 0) & (vc > 0)
    idx = (np.arange(u)[:, None] * n_cat + vf.astype(np.int64))[used]
    size = u * n_cat
    n = np.bincount(idx, weights=vc[used], minlength=size)
    d = np.bincount(idx, minlength=size).astype(np.float64)
    denom = n + d + 1.0
    p = vc[used] / denom[idx]
    p_new = (d + 1.0) / denom
    h = np.bincount(idx, weights=-p * np.log(p), minlength=size) - p_new * np.log(p_new)
    return n.reshape(u, n_cat), d.reshape(u, n_cat), h.reshape(u, n_cat)
