"""Assembly: every block of events in one time-ordered DataFrame (:func:`generate`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthetic.attacks_campaign import _campaign
from synthetic.attacks_leakage import _leakage
from synthetic.attacks_netflow import _GENERATORS
from synthetic.config import SyntheticConfig, event_type_counts, kind_counts
from synthetic.normal_traffic import _Block, _Ctx, _normal_auth, _normal_netflow
from synthetic.population import _build_population
from synthetic.schema import (
    ALL_KINDS,
    AUTH_KINDS,
    COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LABEL_COLUMNS,
    NETFLOW_KINDS,
    IntArr,
    ObjArr,
)
from synthetic.timelines import _Timeline


# --- assembly ---------------------------------------------------------------------------------
def _iso_ms(t_ms: IntArr) -> ObjArr:
    """ISO-8601 UTC strings with milliseconds, e.g. 2026-11-01T08:15:02.123Z."""
    text = np.datetime_as_string(t_ms.astype("datetime64[ms]"), unit="ms")
    return np.strings.add(text, "Z").astype(object)


def _column(blocks: list[_Block], name: str, order: IntArr) -> Any:
    """One output column: values from blocks that have it, null elsewhere, in timestamp order."""
    n = order.size
    pos = np.cumsum([0] + [len(b) for b in blocks])
    if name in INT_COLUMNS:
        values, mask = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    elif name in FLOAT_COLUMNS:
        values, mask = np.full(n, np.nan), np.zeros(0, dtype=bool)
    else:
        values, mask = np.full(n, None, dtype=object), np.zeros(0, dtype=bool)
    for b, lo, hi in zip(blocks, pos[:-1], pos[1:], strict=True):
        if name in b.cols:
            values[lo:hi] = b.cols[name]
            if mask.size:
                mask[lo:hi] = False
    if name in INT_COLUMNS:
        return pd.arrays.IntegerArray(values[order], mask[order])
    return values[order]


def _assemble(blocks: list[_Block]) -> pd.DataFrame:
    """Concatenate blocks, sort by time (stable), number events in that order."""
    t = np.concatenate([b.t for b in blocks]).astype(np.int64)
    order = np.argsort(t, kind="stable")
    sizes = [len(b) for b in blocks]
    kind = np.repeat(np.array([b.kind for b in blocks], dtype=object), sizes)[order]
    data: dict[str, Any] = {
        "event_id": np.array([f"evt-{i:09d}" for i in range(t.size)], dtype=object),
        "timestamp": _iso_ms(t[order]),
        "event_type": np.repeat(np.array([b.event_type for b in blocks], dtype=object), sizes)[
            order
        ],
    }
    for name in COLUMNS:
        if name not in data and name not in LABEL_COLUMNS:
            data[name] = _column(blocks, name, order)
    data["label"] = (kind != "none").astype(np.int64)
    data["anomaly_kind"] = kind
    extra = list(dict.fromkeys(c for b in blocks for c in b.cols if c not in COLUMNS))
    for name in extra:  # columns only some kinds have (leakage, campaign: ground truth)
        data[name] = _column(blocks, name, order)
    return pd.DataFrame(data, columns=[*COLUMNS, *extra])


def generate(config: SyntheticConfig) -> pd.DataFrame:
    """Generate auth + netflow events with labelled anomalies, sorted by timestamp.

    Same config -> identical DataFrame. The organisation (sites, users, hosts, their habits)
    comes from ``default_rng(population_seed)`` (default: ``seed``), the events from
    ``default_rng(seed)`` consumed in a fixed order (normal auth, normal netflow, anomaly kinds),
    so two configs sharing ``population_seed`` describe the same organisation on other days
    (train on one week, stream the next).
    """
    pop_seed = config.seed if config.population_seed is None else config.population_seed
    pop = _build_population(config, np.random.default_rng(pop_seed))
    rng = np.random.default_rng(config.seed)
    tl = _Timeline.from_config(config)
    counts = kind_counts(config)
    n_auth, n_net = event_type_counts(config)
    n_auth -= sum(v for k, v in counts.items() if k in AUTH_KINDS)
    n_net -= sum(v for k, v in counts.items() if k in NETFLOW_KINDS)
    ctx = _Ctx(
        config,
        rng,
        tl,
        pop,
        _normal_auth(rng, tl, pop, n_auth),
        _normal_netflow(rng, tl, pop, n_net),
    )
    blocks = [ctx.auth, ctx.net]
    generators = {**_GENERATORS, "leakage": _leakage, "campaign": _campaign}
    for kind in ALL_KINDS:
        if counts.get(kind, 0) > 0:
            blocks.append(generators[kind](ctx, counts[kind]))
    return _assemble(blocks)
