"""What the baselines need from one scored batch, extracted once and vectorised.

Scoring and updating read the same arrays, so they are computed once per batch: 64-bit entity
hashes, 32-bit value keys of the tracked categorical fields, log-scale histogram bins of the
tracked numeric fields (read from the EVENT_TENSOR, which already holds ``sign·log1p``), the
hour of day (from the tensor's sin/cos slots, no timestamp parsing) and the model's outputs.

Hashing happens on the *unique* values of each column (``pandas.factorize``, then one vectorised
SipHash of a few hundred strings), the per-row work is an array gather — the featurizer's trick.
Entities and values are stored as hashes only: the baseline state holds no user names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from morpheus_ext.backend import to_host_array
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, canonical_str

_EPOCH_MS_CUTOFF = 1e11  # same rule as the featurizer: larger numbers are milliseconds
_NAMES_CAP = 65_536  # distinct (field, value) spellings remembered for reason texts


def hash_strings(values: list[str]) -> np.ndarray:
    """Stable 64-bit hashes of strings (pandas' SipHash with its fixed key), never 0."""
    if not values:
        return np.zeros(0, dtype=np.uint64)
    h = pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)
    return np.where(h == 0, np.uint64(1), h).astype(np.uint64)


def _hash_values(uniques: Any) -> tuple[np.ndarray, bool]:
    """(hash_strings of ``str(u)`` for each unique, whether all uniques were strings), without
    the per-value ``str`` when they are (the usual case: user names, addresses). Distinct
    strings hash apart; other values may share a spelling (123 and "123")."""
    arr = np.asarray(uniques, dtype=object)
    if len(arr) and pd.api.types.infer_dtype(arr, skipna=False) == "string":
        h = pd.util.hash_array(arr, categorize=False)
        return np.where(h == 0, np.uint64(1), h).astype(np.uint64), True
    return hash_strings([str(u) for u in arr]), len(arr) == 0


def entity_hash(entity: str) -> int:
    """The key an entity's baseline is stored under (e.g. to look one up by name)."""
    return int(hash_strings([entity])[0])


def value_key(field: str, value: Any) -> int:
    """The 32-bit key of ``field=value`` in the seen-value tables (0 means empty)."""
    return int(_fold(hash_strings([f"{field}={canonical_str(value)}"]))[0])


