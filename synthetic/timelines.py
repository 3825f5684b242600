"""Time: the window, working hours in each site's timezone, bursts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.catalogue import _DAY_MS, _HOUR_MS, WEEKEND_WEIGHT
from synthetic.config import SyntheticConfig, _parse_start_ms
from synthetic.sampling import _categorical
from synthetic.schema import FloatArr, IntArr, Rng


# --- time -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Timeline:
    """The generation window plus day weights that make weekends quieter."""

    start_ms: int
    span_ms: int
    origin_ms: int  # UTC midnight on or before start: "local hour h of day d" is relative to it
    day_p: FloatArr  # probability of each (local) day for office-hours activity

    @classmethod
    def from_config(cls, config: SyntheticConfig) -> _Timeline:
        """Derive the window and the weekday/weekend weights from the config."""
        start = _parse_start_ms(config.start)
        origin = start - start % _DAY_MS
        weekday = (origin // _DAY_MS + 3 + np.arange(config.days)) % 7  # 1970-01-01 = Thursday
        weights = np.where(weekday >= 5, WEEKEND_WEIGHT, 1.0)
        return cls(start, config.days * _DAY_MS, origin, weights / weights.sum())


def _wrap(tl: _Timeline, t: IntArr) -> IntArr:
    """Fold times into [start, start + span) so timezones never push events out of the window."""
    wrapped: IntArr = tl.start_ms + np.mod(t - tl.start_ms, tl.span_ms)
    return wrapped


def _local_to_utc(tl: _Timeline, day: IntArr, local_h: FloatArr, tz: FloatArr) -> IntArr:
    """UTC ms for (local day index, local fractional hour, UTC offset)."""
    offset = np.round((local_h - tz) * _HOUR_MS).astype(np.int64)
    return _wrap(tl, tl.origin_ms + day * _DAY_MS + offset)


def _shift_times(
    rng: Rng, tl: _Timeline, center: FloatArr, spread: FloatArr, tz: FloatArr
) -> IntArr:
    """Office-hours timestamps: a truncated normal around each entity's usual local hour."""
    n = center.size
    day = _categorical(rng, tl.day_p, n)
    z = np.clip(rng.standard_normal(n), -2.5, 2.5)
    return _local_to_utc(tl, day, np.mod(center + spread * z, 24.0), tz)


def _uniform_times(rng: Rng, tl: _Timeline, n: int) -> IntArr:
    """Timestamps spread evenly over the window (servers, attackers that do not sleep)."""
    return tl.start_ms + rng.integers(0, tl.span_ms, size=n).astype(np.int64)


def _burst_sizes(rng: Rng, total: int, lo: int, hi: int) -> IntArr:
    """Split `total` events into bursts of lo..hi events (one smaller burst if total < lo)."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    n_bursts = max(1, round(total / ((lo + hi) / 2)))
    n_bursts = max(min(n_bursts, max(1, total // lo)), -(-total // hi))
    sizes = np.full(n_bursts, min(lo, total // n_bursts), dtype=np.int64)
    sizes += rng.multinomial(total - int(sizes.sum()), np.full(n_bursts, 1.0 / n_bursts))
    excess = int(np.clip(sizes - hi, 0, None).sum())
    sizes = np.minimum(sizes, hi)
    while excess > 0:  # at most n_bursts iterations: there is room because n_bursts*hi >= total
        i = int(np.argmax(hi - sizes))
        add = min(hi - int(sizes[i]), excess)
        sizes[i] += add
        excess -= add
    return sizes


def _burst_times(rng: Rng, tl: _Timeline, sizes: IntArr, gap_ms: tuple[float, float]) -> IntArr:
    """Timestamps for bursts: each starts at a random time, events follow at small gaps."""
    n = int(sizes.sum())
    burst = np.repeat(np.arange(sizes.size), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gaps = rng.uniform(gap_ms[0], gap_ms[1], size=n)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    offsets = np.round(elapsed - elapsed[first][burst]).astype(np.int64)
    margin = int(min(tl.span_ms // 2, 30 * 60_000))
    starts = tl.start_ms + rng.integers(0, tl.span_ms - margin, size=sizes.size)
    return _wrap(tl, starts[burst] + offsets)
