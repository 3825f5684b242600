"""Score records: one JSON object per scored event, what analysts and downstream tools read.

Documented in docs/score_record.md; the JSON Schema is ``morpheus_ext/schemas/score_record.json``.
Reasons name *fields* (not tensor slots) with the event's own value and the field's z-score, so
"country=KP (z 41.2)" is readable without knowing the tensor layout. With per-entity baselines
(:mod:`morpheus_ext.stages.postprocess.fingerprint`) a record also says which baseline judged it,
the entity and combined scores, and each reason of a flagged event carries a sentence an analyst
can act on ("country=BR never seen for alice in 30 days") plus the numbers behind it.

**The format is declared once**: :data:`RECORD_FIELDS` lists every top-level field in order,
each with how to get its values for a batch as Python objects (for dicts) and as JSON fragments
(column-wise). Both writers iterate that table:

* :func:`build_records`: one dict per event (REST responses, tests, explained records);
* :class:`ScoreRecords`: the pipeline keeps a batch's records column-wise; the Kafka and file
  sinks get each record's JSON line assembled by Arrow string kernels from per-column fragments,
  byte for byte what ``orjson.dumps`` makes of the dict, without building the dicts (the dict per
  event was most of the scoring path's CPU). Dicts are built only when someone indexes or
  iterates the records.

A new field is one :class:`RecordField` here (plus the schema file and docs/score_record.md).

>>> [f.name for f in RECORD_FIELDS][:4]
['record_version', 'event_id', 'entity', 'event_time']
>>> [f.name for f in RECORD_FIELDS if f.fingerprint]
['baseline', 'entity_events', 'entity_score', 'combined_score', 'combined_anomaly']
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.stages.inference.base import ModelInfo
from morpheus_ext.stages.postprocess.fingerprint.reason_fragments import (
    fingerprint_json,
)
from morpheus_ext.stages.postprocess.fingerprint.reasons import entity_reasons, rounded_lists
from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores
from morpheus_ext.stages.postprocess.leakage import Finding, annotate
from morpheus_ext.stages.postprocess.record_reasons import ReasonsJson, reason_dicts
from morpheus_ext.stages.postprocess.record_values import (
    JSON_BOOLS,
    RecordInputs,
    join_texts,
    json_floats,
    json_floats_or_one,
    json_texts,
    pybytes,
    replace_at,
)
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, Featurizer

SCHEMA_PATH = Path(__file__).parents[2] / "schemas" / "score_record.json"
RECORD_VERSION = 1


@cache
def score_record_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


Values = Callable[[RecordInputs], Any]
Fragments = Callable[[RecordInputs], Any]


@dataclass(frozen=True)
class RecordField:
    """One top-level field of the score record.

    ``values`` gives the field for every row as Python objects (a list), or one object shared by
    all rows when ``per_row`` is false; ``json`` gives the same as JSON: a per-row Arrow string
    array, a literal string, or a list of such pieces (joined in order).
    """

    name: str
    values: Values
    json: Fragments
    per_row: bool = True
    fingerprint: bool = False
    """Present only when per-entity baselines scored the batch."""


def _outputs_list(name: str) -> Values:
    return lambda r: r.output(name).tolist()


def _outputs_json(name: str) -> Fragments:
    return lambda r: json_floats(r.output(name))


def _flags(r: RecordInputs) -> np.ndarray:
    return r.output("IS_ANOMALY").astype(bool).astype(np.int8)


def _model_values(r: RecordInputs) -> list[dict[str, Any]]:
    name = r.model.name
    return [{"name": name, "version": int(v)} for v in r.output("MODEL_VERSION").tolist()]


def _model_json(r: RecordInputs) -> list[Any]:
    version = r.output("MODEL_VERSION").astype(np.int64)
    same = len(version) and (version == version[0]).all()
    return [
        '{"name":' + orjson.dumps(r.model.name).decode() + ',"version":',
        str(version[0]) if same else pc.cast(pa.array(version), pa.string()),
        "}",
    ]


def _fp(r: RecordInputs) -> FingerprintScores:
    assert r.fingerprint is not None
    return r.fingerprint


RECORD_FIELDS: tuple[RecordField, ...] = (
    RecordField(
        "record_version", lambda r: RECORD_VERSION, lambda r: str(RECORD_VERSION), per_row=False
    ),
    RecordField(
        "event_id", lambda r: r.event_ids().to_pylist(), lambda r: json_texts(r.event_ids())
    ),
    RecordField("entity", lambda r: r.entities().to_pylist(), lambda r: json_texts(r.entities())),
    RecordField(
        "event_time",
        lambda r: r.event_times().to_pylist(),
        lambda r: json_texts(r.event_times()),
    ),
    RecordField("anomaly_score", _outputs_list("ANOMALY_SCORE"), _outputs_json("ANOMALY_SCORE")),
    RecordField(
        "threshold",
        _outputs_list("THRESHOLD"),
        lambda r: json_floats_or_one(r.output("THRESHOLD")),
    ),
    RecordField(
        "is_anomaly",
        lambda r: [bool(x) for x in r.output("IS_ANOMALY").tolist()],
        lambda r: JSON_BOOLS.take(_flags(r)),
    ),
    RecordField("mean_abs_z", _outputs_list("MEAN_ABS_Z"), _outputs_json("MEAN_ABS_Z")),
    RecordField("max_abs_z", _outputs_list("MAX_ABS_Z"), _outputs_json("MAX_ABS_Z")),
    RecordField("reasons", reason_dicts, lambda r: _reasons_json(r).pieces()),
    RecordField("model", _model_values, _model_json),
    RecordField(
        "feature_spec",
        RecordInputs.feature_spec,
        lambda r: orjson.dumps(r.feature_spec()).decode(),
        per_row=False,
    ),
    RecordField(
        "scored_at",
        lambda r: r.scored_at,
        lambda r: orjson.dumps(r.scored_at).decode(),
        per_row=False,
    ),
    RecordField(
        "baseline",
        lambda r: np.where(_fp(r).entity_baseline, "entity", "population").tolist(),
        lambda r: fingerprint_json(_fp(r), "baseline"),
        fingerprint=True,
    ),
    RecordField(
        "entity_events",
        lambda r: _fp(r).history.tolist(),
        lambda r: fingerprint_json(_fp(r), "entity_events"),
        fingerprint=True,
    ),
    RecordField(
        "entity_score",
        lambda r: [
            s if use else None
            for s, use in zip(
                rounded_lists(_fp(r).entity_score, 3),
                _fp(r).entity_baseline.tolist(),
                strict=True,
            )
        ],
        lambda r: fingerprint_json(_fp(r), "entity_score"),
        fingerprint=True,
    ),
    RecordField(
        "combined_score",
        lambda r: rounded_lists(_fp(r).combined, 3),
        lambda r: fingerprint_json(_fp(r), "combined_score"),
        fingerprint=True,
    ),
    RecordField(
        "combined_anomaly",
        lambda r: _fp(r).combined_anomaly.tolist(),
        lambda r: fingerprint_json(_fp(r), "combined_anomaly"),
        fingerprint=True,
    ),
)
"""Every top-level field of a score record, in the order records are written."""


def _reasons_json(r: RecordInputs) -> ReasonsJson:
    """The reasons' JSON pieces, one object per batch (it also says which rows it left to the
    dict writer)."""
    found = r.cache.get("reasons")
    if found is None:
        found = r.cache["reasons"] = ReasonsJson(r)
    return found


def _fields(fingerprint: FingerprintScores | None) -> tuple[RecordField, ...]:
    return tuple(f for f in RECORD_FIELDS if fingerprint is not None or not f.fingerprint)


# --------------------------------------------------------------------------- dicts
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
        inputs = RecordInputs(batch, outputs, featurizer, model, scored_at or _now(), fingerprint)
        fields = _fields(fingerprint)
        names = [f.name for f in fields]
        columns = [f.values(inputs) if f.per_row else [f.values(inputs)] * inputs.n for f in fields]
        records = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        if fingerprint is not None:
            entity_reasons(records, fingerprint, [f.name for f in featurizer.spec.layout.fields])
        return records
    finally:
        if collecting:
            gc.enable()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
    leakage: dict[int, list[Finding]] | None = None,
) -> ScoreRecords:
    """The records of :func:`build_records`, kept column-wise (``leakage``: the leakage
    detector's findings by row, added to those records)."""
    return ScoreRecords(batch, outputs, featurizer, model, scored_at, fingerprint, leakage)


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
        leakage: dict[int, list[Finding]] | None = None,
    ) -> None:
        self.batch = batch
        self.fingerprint = fingerprint
        self.leakage = leakage or {}
        """Leakage findings by row: those records gain ``is_leak``, ``leakage`` and reasons
        in words (:func:`~morpheus_ext.stages.postprocess.leakage.annotate`)."""
        self.outputs = outputs
        self.featurizer = featurizer
        self.model = model
        self.scored_at = scored_at or _now()
        self._n = len(batch.frame)
        self._dicts: list[dict[str, Any]] | None = None
        self._lines: dict[bool, pa.StringArray] = {}
        """The JSON lines once built (by newline): the incident stage and a sink share them."""
        self._inputs = RecordInputs(batch, outputs, featurizer, model, self.scored_at, fingerprint)

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
            for i, findings in self.leakage.items():
                annotate(self._dicts[i], findings)
        return self._dicts

    # ------------------------------------------------------------------ column-wise
    @property
    def anomalies(self) -> int:
        return int(np.count_nonzero(self.outputs["IS_ANOMALY"]))

    def flagged_rows(self) -> np.ndarray:
        """Rows an incident stage takes: the model's flag, the combined flag (baselines) or
        a leaked secret (sorted)."""
        flagged = np.asarray(self.outputs["IS_ANOMALY"]).reshape(-1).astype(bool)
        if self.fingerprint is not None:
            flagged = flagged | self.fingerprint.combined_anomaly
        if self.leakage:
            flagged = flagged.copy()
            flagged[list(self.leakage)] = True
        return np.flatnonzero(flagged)

    def records_at(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The records of ``rows`` as dicts, without building the others' (parsed from the
        JSON lines, which the sinks then reuse)."""
        if self._dicts is not None:
            return [self._dicts[int(i)] for i in rows]
        if len(rows) == 0:
            return []
        lines = self._lines.get(False)
        if lines is None:
            lines = self._lines.get(True)
        if lines is None:
            lines = self._json_array(False)
        return [orjson.loads(line) for line in pybytes(lines.take(pa.array(rows)))]

    def event_ids(self) -> pa.Array:
        """The records' ``event_id`` values (strings, null where none)."""
        return self._inputs.event_ids()

    def keys(self) -> list[bytes | None]:
        """Kafka keys: the UTF-8 event id (None without one)."""
        return pybytes(self.event_ids())

    def json_lines(self, newline: bool = False) -> list[bytes]:
        """Each record as ``orjson.dumps(record)`` would write it (plus ``\n`` if asked)."""
        if self._n == 0:
            return []
        return pybytes(self._json_array(newline))

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
        cached = self._lines.get(newline)
        if cached is None:
            cached = self._lines[newline] = self._build_json_array(newline)
        return cached

    def _build_json_array(self, newline: bool) -> pa.StringArray:
        inputs = self._inputs
        parts: list[Any] = []
        for i, field in enumerate(_fields(self.fingerprint)):
            parts.append(("{" if i == 0 else ",") + orjson.dumps(field.name).decode() + ":")
            piece = field.json(inputs)
            parts += piece if isinstance(piece, list) else [piece]
        parts.append("}\n" if newline else "}")
        lines = join_texts(*parts)
        by_dict = _reasons_json(inputs).by_dict  # explained rows left to the dict writer
        if len(by_dict):
            said = self._explained_lines(lines.take(by_dict), by_dict, newline)
            lines = replace_at(lines, by_dict, said)
        if self.leakage:  # a few rows: parse, add the findings, serialise again
            rows = np.fromiter(self.leakage, dtype=np.int64, count=len(self.leakage))
            end = b"\n" if newline else b""
            leaked = [
                (orjson.dumps(annotate(orjson.loads(line), self.leakage[int(i)])) + end).decode()
                for i, line in zip(rows.tolist(), pybytes(lines.take(rows)), strict=True)
            ]
            lines = replace_at(lines, rows, leaked)
        return lines

    def _explained_lines(self, lines: pa.Array, rows: np.ndarray, newline: bool) -> list[str]:
        """The records of ``rows`` (``lines``: theirs without reason texts) with their texts.

        For a few rows, Python per reason beats the ~200 Arrow kernel calls of the column-wise
        texts, whose fixed cost does not shrink with the rows: parse the lines, add the texts
        as :func:`build_records` does (:func:`entity_reasons`), serialise again."""
        assert self.fingerprint is not None
        records = [orjson.loads(line) for line in pybytes(lines)]
        names = [f.name for f in self.featurizer.spec.layout.fields]
        entity_reasons(records, self.fingerprint.take(rows), names)
        end = b"\n" if newline else b""
        return [(orjson.dumps(r) + end).decode() for r in records]
