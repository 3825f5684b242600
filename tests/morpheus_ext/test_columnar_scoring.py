"""The column-wise scoring path gives what the per-event path gives.

* decode: the Arrow (batch) decode yields the same frame as orjson per value, and any batch it
  cannot vouch for goes down the per-value path (same rejects, same reasons);
* score records: ``ScoreRecords.json_lines()`` is byte for byte ``orjson.dumps`` of the dicts
  :func:`build_records` makes, and those validate against the JSON Schema;
* consumed batches: origins built lazily equal the eager ones.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.kafka_source import ConsumedBatch
from morpheus_ext.stages.input.sources import Origin, RawBatch, frame_source
from morpheus_ext.stages.output.files import JsonlSink
from morpheus_ext.stages.output.kafka_sink import score_messages
from morpheus_ext.stages.postprocess.fingerprint.reason_fragments import (
    json_number_texts,
    needs_escape,
)
from morpheus_ext.stages.postprocess.record_values import BatchColumns, epoch_seconds
from morpheus_ext.stages.postprocess.records import (
    ScoreRecords,
    build_records,
    build_score_records,
    count_anomalies,
    score_record_schema,
)
from morpheus_ext.stages.preprocess.decode import _decode_columnar, decode_batch, decode_values
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec("security_events")
TS = ("timestamp",)

ODD_EVENTS = [
    {
        "event_id": 'we"ird\\id\tx',
        "timestamp": "2026-11-03T06:17:11Z",
        "event_type": "auth",
        "user": "ünïcødé ☃",
        "country": 'K"P',
        "bytes_in": 1.5e18,
    },
    {
        "event_id": 12345,
        "timestamp": "2026-11-03T06:17:11.5+02:00",
        "event_type": "netflow",
        "dst_port": "443",
        "bytes_in": 5,
    },
    {
        "event_id": "x",
        "timestamp": "2026-11-03T06:17:11",
        "event_type": "netflow",
        "dst_port": 443.0,
    },
    {"event_id": "no-entity", "timestamp": "2026-11-03T23:59:59.999Z", "event_type": "auth"},
]


@pytest.fixture(scope="module")
def values() -> list[bytes]:
    frame = generate(SyntheticConfig(n_events=3000, seed=11))
    return [v for raw in frame_source(frame, 4096) for v in raw.values]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> InProcessEngine:
    dest = tmp_path_factory.mktemp("models") / "triton_model_repository"
    shutil.copytree(REPO_ROOT / "triton_model_repository", dest)
    return InProcessEngine(dest, SPEC.spec_hash, threads=1)


def _raw(values: list[bytes]) -> RawBatch:
    return RawBatch(values, [Origin("t", 0, i) for i in range(len(values))])


def _same_decode(values: list[bytes]) -> bool:
    """Same frame and rejects as the per-value path; returns whether Arrow decoded it."""
    fast = _decode_columnar(values, 256 * 1024, TS) is not None
    got, want = decode_batch(_raw(values), string_columns=TS), decode_values(_raw(values))
    with warnings.catch_warnings():  # None (Arrow) vs NaN (pandas) for absent keys: both null
        warnings.simplefilter("ignore", FutureWarning)
        pd.testing.assert_frame_equal(got.frame, want.frame)
    assert [(r.position, r.reason) for r in got.rejects] == [
        (r.position, r.reason) for r in want.rejects
    ]
    assert got.positions.tolist() == want.positions.tolist()
    return fast


def test_columnar_decode_matches_per_value(values: list[bytes]) -> None:
    assert _same_decode(values)
    odd = [orjson.dumps(e) for e in ODD_EVENTS]
    assert _same_decode(values[:50] + odd[:1] + odd[2:])
    assert not _same_decode(values[:50] + odd)  # a numeric event id among strings: per value


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"   ",
        b'{"a":NaN}',
        b'{"bytes_in":Infinity}',
        b"[1]",
        b"null",
        b'{"event_id":"x","user":{"a":1}}',
        b'{"event_id":"x","country":["US"]}',
        b'{"event_id":"x","timestamp":"\xff\xfe"}',
        b'{"a":1}{"b":2}',
        b'{"a":1}\n{"b":2}',
        b'  {"a":1}',
        b'{"a":1,"a":2}',
        b'{"timestamp":1700000000}',
        b'{"bytes_in":18446744073709551615}',
        b'{"first_seen":"2026-11-03"}',
        b'{"event_id":"x","bytes_out":"huge"}',
    ],
)
def test_columnar_decode_falls_back_on_anything_odd(values: list[bytes], bad: bytes) -> None:
    assert not _same_decode([*values[:40], bad, *values[40:80]])


def test_columnar_decode_bad_first_value(values: list[bytes]) -> None:
    """The first value also orders the columns: a bad one there must fall back, not raise."""
    bad = b'{"event_id":"x","timestamp":"2026-11-03T06:17:11Z","user":"\xff"}'
    assert not _same_decode([bad, *values[:20]])


def test_score_records_json_is_orjson_of_the_dicts(
    values: list[bytes], engine: InProcessEngine
) -> None:
    featurizer = Featurizer(SPEC)
    validator = jsonschema.Draft202012Validator(score_record_schema())  # checked once
    for batch in (values, values[:30] + [orjson.dumps(e) for e in ODD_EVENTS]):
        fb = featurizer.transform(decode_batch(_raw(batch), string_columns=TS).frame)
        outputs = engine.infer(fb.tensor)
        at = "2026-11-24T00:00:00.000+00:00"
        records = build_score_records(fb, outputs, featurizer, engine.info, scored_at=at)
        dicts = build_records(fb, outputs, featurizer, engine.info, scored_at=at)
        assert isinstance(records, ScoreRecords) and len(records) == len(dicts)
        assert records.json_lines() == [orjson.dumps(d) for d in dicts]
        assert records.jsonl() == b"".join(orjson.dumps(d) + b"\n" for d in dicts)
        assert records == dicts and records[0] == dicts[0] and list(records) == dicts
        assert count_anomalies(records) == count_anomalies(dicts)
        assert score_messages(records) == score_messages(dicts)
        for line in records.json_lines():
            validator.validate(orjson.loads(line))
    odd = {d["event_id"]: d for d in dicts}
    assert odd["12345"]["event_time"] == "2026-11-03T06:17:11.5+02:00"
    assert odd["no-entity"]["entity"] is None  # not "nan"


def test_score_records_json_with_per_row_thresholds_versions_and_epoch_times(
    values: list[bytes], engine: InProcessEngine
) -> None:
    """Constant thresholds/versions are spelled once per batch; varying ones per row. Event
    times given as epoch numbers (mixed with strings) are quoted as the featurizer read them."""
    featurizer = Featurizer(SPEC)
    mixed = [orjson.loads(v) for v in values[:40]]
    for i, event in enumerate(mixed[:10]):
        event["timestamp"] = 1_793_686_631 + 3600 * i if i % 2 else 1_793_686_631_000
    fb = featurizer.transform(decode_batch(_raw([orjson.dumps(e) for e in mixed])).frame)
    outputs = dict(engine.infer(fb.tensor))
    n = len(fb)
    outputs["THRESHOLD"] = outputs["THRESHOLD"] + np.arange(n, dtype=np.float32).reshape(-1, 1)
    outputs["MODEL_VERSION"] = np.arange(n, dtype=np.int64).reshape(-1, 1) % 3 + 1
    at = "2026-11-24T00:00:00.000+00:00"
    records = build_score_records(fb, outputs, featurizer, engine.info, scored_at=at)
    dicts = build_records(fb, outputs, featurizer, engine.info, scored_at=at)
    assert records.json_lines() == [orjson.dumps(d) for d in dicts]
    assert len({d["threshold"] for d in dicts}) == n
    assert [d["model"]["version"] for d in dicts[:4]] == [1, 2, 3, 1]
    # The records quote the times the featurizer parsed (numbers included), not a re-parse
    # of the column that would miss the numbers.
    secs = BatchColumns(fb, "timestamp").epoch_seconds()
    np.testing.assert_array_equal(secs, fb.times)
    assert (
        np.isfinite(secs[:10]).all() and np.isnan(epoch_seconds(fb.frame["timestamp"])[:10]).any()
    )


def test_jsonl_sink_writes_score_records(
    values: list[bytes], engine: InProcessEngine, tmp_path: Path
) -> None:
    featurizer = Featurizer(SPEC)
    fb = featurizer.transform(decode_batch(_raw(values[:200]), string_columns=TS).frame)
    records = build_score_records(fb, engine.infer(fb.tensor), featurizer, engine.info)
    with JsonlSink(tmp_path / "out.jsonl") as sink:
        sink.write(records)
        sink.write(records.dicts()[:3])
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == records.dicts() + records.dicts()[:3]


def test_consumed_batch_origins_are_built_lazily_and_in_order() -> None:
    messages = [
        Message(topic="t", partition=i % 3, offset=100 + i, value=b"{}" if i != 4 else None)
        for i in range(10)
    ]
    batch = ConsumedBatch()
    batch.extend(messages[:6])
    assert batch.raw.origins[:2] == [Origin("t", 0, 100), Origin("t", 1, 101)]
    batch.extend(messages[6:])
    assert batch.raw.origins == [Origin("t", i % 3, 100 + i) for i in range(10)]
    assert batch.raw.values[4] == b""
    assert batch.first_offsets == {("t", 0): 100, ("t", 1): 101, ("t", 2): 102}
    assert batch.next_offsets == {("t", 0): 110, ("t", 1): 108, ("t", 2): 109}
    assert batch.without({("t", 1)}).raw.origins == [
        Origin("t", i % 3, 100 + i) for i in range(10) if i % 3 != 1
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.none() | st.text(max_size=12), max_size=30),
    st.integers(0, 5),
    st.booleans(),
)
def test_needs_escape_answers_what_the_regex_does(
    values: list[str | None], start: int, large: bool
) -> None:
    """The byte-level check of the JSON writers is exact, on slices and large strings too."""
    arr = pa.array(values, type=pa.large_string() if large else pa.string())[start:]
    regex = bool(pc.any(pc.match_substring_regex(arr, r'[\x00-\x1f"\\]')).as_py())
    assert needs_escape(arr) is regex


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40))
def test_number_texts_are_orjson_spellings(values: list[float]) -> None:
    """The comma-split of one ``orjson.dumps`` of the array spells each number as dumping it
    alone does (NaN and infinities as ``null``)."""
    got = json_number_texts(np.array(values, dtype=np.float64)).to_pylist()
    assert got == [orjson.dumps(v).decode() for v in values]
