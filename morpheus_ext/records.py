"""Score records: one JSON object per scored event, what analysts and downstream tools read.

Documented in docs/score_record.md; the JSON Schema is ``morpheus_ext/schemas/score_record.json``.
Reasons name *fields* (not tensor slots) with the event's own value and the field's z-score, so
"country=KP (z 41.2)" is readable without knowing the tensor layout.

With per-entity baselines (:mod:`morpheus_ext.fingerprint`) a record also says which baseline
judged it, the entity and combined scores, and each reason carries a sentence an analyst can act
on ("country=BR never seen for alice in 30 days") plus the numbers behind it. Without baselines
records are exactly as before.

Without baselines the pipeline keeps a batch's records column-wise (:class:`ScoreRecords`): the
Kafka and file sinks get each record's JSON line assembled by Arrow string kernels from per-column
JSON fragments, byte for byte what ``orjson.dumps`` makes of the record's dict, without building
the dicts (the dict per event was most of the scoring path's CPU). The dicts are built only when
someone indexes or iterates the records. With baselines too: the reasons' texts and the entity's
numbers come as JSON fragments from :func:`~morpheus_ext.fingerprint.reasons.reason_fragments`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.backend import to_host_array
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.featurizer import (
    FeaturizedBatch,
    Featurizer,
    canonical_str,
    iso_epoch_seconds,
)
from morpheus_ext.fingerprint.reasons import (
    entity_reasons,
    escaped,
    fingerprint_tail,
    reason_fragments,
)
from morpheus_ext.fingerprint.scoring import FingerprintScores
from morpheus_ext.inference.base import ModelInfo

SCHEMA_PATH = Path(__file__).parent / "schemas" / "score_record.json"
RECORD_VERSION = 1
DICT_RECORDS_UP_TO = 0.25
"""Up to this share of a batch explained (fingerprint reasons in words, typically the few
flagged records), :class:`ScoreRecords` writes those records from dicts; above it, column-wise
(Arrow kernels cost the same per call for 100 rows as for 4000)."""


@cache
def score_record_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


_MINUTE_OF_DAY = np.array(
    [f"{m // 60:02d}:{m % 60:02d} UTC" for m in range(1440)] + [None], dtype=object
)
_WEEKDAY = np.array(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", None], dtype=object)


def _epoch_seconds(times: pd.Series) -> np.ndarray:
    if times.dtype.kind in "iuf":
        secs = times.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(secs > 1e11, secs / 1000, secs)
    strict = iso_epoch_seconds(times)  # Arrow's strict parse (fast); else pandas
    if strict is not None:
        return strict
    parsed = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(na_value=np.nan)


class _BatchColumns:
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
                self._secs = _epoch_seconds(self.frame[self.ts_col])
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


def _field_values(cols: _BatchColumns, name: str, kind: str) -> list[Any]:
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


def build_records(
    batch: FeaturizedBatch,
    outputs: dict[str, np.ndarray],
    featurizer: Featurizer,
    model: ModelInfo,
    scored_at: str | None = None,
    fingerprint: FingerprintScores | None = None,
) -> list[dict[str, Any]]:
    """One record per accepted row of ``batch``, in order.

    ``fingerprint`` (the baselines' scores of this batch, ``observe(..., explain=True)``) adds
    the fingerprint fields and ranks reasons of rows with an entity baseline by how new the
    value is *for that entity*, each with a text and the entity's numbers.
    """
    # Records are acyclic dicts: the cyclic garbage collector would only re-scan the growing
    # batch dozens of times (measured: the record loop 2x slower at 4,096 rows with it on).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(batch, outputs, featurizer, model, scored_at, fingerprint)
    finally:
        if collecting:
            gc.enable()


def _build(
    batch: FeaturizedBatch,
    outputs: dict[str, np.ndarray],
    featurizer: Featurizer,
    model: ModelInfo,
    scored_at: str | None,
    fingerprint: FingerprintScores | None,
) -> list[dict[str, Any]]:
    spec: FeatureSpec = featurizer.spec
    fields = spec.layout.fields
    frame = batch.frame
    ts_col = spec.timestamp
    scored_at = scored_at or datetime.now(UTC).isoformat(timespec="milliseconds")
    entities = _texts(featurizer.entities(frame)).to_pylist()
    ids = _column_texts(frame, spec.event_id).to_pylist()
    times = _column_texts(frame, ts_col).to_pylist()
    score = outputs["ANOMALY_SCORE"].reshape(-1).tolist()
    thr = outputs["THRESHOLD"].reshape(-1).tolist()
    flag = outputs["IS_ANOMALY"].reshape(-1).tolist()
    mean_z = outputs["MEAN_ABS_Z"].reshape(-1).tolist()
    max_z = outputs["MAX_ABS_Z"].reshape(-1).tolist()
    version = outputs["MODEL_VERSION"].reshape(-1).tolist()
    explained = fingerprint.reasons if fingerprint is not None else None
    top_fields = outputs["TOP_FIELDS"] if explained is None else explained.fields
    top = top_fields.tolist()
    top_z = np.round(_top_z(outputs, top_fields).astype(np.float64), 3).tolist()
    feature_spec = {"name": spec.name, "version": spec.version, "hash": spec.spec_hash}
    # Values are looked up only for fields that appear in some row's top-k.
    cols = _BatchColumns(batch, ts_col)
    values = {
        f: _field_values(cols, fields[f].name, fields[f].kind)
        for f in np.unique(top_fields).tolist()
    }
    names = [f.name for f in fields]
    records = []
    for i in range(len(frame)):
        reasons = [
            {"field": names[f], "value": values[f][i], "z": z}
            for f, z in zip(top[i], top_z[i], strict=True)
        ]
        event_id = ids[i]
        records.append(
            {
                "record_version": RECORD_VERSION,
                "event_id": event_id,
                "entity": entities[i],
                "event_time": times[i],
                "anomaly_score": score[i],
                "threshold": thr[i],
                "is_anomaly": bool(flag[i]),
                "mean_abs_z": mean_z[i],
                "max_abs_z": max_z[i],
                "reasons": reasons,
                "model": {"name": model.name, "version": int(version[i])},
                "feature_spec": feature_spec,
                "scored_at": scored_at,
            }
        )
    if fingerprint is not None:
        entity_reasons(records, fingerprint, names)
    return records


def _top_z(outputs: dict[str, np.ndarray], top_fields: np.ndarray) -> np.ndarray:
    if top_fields is outputs["TOP_FIELDS"]:
        return np.asarray(outputs["TOP_Z"])
    return np.take_along_axis(np.asarray(outputs["FIELD_Z"]), top_fields.astype(np.int64), 1)


# --------------------------------------------------------------------------- column-wise
def count_anomalies(records: Sequence[dict[str, Any]]) -> int:
    """Records flagged ``is_anomaly`` (without building dicts for :class:`ScoreRecords`)."""
    if isinstance(records, ScoreRecords):
        return records.anomalies
    return sum(1 for r in records if r["is_anomaly"])


def build_score_records(
    batch: FeaturizedBatch,
    outputs: dict[str, np.ndarray],
    featurizer: Featurizer,
    model: ModelInfo,
    scored_at: str | None = None,
    fingerprint: FingerprintScores | None = None,
) -> ScoreRecords:
    """The records of :func:`build_records`, kept column-wise."""
    return ScoreRecords(batch, outputs, featurizer, model, scored_at, fingerprint)


class ScoreRecords(Sequence[dict[str, Any]]):
    """One batch's score records, column-wise: JSON lines and keys without per-event dicts.

    Indexing or iterating builds (once) exactly the dicts :func:`build_records` returns.
    """

    def __init__(
        self,
        batch: FeaturizedBatch,
        outputs: dict[str, np.ndarray],
        featurizer: Featurizer,
        model: ModelInfo,
        scored_at: str | None = None,
        fingerprint: FingerprintScores | None = None,
    ) -> None:
        self.batch = batch
        self.fingerprint = fingerprint
        self.outputs = outputs
        self.featurizer = featurizer
        self.model = model
        self.scored_at = scored_at or datetime.now(UTC).isoformat(timespec="milliseconds")
        self._n = len(batch.frame)
        self._dicts: list[dict[str, Any]] | None = None
        self._ids: pa.Array | None = None

    # ------------------------------------------------------------------ Sequence
    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.dicts()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dicts())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScoreRecords | list | tuple):
            return self.dicts() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ScoreRecords({self._n} records)"

    def dicts(self) -> list[dict[str, Any]]:
        """The records as dicts (built on first use)."""
        if self._dicts is None:
            self._dicts = build_records(
                self.batch,
                self.outputs,
                self.featurizer,
                self.model,
                self.scored_at,
                self.fingerprint,
            )
        return self._dicts

    # ------------------------------------------------------------------ column-wise
    @property
    def anomalies(self) -> int:
        return int(np.count_nonzero(self.outputs["IS_ANOMALY"]))

    def event_ids(self) -> pa.Array:
        """The records' ``event_id`` values (strings, null where none)."""
        if self._ids is None:
            self._ids = _column_texts(self.batch.frame, self.featurizer.spec.event_id)
        return self._ids

    def keys(self) -> list[bytes | None]:
        """Kafka keys: the UTF-8 event id (None without one)."""
        return _pybytes(self.event_ids())

    def json_lines(self, newline: bool = False) -> list[bytes]:
        """Each record as ``orjson.dumps(record)`` would write it (plus ``\n`` if asked)."""
        if self._n == 0:
            return []
        return _pybytes(self._json_array(newline))

    def jsonl(self) -> bytes:
        """All records as JSON Lines (one buffer)."""
        if self._n == 0:
            return b""
        lines = self._json_array(newline=True)
        offsets_buf, data = lines.buffers()[1:3]
        assert offsets_buf is not None and data is not None
        offsets = np.frombuffer(offsets_buf, dtype=np.int32)[lines.offset :]
        return data.slice(int(offsets[0]), int(offsets[self._n] - offsets[0])).to_pybytes()

    def _json_array(self, newline: bool) -> pa.StringArray:
        n = self._n
        spec = self.featurizer.spec
        fields = spec.layout.fields
        frame = self.batch.frame
        out = self.outputs
        fp = self.fingerprint
        explained = fp.reasons if fp is not None else None
        top_fields = out["TOP_FIELDS"] if explained is None else explained.fields
        top = np.asarray(top_fields).astype(np.int64).reshape(n, -1)
        top_z = np.round(_top_z(out, top_fields).astype(np.float64), 3).reshape(n, -1)
        version = np.asarray(out["MODEL_VERSION"]).reshape(-1).astype(np.int64)
        flag = np.asarray(out["IS_ANOMALY"]).reshape(-1).astype(bool).astype(np.int8)
        entities = _texts(self.featurizer.entities(frame))
        parts: list[Any] = [
            '{"record_version":' + str(RECORD_VERSION) + ',"event_id":',
            _json_texts(self.event_ids()),
            ',"entity":',
            _json_texts(entities),
            ',"event_time":',
            _json_texts(_column_texts(frame, spec.timestamp)),
            ',"anomaly_score":',
            _json_floats(out["ANOMALY_SCORE"]),
            ',"threshold":',
            _json_floats_or_one(out["THRESHOLD"]),
            ',"is_anomaly":',
            _JSON_BOOLS.take(flag),
            ',"mean_abs_z":',
            _json_floats(out["MEAN_ABS_Z"]),
            ',"max_abs_z":',
            _json_floats(out["MAX_ABS_Z"]),
            ',"reasons":[',
        ]
        k = top.shape[1]
        by_dict = np.empty(0, dtype=np.int64)
        if k:
            used = np.unique(top)
            slot = np.zeros(max(len(fields), int(used.max()) + 1), dtype=np.int64)
            slot[used] = np.arange(len(used))
            cols = _BatchColumns(self.batch, spec.timestamp)
            fragments, where = zip(
                *[_json_values(cols, fields[f].name, fields[f].kind) for f in used.tolist()],
                strict=True,
            )
            values = pa.concat_arrays(list(fragments))
            starts = np.cumsum([0] + [len(x) for x in fragments[:-1]])
            value_at = np.stack(where) + starts[:, None]  # [used field, row] -> index in values
            names = _reason_heads(tuple(f.name for f in fields))
            rows = np.arange(n, dtype=np.int64)
            ends: list[list[Any]] = [["}"]] * k
            ex = np.flatnonzero(explained.explained) if explained is not None else rows[:0]
            if len(ex) <= n * DICT_RECORDS_UP_TO:
                by_dict = ex  # a few explained rows: their records as dicts, patched in below
            elif len(ex):  # the fingerprint's text and numbers, column-wise too
                shown = [
                    _display_values(cols, fields[f].name, fields[f].kind) for f in used.tolist()
                ]
                texts = pa.concat_arrays([t for t, _ in shown])
                numbers = np.concatenate([x for _, x in shown])
                is_num = np.array([fields[f].kind == "numeric" for f in range(len(fields))])
                every = len(ex) == n
                sub = top if every else top[ex]
                at = [slot[sub[:, j]] * n + ex for j in range(k)]
                assert fp is not None
                frags = reason_fragments(
                    fp if every else fp.take(ex),
                    [_field_names(tuple(f.name for f in fields)).take(sub[:, j]) for j in range(k)],
                    [texts.take(a) for a in at],
                    [numbers[a] for a in at],
                    [is_num[sub[:, j]] for j in range(k)],
                    entities if every else entities.take(ex),
                    top_z if every else top_z[ex],
                )
                if every:
                    ends = [[',"text":"', text, '"', detail, "}"] for text, detail in frags]
                else:  # the other rows' reasons end after "z"
                    back = np.full(n, -1, dtype=np.int64)
                    back[ex] = np.arange(len(ex))
                    spread = pa.array(back, mask=back < 0)
                    ends = [
                        [pc.fill_null(_join_texts(',"text":"', t, '"', d).take(spread), ""), "}"]
                        for t, d in frags
                    ]
            for j in range(k):
                if j:
                    parts.append(",")
                parts += [
                    names.take(top[:, j]),
                    values.take(value_at[slot[top[:, j]], rows]),
                    ',"z":',
                    _json_floats(top_z[:, j]),
                    *ends[j],
                ]
        feature_spec = orjson.dumps(
            {"name": spec.name, "version": spec.version, "hash": spec.spec_hash}
        ).decode()
        parts += [
            '],"model":{"name":' + orjson.dumps(self.model.name).decode() + ',"version":',
            str(version[0])
            if len(version) and (version == version[0]).all()
            else pc.cast(pa.array(version), pa.string()),
            '},"feature_spec":'
            + feature_spec
            + ',"scored_at":'
            + orjson.dumps(self.scored_at).decode(),
        ]
        if fp is not None:
            parts += fingerprint_tail(fp)
        parts.append("}\n" if newline else "}")
        lines = _join_texts(*parts)
        if len(by_dict):
            said = self._explained_lines(lines.take(by_dict), by_dict, newline)
            lines = _replace(lines, by_dict, said)
        return lines

    def _explained_lines(self, lines: pa.Array, rows: np.ndarray, newline: bool) -> list[str]:
        """The records of ``rows`` (``lines``: theirs without reason texts) with their texts.

        For a few rows, Python per reason beats the ~200 Arrow kernel calls of the column-wise
        texts, whose fixed cost does not shrink with the rows: parse the lines, add the texts
        as :func:`build_records` does (:func:`entity_reasons`), serialise again."""
        assert self.fingerprint is not None
        records = [orjson.loads(line) for line in _pybytes(lines)]
        names = [f.name for f in self.featurizer.spec.layout.fields]
        entity_reasons(records, self.fingerprint.take(rows), names)
        end = b"\n" if newline else b""
        return [(orjson.dumps(r) + end).decode() for r in records]


_JSON_BOOLS = pa.array(["false", "true"])
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
_MINUTE_JSON = pa.array([orjson.dumps(v).decode() for v in _MINUTE_OF_DAY.tolist()])
_WEEKDAY_JSON = pa.array([orjson.dumps(v).decode() for v in _WEEKDAY.tolist()])
_MINUTE_TEXT = pa.array(_MINUTE_OF_DAY.tolist(), type=pa.string())
_WEEKDAY_TEXT = pa.array(_WEEKDAY.tolist(), type=pa.string())


@cache
def _field_names(names: tuple[str, ...]) -> pa.Array:
    """The fields' names, JSON-escaped (for the fingerprint's reason texts)."""
    return pa.array([escaped(name) for name in names], type=pa.string())


def _display_values(cols: _BatchColumns, name: str, kind: str) -> tuple[pa.Array, np.ndarray]:
    """:func:`_field_values` of one field as reasons' texts quote them (``f"{value}"``, null for
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
def _reason_heads(names: tuple[str, ...]) -> pa.Array:
    """Per field index, the start of its reason object up to the value."""
    return pa.array(['{"field":' + orjson.dumps(name).decode() + ',"value":' for name in names])


def _pybytes(texts: pa.Array) -> list[Any]:
    """Python bytes per value (None for null); via NumPy: Arrow's to_pylist is ~7x slower."""
    return list(texts.cast(pa.binary()).to_numpy(zero_copy_only=False).tolist())


def _texts(values: pd.Series | list[Any]) -> pa.Array:
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


def _column_texts(frame: pd.DataFrame, name: str | None) -> pa.Array:
    if name is None or name not in frame.columns:
        return pa.nulls(len(frame), pa.string())
    return _texts(frame[name])


def _replace(arr: pa.Array, where: np.ndarray, strings: list[str]) -> pa.Array:
    """``arr`` with the elements at ``where`` replaced by ``strings``."""
    take = np.arange(len(arr), dtype=np.int64)
    take[where] = len(arr) + np.arange(len(where))
    return pa.concat_arrays([arr, pa.array(strings, type=arr.type)]).take(take)


def _join_texts(*parts: Any) -> pa.Array:
    """Row-wise concatenation; neighbouring literal strings are merged first (fewer copies
    per row: a record's constant text between two columns becomes one piece)."""
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return pc.binary_join_element_wise(*merged, "")


def _json_texts(texts: pa.Array) -> pa.Array:
    """JSON string literals (``orjson.dumps`` spelling), ``null`` for nulls."""
    if pc.any(pc.match_substring_regex(texts, _NEEDS_ESCAPE)).as_py():
        return pa.array([orjson.dumps(t).decode() for t in texts.to_pylist()], type=pa.string())
    return pc.fill_null(pc.binary_join_element_wise('"', texts, '"', ""), "null")


def _json_floats_or_one(values: np.ndarray) -> pa.Array | str:
    """:func:`_json_floats`, or the one spelling as a literal when every value is the same
    (a batch's threshold): spelled once, not per row."""
    arr = np.asarray(values).reshape(-1)
    if len(arr) and np.isfinite(arr[0]) and (arr == arr[0]).all():
        return orjson.dumps(float(arr[0])).decode()
    return _json_floats(arr)


def _json_floats(values: np.ndarray) -> pa.Array:
    """Numbers as ``orjson.dumps(float(v))`` spells them (NaN/inf -> null), one call for all."""
    arr = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np.float64)
    if len(arr) == 0:
        return pa.array([], pa.string())
    text = orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()
    return pc.split_pattern(pa.array([text]), ",").flatten()


_JSON_NULL = pa.array(["null"])


def _json_values(cols: _BatchColumns, name: str, kind: str) -> tuple[pa.Array, np.ndarray]:
    """:func:`_field_values` of one field as JSON fragments (same values, same spelling): the
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
        return _json_floats(nums), np.arange(n, dtype=np.int64)
    codes, uniques = cols.factorized(name)
    spelled = [orjson.dumps(canonical_str(u)).decode() for u in uniques] + ["null"]
    return pa.array(spelled, type=pa.string()), np.where(codes < 0, len(uniques), codes)
