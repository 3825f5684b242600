"""Small vectorised sampling helpers (weighted picks, usual sets, site-mixed profiles, IPs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.schema import FloatArr, IntArr, ObjArr, Rng


# --- small vectorised helpers ---------------------------------------------------------------
def _row_cum(weights: FloatArr) -> FloatArr:
    """Row-normalised cumulative weights, the form _pick() samples from."""
    total = weights.sum(axis=1, keepdims=True)
    cum: FloatArr = np.cumsum(weights, axis=1) / np.where(total > 0, total, 1.0)
    return cum


def _pick(rng: Rng, cum: FloatArr, rows: IntArr, n_valid: IntArr | None = None) -> IntArr:
    """One categorical draw per event from its entity's cumulative row (inverse-CDF, vectorised).

    Clipping to ``n_valid - 1`` guards against float round-off landing on zero-weight padding.
    """
    u = rng.random(rows.size)
    idx: IntArr = (cum[rows] < u[:, None]).sum(axis=1).astype(np.int64)
    limit = (n_valid[rows] if n_valid is not None else np.full(rows.size, cum.shape[1])) - 1
    return np.minimum(idx, limit)


def _categorical(rng: Rng, probs: FloatArr, size: int) -> IntArr:
    """rng.choice over indices, kept as a helper so every draw goes through the same rng."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(probs.size, size=size, p=probs / probs.sum()).astype(np.int64)


def _topk(rng: Rng, probs: FloatArr, k: int) -> IntArr:
    """k distinct categories per row, weighted by probs (Gumbel top-k, no Python loop)."""
    keys = np.log(probs + 1e-12) + rng.gumbel(size=probs.shape)
    top: IntArr = np.argsort(-keys, axis=1)[:, :k].astype(np.int64)
    return top


@dataclass(frozen=True)
class _UsualSet:
    """An entity's habitual categories (apps, ports, devices) with its own usage weights."""

    items: IntArr  # (entities, k_max) category indices
    cum: FloatArr  # (entities, k_max) cumulative usage weights
    n_valid: IntArr  # (entities,) how many leading slots are real


def _usual_set(rng: Rng, probs: FloatArr, k_min: int, k_max: int) -> _UsualSet:
    """Draw each entity's favourite categories from its site's mix; popular ones used more."""
    k_max = min(k_max, probs.shape[1])
    k_min = min(k_min, k_max)
    items = _topk(rng, probs, k_max)
    n_valid = np.asarray(rng.integers(k_min, k_max + 1, size=probs.shape[0]), dtype=np.int64)
    chosen_p = np.take_along_axis(probs, items, axis=1)
    weights = rng.gamma(1.5, size=items.shape) * np.sqrt(chosen_p + 1e-12)
    weights[np.arange(k_max)[None, :] >= n_valid[:, None]] = 0.0
    return _UsualSet(items, _row_cum(weights), n_valid)


def _mix(rng: Rng, base: FloatArr, n_sites: int, h: float) -> FloatArr:
    """Blend a shared distribution with peaked per-site ones: h=0 IID sites, h=1 non-IID."""
    specific = rng.dirichlet(np.full(base.size, 0.4), size=n_sites)
    mixed: FloatArr = (1.0 - h) * (base / base.sum())[None, :] + h * specific
    return mixed


def _profiles(rng: Rng, site: IntArr, n_sites: int, h: float) -> IntArr:
    """Which site's country/timezone an entity follows: its own with prob h, else any site.

    At h=0 every site is the same mixture of countries and timezones (IID); at h=1 each site
    is pure. Entities keep their own site for everything else.
    """
    other = rng.integers(n_sites, size=site.size)
    return np.where(rng.random(site.size) < h, site, other).astype(np.int64)


def _ips(prefix_rows: list[tuple[int, int, int, int]]) -> ObjArr:
    """Dotted-quad strings; callers build octets vectorised, only the formatting loops."""
    return np.array([f"{a}.{b}.{c}.{d}" for a, b, c, d in prefix_rows], dtype=object)


def _public_ips(rng: Rng, n: int, octets: tuple[int, ...]) -> ObjArr:
    """Random public IPv4 addresses whose first octet comes from the given pool."""
    first = rng.choice(np.array(octets), size=n)
    rest = rng.integers(1, 255, size=(n, 3))
    return _ips(
        [(int(a), int(b), int(c), int(d)) for a, (b, c, d) in zip(first, rest, strict=True)]
    )


def _cgnat_ips(rng: Rng, n: int) -> ObjArr:
    """Carrier-grade-NAT addresses (100.64.0.0/10), the shape of every mobile login's IP."""
    b = rng.integers(64, 128, size=n)
    cd = rng.integers(1, 255, size=(n, 2))
    return _ips([(100, int(x), int(y), int(z)) for x, (y, z) in zip(b, cd, strict=True)])
