r"""The values score records are made of, per column: event times, reason values, JSON spellings.

Both record writers (:mod:`morpheus_ext.stages.postprocess.records`: dicts, and column-wise JSON
lines) take their values from here, so a value is spelled the same way in both: the JSON
fragments are byte for byte what ``orjson.dumps`` writes of the Python values.

>>> json_floats(np.array([0.5, float("nan"), 3.0])).to_pylist()
['0.5', 'null', '3.0']
>>> json_texts(texts(["alice", None, 'say "hi"'])).to_pylist()
['"alice"', 'null', '"say \\"hi\\""']
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.backend import to_host_array
from morpheus_ext.stages.inference.base import ModelInfo
from morpheus_ext.stages.postprocess.fingerprint.reason_fragments import (
    escaped,
    json_number_texts,
    needs_escape,
)
from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores
from morpheus_ext.stages.preprocess.featurizer import (
    FeaturizedBatch,
    Featurizer,
    canonical_str,
    iso_epoch_seconds,
)

_MINUTE_OF_DAY = np.array(
    [f"{m // 60:02d}:{m % 60:02d} UTC" for m in range(1440)] + [None], dtype=object
)
_WEEKDAY = np.array(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", None], dtype=object)


def epoch_seconds(times: pd.Series) -> np.ndarray:
    if times.dtype.kind in "iuf":
        secs = times.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(secs > 1e11, secs / 1000, secs)
    strict = iso_epoch_seconds(times)  # Arrow's strict parse (fast); else pandas
    if strict is not None:
        return strict
    parsed = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(na_value=np.nan)


class BatchColumns:
    """The column work a batch's records share, done once: each row's event time in epoch
    seconds and each categorical column's factorization. Both come from the featurizer when
    it made them (``FeaturizedBatch.times`` / ``.categories``: the times the model saw, no
    second parse or factorize, ~0.5 us/event); columns it did not see are computed here."""

    def __init__(self, batch: FeaturizedBatch, ts_col: str | None) -> None:
        self.batch = batch
        self.frame = batch.frame
        self.n = len(batch.frame)
        self.ts_col = ts_col
        self._secs: np.ndarray | None = None

    def has_time(self) -> bool:
        return self.batch.times is not None or (
            self.ts_col is not None and self.ts_col in self.frame.columns
        )

    def epoch_seconds(self) -> np.ndarray:
        """Event time per row (float64, NaN: missing or unparseable)."""
        if self._secs is None:
            if self.batch.times is not None:
                self._secs = np.asarray(to_host_array(self.batch.times), dtype=np.float64)
            else:
                assert self.ts_col is not None
                self._secs = epoch_seconds(self.frame[self.ts_col])
        return self._secs

    def factorized(self, name: str) -> tuple[np.ndarray, Any]:
        """(code per row, -1: missing; the distinct values) of a categorical column."""
        known = self.batch.categories.get(name)
        if known is not None:
            return to_host_array(known[0]), known[1]
        codes, uniques = pd.factorize(self.frame[name])
        return codes, uniques


def _time_strings(field: str, secs: np.ndarray) -> list[Any]:
    """Readable values of a time slot for a whole column: ``03:14 UTC`` (hour) or ``Sun``."""
    bad = ~np.isfinite(secs)
    secs = np.where(bad, 0, secs)
    if field == "hour":
        idx = np.where(bad, 1440, (secs % 86400 // 60).astype(np.int64))
        return list(_MINUTE_OF_DAY[idx].tolist())
    days = (secs // 86400).astype(np.int64)
    idx = np.where(bad, 7, (days + 3) % 7)  # 1970-01-01 was a Thursday
    return list(_WEEKDAY[idx].tolist())


def field_values(cols: BatchColumns, name: str, kind: str) -> list[Any]:
    """The values reasons quote for one field, for every row (JSON-ready Python objects)."""
    n, frame = cols.n, cols.frame
    if kind == "time":
        return _time_strings(name, cols.epoch_seconds()) if cols.has_time() else [None] * n
    if name not in frame.columns:
        return [None] * n
    col = frame[name]
    if kind == "numeric":
        nums = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        out = nums.astype(object)
        out[np.isnan(nums)] = None
        return list(out.tolist())
    codes, uniques = cols.factorized(name)
    spelled = np.array([canonical_str(u) for u in uniques] + [None], dtype=object)
    return list(spelled[codes].tolist())  # code -1 (missing) picks the trailing None


JSON_BOOLS = pa.array(["false", "true"])
_MINUTE_JSON = pa.array([orjson.dumps(v).decode() for v in _MINUTE_OF_DAY.tolist()])
_WEEKDAY_JSON = pa.array([orjson.dumps(v).decode() for v in _WEEKDAY.tolist()])
_MINUTE_TEXT = pa.array(_MINUTE_OF_DAY.tolist(), type=pa.string())
_WEEKDAY_TEXT = pa.array(_WEEKDAY.tolist(), type=pa.string())


@cache
def field_names(names: tuple[str, ...]) -> pa.Array:
    """The fields' names, JSON-escaped (for the fingerprint's reason texts)."""
    return pa.array([escaped(name) for name in names], type=pa.string())


def display_values(cols: BatchColumns, name: str, kind: str) -> tuple[pa.Array, np.ndarray]:
    """:func:`field_values` of one field as reasons' texts quote them (``f"{value}"``, null for
    None; JSON-escaped), and as numbers (numeric fields; NaN elsewhere)."""
    n, frame = cols.n, cols.frame
    nan = np.full(n, np.nan)
    if kind == "time":
        if not cols.has_time():
            return pa.nulls(n, pa.string()), nan
        secs = cols.epoch_seconds()
        bad = ~np.isfinite(secs)
        secs = np.where(bad, 0, secs)
        if name == "hour":
            idx = np.where(bad, 1440, (secs % 86400 // 60).astype(np.int64))
            return _MINUTE_TEXT.take(idx), nan
        days = (secs // 86400).astype(np.int64)
        return _WEEKDAY_TEXT.take(np.where(bad, 7, (days + 3) % 7)), nan
    if name not in frame.columns:
        return pa.nulls(n, pa.string()), nan
    col = frame[name]
    if kind == "numeric":
        nums = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        nums = np.ascontiguousarray(nums)
        inv, uniq = pd.factorize(nums.view(np.int64))  # bit-exact: -0.0 stays "-0.0"
        spelled = [None if v != v else str(v) for v in uniq.view(np.float64).tolist()]
        return pa.array(spelled, type=pa.string()).take(inv), nums
    codes, uniques = cols.factorized(name)
    spelled = [escaped(canonical_str(u)) for u in uniques] + [None]
    return pa.array(spelled, type=pa.string()).take(np.where(codes < 0, len(uniques), codes)), nan


@cache
def reason_heads(names: tuple[str, ...]) -> pa.Array:
    """Per field index, the start of its reason object up to the value."""
    return pa.array(['{"field":' + orjson.dumps(name).decode() + ',"value":' for name in names])


def pybytes(strings: pa.Array) -> list[Any]:
    """Python bytes per value (None for null); via NumPy: Arrow's to_pylist is ~7x slower."""
    return list(strings.cast(pa.binary()).to_numpy(zero_copy_only=False).tolist())


