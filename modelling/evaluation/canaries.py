"""Canary anomalies: a site's own normal rows, each changed in one documented way.

A site rarely has labels, yet the promotion gate must still notice a candidate that has lost
detection (one calibrated to a normal false-positive rate tells nothing about recall). Canaries
give it a recall without labels: take normal rows the gate holds out, perturb each one the way
real attacks differ from habit, and ask both the candidate and the served version how many they
flag at their own thresholds. The perturbations only use the feature spec, so they work on any
dataset a model engineer brings:

* ``rare_category``: one categorical field that the row uses gets a value never seen in the
  reference rows, spelled so that it hashes into that field's *least used* bucket (an unseen
  app, country, device, port...);
* ``volume_spike``: one numeric field that the row uses is multiplied by ``spike_factor``
  (``log1p`` fields) or moved ``10`` reference standard deviations up (``identity`` fields): an
  exfiltration-sized transfer, a flood of packets;
* ``off_hours``: the event time moves to the reference's least used hour of the same day (only
  with an ``hour`` time feature).

Kinds rotate over the rows (seeded), so each kind gets about a third of the canaries; a kind the
spec cannot express (no numeric field, no timestamp) is skipped, and a row that cannot carry its
kind (an auth event has no byte counts) gets the next one it can. The column ``canary_kind`` says
which perturbation a row carries, ``canary_of`` which row of ``normal`` it was made from.
Canaries are never written anywhere: they exist for one gate.

>>> import pandas as pd
>>> from morpheus_ext.feature_spec import load_spec
>>> from synthetic import SyntheticConfig, generate
>>> normal = generate(SyntheticConfig(n_events=600, seed=3, anomaly_rate=0.0))
>>> canaries = make_canaries(normal, load_spec("security_events"), n=90, seed=0)
>>> len(canaries), sorted(canaries["canary_kind"].value_counts().to_dict().items())
(90, [('off_hours', 30), ('rare_category', 48), ('volume_spike', 12)])

(auth rows have no byte counts: their volume spikes became rare categories.)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from morpheus_ext.feature_spec import FeatureSpec, FieldSlot
from morpheus_ext.stages.preprocess.featurizer import bucket_of, canonical_str

CANARY_KINDS = ("rare_category", "volume_spike", "off_hours")
KIND_COLUMN = "canary_kind"
BASE_COLUMN = "canary_of"
"""Position in ``normal`` of the row a canary was made from (scored too: see the gate)."""


def _rare_value(field: FieldSlot, reference: pd.Series) -> str:
    """A never-seen spelling whose bucket is the least used one of ``field`` in ``reference``."""
    seen = {canonical_str(v) for v in reference.dropna().unique()}
    counts = Counter(
        bucket_of(field.name, v, field.width) for v in reference.dropna().map(canonical_str)
    )
    target = min(range(field.width), key=lambda b: (counts.get(b, 0), b))
    for k in range(100_000):
        value = f"canary-{k}"
        if value not in seen and bucket_of(field.name, value, field.width) == target:
            return value
    return "canary-unseen"  # pragma: no cover - a bucket no short spelling reaches


def _kinds(spec: FeatureSpec) -> list[str]:
    fields = spec.layout.fields
    kinds = []
    if any(f.kind == "categorical" for f in fields):
        kinds.append("rare_category")
    if any(f.kind == "numeric" for f in fields):
        kinds.append("volume_spike")
    if spec.timestamp and "hour" in spec.time_features:
        kinds.append("off_hours")
    return kinds


def make_canaries(
    normal: pd.DataFrame,
    spec: FeatureSpec,
    n: int = 900,
    seed: int = 0,
    reference: pd.DataFrame | None = None,
    spike_factor: float = 1000.0,
) -> pd.DataFrame:
    """``n`` perturbed copies of rows of ``normal`` (rows drawn with replacement when fewer).

    ``reference`` (default: ``normal``) defines what is usual: unseen values, least used
    buckets and hours, standard deviations.
    """
    kinds = _kinds(spec)
    if normal.empty or not kinds or n <= 0:
        empty = pd.Series(dtype=object)
        return normal.iloc[:0].assign(**{KIND_COLUMN: empty, BASE_COLUMN: empty})
    reference = normal if reference is None else reference
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(normal), size=n, replace=n > len(normal))
    out = normal.iloc[rows].reset_index(drop=True).copy()
    order = rng.permutation(n)
    kind_of = np.array([kinds[i % len(kinds)] for i in range(n)], dtype=object)[order]
    categorical = [f for f in spec.layout.fields if f.kind == "categorical" and f.name in out]
    numeric = [f for f in spec.layout.fields if f.kind == "numeric" and f.name in out]
    rare = {f.name: _rare_value(f, reference[f.name]) for f in categorical if f.name in reference}
    for f in [*numeric, *categorical]:  # object columns: an Int64 port can take "canary-3",
        col = out[f.name]  # a spiked count neither overflows nor rounds; <NA> stays missing
        out[f.name] = col.astype(object).where(col.notna(), None)
    times = pd.Series([pd.NaT] * n)
    quiet_hour = 0
    if "off_hours" in kinds:
        times = pd.to_datetime(out[spec.timestamp], utc=True, format="ISO8601", errors="coerce")
        ref_hours = pd.to_datetime(
            reference[spec.timestamp], utc=True, format="ISO8601", errors="coerce"
        ).dt.hour
        counts = ref_hours.value_counts()
        quiet_hour = int(min(range(24), key=lambda h: (counts.get(h, 0), h)))
    for i, wanted in enumerate(kind_of):
        row = out.iloc[i]
        cats = [f for f in categorical if f.name in rare and pd.notna(row[f.name])]
        nums = [f for f in numeric if pd.notna(row[f.name])]
        timed = "off_hours" in kinds and pd.notna(times.iloc[i])
        usable = {"rare_category": bool(cats), "volume_spike": bool(nums), "off_hours": timed}
        # the wanted kind if this row can carry it (an auth row has no volume), else the next
        kind = next((k for k in (wanted, *CANARY_KINDS) if k in kinds and usable[k]), None)
        if kind is None:
            continue
        kind_of[i] = kind
        if kind == "rare_category":
            f = cats[rng.integers(len(cats))]
            out.at[i, f.name] = rare[f.name]
        elif kind == "volume_spike":
            f = nums[rng.integers(len(nums))]
            value = float(row[f.name])
            if f.transform == "identity":
                std = float(pd.to_numeric(reference[f.name], errors="coerce").std() or 1.0)
                out.at[i, f.name] = value + 10.0 * std
            else:
                out.at[i, f.name] = (abs(value) + 1.0) * spike_factor
        else:
            moved = times.iloc[i].replace(hour=quiet_hour)
            out.at[i, str(spec.timestamp)] = moved.strftime("%Y-%m-%dT%H:%M:%S.") + (
                f"{moved.microsecond // 1000:03d}Z"
            )
    out[KIND_COLUMN] = kind_of
    out[BASE_COLUMN] = rows
    return out