def _fold(h: np.ndarray) -> np.ndarray:
    """64 -> 32 bits (xor of halves), 0 reserved for empty slots."""
    k = ((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)
    return np.where(k == 0, np.uint32(1), k)


@dataclass(frozen=True)
class FieldPlan:
    """Which layout fields the baselines track, resolved once per (spec, config)."""

    categorical: list[str]
    cat_index: np.ndarray  # layout field index of each tracked categorical
    numeric: list[str]
    num_index: np.ndarray
    num_offset: np.ndarray  # tensor slot of each numeric field
    num_identity: np.ndarray  # bool: slot holds x (not sign·log1p), apply the log here
    hour_offset: int | None  # tensor slot of sin(hour); cos is the next one
    hour_index: int | None  # layout field index of "hour"
    n_fields: int  # F, width of FIELD_Z

    @classmethod
    def resolve(cls, spec: FeatureSpec, config: FingerprintConfig) -> FieldPlan:
        """Check configured names against the layout (unknown names are a config error)."""
        fields = spec.layout.fields
        by_name = {f.name: (i, f) for i, f in enumerate(fields)}
        cats = (
            [f.name for f in fields if f.kind == "categorical"]
            if config.categorical is None
            else list(config.categorical)
        )
        nums = (
            [f.name for f in fields if f.kind == "numeric"]
            if config.numeric is None
            else list(config.numeric)
        )
        for name, kind in [*((c, "categorical") for c in cats), *((n, "numeric") for n in nums)]:
            if name not in by_name or by_name[name][1].kind != kind:
                options = sorted(f.name for f in fields if f.kind == kind)
                raise ValueError(
                    f"fingerprint: {name!r} is not a {kind} field of spec {spec.name} "
                    f"(choose from {options})"
                )
        hour = by_name.get("hour")
        use_hour = config.hour_profile and hour is not None and hour[1].kind == "time"
        return cls(
            categorical=cats,
            cat_index=np.array([by_name[c][0] for c in cats], dtype=np.int64),
            numeric=nums,
            num_index=np.array([by_name[n][0] for n in nums], dtype=np.int64),
            num_offset=np.array([by_name[n][1].offset for n in nums], dtype=np.int64),
            num_identity=np.array(
                [by_name[n][1].transform == "identity" for n in nums], dtype=bool
            ),
            hour_offset=hour[1].offset if use_hour and hour else None,
            hour_index=hour[0] if use_hour and hour else None,
            n_fields=len(fields),
        )


@dataclass
class BatchKeys:
    """Per-row arrays of one batch (N rows, T tracked categorical fields, V their values)."""

    entity_code: np.ndarray  # int64 [N], -1 = no entity
    entities: np.ndarray  # uint64 [E], the distinct entity hashes of the batch
    value_id: np.ndarray  # int64 [T, N]: the row's value of field t, an index into value_key
    value_key: np.ndarray  # uint32 [V]: key of ``field=value``, the fields' values in field order
    value_offset: np.ndarray  # int64 [T + 1]: field t's values are value_key[off[t]:off[t+1]]
    num_bins: np.ndarray  # int16 [N, Fn], -1 = missing
    num_log: np.ndarray  # float32 [N, Fn] sign·log1p value (NaN missing)
    hour: np.ndarray  # int8 [N], -1 = missing
    g: np.ndarray  # float32 [N], ln(anomaly_score / threshold)
    field_z: np.ndarray  # float32 [N, F]
    flagged: np.ndarray  # bool [N], the global model's is_anomaly
    clock: int  # the batch's latest event time, epoch seconds (0 if unknown)

    def __len__(self) -> int:
        return len(self.entity_code)

    @property
    def present(self) -> np.ndarray:
        """bool [T, N]: row n has a value of tracked field t."""
        return self.value_id >= 0

    def values_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, tracked field, key) of every value present in ``rows`` (field-major)."""
        ids = self.value_id[:, rows]
        tt, at = np.nonzero(ids >= 0)
        return rows[at], tt, self.value_key[ids[tt, at]]


class ValueNames:
    """Key <-> readable value: the spelling of each key for reason texts ("usual: US"), and a
    per-field cache value -> key so a batch hashes only values it has not met before. Both
    bounded (``cap`` entries); site-local like the rest of the baselines."""

    def __init__(self, cap: int = _NAMES_CAP) -> None:
        self.cap = cap
        self.names: dict[int, str] = {}
        self._keys: dict[str, dict[Any, int]] = {}

    def add(self, keys: np.ndarray, spelled: list[str]) -> None:
        if len(self.names) >= self.cap:
            return
        for k, s in zip(keys.tolist(), spelled, strict=True):
            self.names.setdefault(k, s)

    def get(self, key: int) -> str | None:
        return self.names.get(key)

    def keys_of(self, field: str, uniques: Any) -> np.ndarray:
        """uint32 key of ``field=value`` for each unique value (cached by raw value)."""
        cache = self._keys.setdefault(field, {})
        uniques = uniques.tolist() if hasattr(uniques, "tolist") else list(uniques)
        got = [cache.get(u) for u in uniques]
        if None not in got:
            return np.array(got, dtype=np.uint32)
        spelled = [canonical_str(u) for u in uniques]
        keys = _fold(hash_strings([f"{field}={s}" for s in spelled]))
        self.add(keys, spelled)
        if len(cache) + len(keys) > self.cap:
            cache.clear()
        cache.update(zip(uniques, keys.tolist(), strict=True))
        return keys


def _entities(spec: FeatureSpec, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, -1 = no entity; distinct entity hashes) for the first non-null of the
    spec's entity columns (``Featurizer.entities``, hashed and grouped): the columns are
    merged first, so the batch is factorized and hashed once."""
    values: np.ndarray | None = None
    for col in spec.entity:
        if col not in frame.columns:
            continue
        column = frame[col].to_numpy()
        if values is None:
            values = column
            continue
        missing = pd.isna(values)
        if not missing.any():
            break
        values = np.where(missing, column, values)
    if values is None:
        return np.full(len(frame), -1, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    codes, uniques = pd.factorize(values)
    codes = codes.astype(np.int64, copy=False)
    hashes, strings = _hash_values(uniques)
    if not strings:
        # one spelling, two values (a user 123 and a host "123") is one entity
        remap, uniq = pd.factorize(hashes)
        return np.where(codes >= 0, remap[np.maximum(codes, 0)], -1), np.asarray(uniq, np.uint64)
    return codes, hashes


def _value_ids(
    batch: FeaturizedBatch, names: list[str], value_names: ValueNames | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the tracked fields: the id of each row's value ([T, N], -1: missing), the uint32 key
    of ``field=value`` of each id, and where each field's ids start ([T + 1]).

    The featurizer already factorized every categorical column: its codes
    (``FeaturizedBatch.categories``) are reused; a column it did not see is factorized here.
    """
    frame = batch.frame
    n = len(frame)
    known: dict[str, tuple[Any, Any]] = getattr(batch, "categories", None) or {}
    ids = np.full((len(names), n), -1, dtype=np.int64)
    luts: list[np.ndarray] = []
    offset = np.zeros(len(names) + 1, dtype=np.int64)
    for t, name in enumerate(names):
        if name in known:
            codes, uniques = known[name]
            codes = to_host_array(codes)
        elif name in frame.columns:
            codes, uniques = pd.factorize(frame[name].to_numpy())
        else:
            codes, uniques = None, []
        if len(uniques) == 0:
            lut = np.zeros(0, dtype=np.uint32)
        elif value_names is not None:
            lut = value_names.keys_of(name, uniques)
        else:
            lut = _fold(hash_strings([f"{name}={canonical_str(u)}" for u in uniques]))
        if codes is not None and len(lut):
            np.add(codes, offset[t], out=ids[t], where=codes >= 0)
        luts.append(lut)
        offset[t + 1] = offset[t] + len(lut)
    keys = np.concatenate(luts) if luts else np.zeros(0, dtype=np.uint32)
    return ids, keys.astype(np.uint32, copy=False), offset


def _clock(spec: FeatureSpec, frame: pd.DataFrame, times: Any = None) -> int:
    """Latest event time of the batch in epoch seconds.

    From the featurizer's parsed times when the batch carries them (``FeaturizedBatch.times``);
    else parsing one value, not the column: ISO-8601 UTC strings sort chronologically as text,
    so the text maximum is parsed; numbers are epoch seconds or milliseconds. Anything else
    falls back to parsing the whole column.
    """
    if times is not None:
        t = to_host_array(times)
        if len(t) == 0:
            return 0
        latest = float(np.fmax.reduce(t))  # NaN only when every time is missing
        return int(latest) if np.isfinite(latest) else 0
    col = spec.timestamp
    if not col or col not in frame.columns or len(frame) == 0:
        return 0
    values = frame[col]
    try:
        if values.dtype.kind in "iuf":
            most = float(values.max())
            return int(most / 1000 if most > _EPOCH_MS_CUTOFF else most)
        latest = values.to_numpy().max()  # TypeError when strings and numbers are mixed
        if isinstance(latest, str):
            return int(pd.Timestamp(latest).timestamp())
    except (ValueError, TypeError):
        pass
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    top = parsed.max()
    return 0 if pd.isna(top) else int(top.timestamp())


def _tame(z: np.ndarray) -> np.ndarray:
    """z clipped to +-1000, NaN as 0 (the model's z divide by small calibration stds)."""
    out = np.clip(z, -1e3, 1e3)
    if out.size and np.isnan(out.max()):  # max is NaN when any element is
        np.copyto(out, 0.0, where=np.isnan(out))
    return out


def extract(
    spec: FeatureSpec,
    plan: FieldPlan,
    config: FingerprintConfig,
    batch: FeaturizedBatch,
    outputs: dict[str, np.ndarray],
    value_names: ValueNames | None = None,
) -> BatchKeys:
    """All arrays the baselines need for one batch (see module docstring)."""
    frame = batch.frame
    tensor = np.asarray(batch.tensor)
    n = len(frame)
    logs = tensor[:, plan.num_offset].astype(np.float32) if len(plan.numeric) else None
    if logs is not None and plan.num_identity.any():
        ident = logs[:, plan.num_identity]
        logs[:, plan.num_identity] = np.sign(ident) * np.log1p(np.abs(ident))
    if logs is None:
        logs = np.zeros((n, 0), dtype=np.float32)
    bins = np.floor(logs / config.bin_width)
    bins = np.where(np.isnan(bins), -1, np.clip(bins, 0, config.numeric_bins - 1))
    hour = np.full(n, -1, dtype=np.int8)
    if plan.hour_offset is not None:
        s, c = tensor[:, plan.hour_offset], tensor[:, plan.hour_offset + 1]
        angle = np.mod(np.arctan2(s, c), 2 * np.pi)
        h = np.floor(angle / (2 * np.pi) * 24).astype(np.int64) % 24
        hour = np.where((s == 0) & (c == 0), -1, h).astype(np.int8)
    score = outputs["ANOMALY_SCORE"].reshape(-1).astype(np.float64)
    thr = outputs["THRESHOLD"].reshape(-1).astype(np.float64)
    g = np.log(np.maximum(score, 1e-12) / np.maximum(thr, 1e-12)).astype(np.float32)
    field_z = np.asarray(outputs["FIELD_Z"], dtype=np.float32).reshape(n, plan.n_fields)
    flagged = (
        outputs["IS_ANOMALY"].reshape(-1).astype(bool) if "IS_ANOMALY" in outputs else (score > thr)
    )
    entity_code, entities = _entities(spec, frame)
    value_id, value_key, value_offset = _value_ids(batch, plan.categorical, value_names)
    return BatchKeys(
        entity_code=entity_code,
        entities=entities,
        value_id=value_id,
        value_key=value_key,
        value_offset=value_offset,
        num_bins=bins.astype(np.int16),
        num_log=logs,
        hour=hour,
        g=g,
        field_z=_tame(field_z),
        flagged=flagged,
        clock=_clock(spec, frame, getattr(batch, "times", None)),
    )