def texts(values: pd.Series | list[Any]) -> pa.Array:
    """A column as record text: ``str(value)``, null for None/NaN (all-string columns: in C)."""
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        pass
    seq = values.tolist() if isinstance(values, pd.Series) else values
    return pa.array(
        [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in seq],
        type=pa.string(),
    )


def column_texts(frame: pd.DataFrame, name: str | None) -> pa.Array:
    if name is None or name not in frame.columns:
        return pa.nulls(len(frame), pa.string())
    return texts(frame[name])


def replace_at(arr: pa.Array, where: np.ndarray, strings: list[str]) -> pa.Array:
    """``arr`` with the elements at ``where`` replaced by ``strings``."""
    take = np.arange(len(arr), dtype=np.int64)
    take[where] = len(arr) + np.arange(len(where))
    return pa.concat_arrays([arr, pa.array(strings, type=arr.type)]).take(take)


def join_texts(*parts: Any) -> pa.Array:
    """Row-wise concatenation; neighbouring literal strings are merged first (fewer copies
    per row: a record's constant text between two columns becomes one piece)."""
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return pc.binary_join_element_wise(*merged, "")


def json_texts(strings: pa.Array) -> pa.Array:
    """JSON string literals (``orjson.dumps`` spelling), ``null`` for nulls."""
    if needs_escape(strings):
        return pa.array([orjson.dumps(t).decode() for t in strings.to_pylist()], type=pa.string())
    return pc.fill_null(pc.binary_join_element_wise('"', strings, '"', ""), "null")


def json_floats_or_one(values: np.ndarray) -> pa.Array | str:
    """:func:`json_floats`, or the one spelling as a literal when every value is the same
    (a batch's threshold): spelled once, not per row."""
    arr = np.asarray(values).reshape(-1)
    if len(arr) and np.isfinite(arr[0]) and (arr == arr[0]).all():
        return orjson.dumps(float(arr[0])).decode()
    return json_floats(arr)


def json_floats(values: np.ndarray) -> pa.Array:
    """Numbers as ``orjson.dumps(float(v))`` spells them (NaN/inf -> null), one call for all."""
    arr = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np.float64)
    if len(arr) == 0:
        return pa.array([], pa.string())
    return json_number_texts(arr)


_JSON_NULL = pa.array(["null"])


def json_values(cols: BatchColumns, name: str, kind: str) -> tuple[pa.Array, np.ndarray]:
    """:func:`field_values` of one field as JSON fragments (same values, same spelling): the
    distinct fragments and, per row, the index of its fragment. Rows are only gathered once
    the top-k fields of each row are known (one take per reason slot, not one per field)."""
    n, frame = cols.n, cols.frame
    if kind == "time":
        if not cols.has_time():
            return _JSON_NULL, np.zeros(n, dtype=np.int64)
        secs = cols.epoch_seconds()
        bad = ~np.isfinite(secs)
        secs = np.where(bad, 0, secs)
        if name == "hour":
            return _MINUTE_JSON, np.where(bad, 1440, (secs % 86400 // 60).astype(np.int64))
        days = (secs // 86400).astype(np.int64)
        return _WEEKDAY_JSON, np.where(bad, 7, (days + 3) % 7)
    if name not in frame.columns:
        return _JSON_NULL, np.zeros(n, dtype=np.int64)
    if kind == "numeric":
        nums = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        return json_floats(nums), np.arange(n, dtype=np.int64)
    codes, uniques = cols.factorized(name)
    spelled = [orjson.dumps(canonical_str(u)).decode() for u in uniques] + ["null"]
    return pa.array(spelled, type=pa.string()), np.where(codes < 0, len(uniques), codes)


class RecordInputs:
    """What one batch's records are made of, with the shared column work done once."""

    def __init__(
        self,
        batch: FeaturizedBatch,
        outputs: dict[str, np.ndarray],
        featurizer: Featurizer,
        model: ModelInfo,
        scored_at: str,
        fingerprint: FingerprintScores | None,
    ) -> None:
        self.batch = batch
        self.outputs = outputs
        self.featurizer = featurizer
        self.spec = featurizer.spec
        self.model = model
        self.scored_at = scored_at
        self.fingerprint = fingerprint
        self.n = len(batch.frame)
        self.columns = BatchColumns(batch, self.spec.timestamp)
        self._entities: pa.Array | None = None
        self._ids: pa.Array | None = None
        self.cache: dict[str, Any] = {}
        """Per-batch results a writer computes once (e.g. the reasons' JSON pieces)."""

    def output(self, name: str) -> np.ndarray:
        return np.asarray(self.outputs[name]).reshape(-1)

    def entities(self) -> pa.Array:
        if self._entities is None:
            self._entities = texts(self.featurizer.entities(self.batch.frame))
        return self._entities

    def event_ids(self) -> pa.Array:
        if self._ids is None:
            self._ids = column_texts(self.batch.frame, self.spec.event_id)
        return self._ids

    def event_times(self) -> pa.Array:
        return column_texts(self.batch.frame, self.spec.timestamp)

    def top_fields(self) -> np.ndarray:
        """Per row, the fields its reasons name: the baselines' ranking when they explain the
        batch, else the ensemble's ``TOP_FIELDS``."""
        fp = self.fingerprint
        return self.outputs["TOP_FIELDS"] if fp is None or fp.reasons is None else fp.reasons.fields

    def top_z(self) -> np.ndarray:
        top = self.top_fields()
        z = (
            np.asarray(self.outputs["TOP_Z"])
            if top is self.outputs["TOP_FIELDS"]
            else np.take_along_axis(np.asarray(self.outputs["FIELD_Z"]), top.astype(np.int64), 1)
        )
        return np.round(z.astype(np.float64), 3)

    def feature_spec(self) -> dict[str, Any]:
        spec = self.spec
        return {"name": spec.name, "version": spec.version, "hash": spec.spec_hash}
