"""Hostile values in every kind of spec field (Hypothesis): the pipeline never crashes, every
input becomes exactly one score record or one dead letter, and a wrong-typed id, entity or
timestamp is dead-lettered with a reason naming the field (never scored with a Python repr as
its key or entity)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

SPEC = load_spec("security_events")
PIPELINE = ScoringPipeline(Featurizer(SPEC), InProcessEngine(DEFAULT_REPOSITORY, SPEC.spec_hash))
BASE = [
    {k: v for k, v in r.items() if v == v and v is not None}
    for r in generate(SyntheticConfig(n_events=200, seed=3)).to_dict(orient="records")
]
BATCH = 100
EXAMPLES = 25  # x 100 events = 2,500 generated events per field kind

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["", " ", "1e999", "-0", "NaN", "2026-13-45T99:99:99Z", "\u0000", "☃" * 40]),
)
hostile = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=8,
)
FIELDS = {
    "numeric": [f.name for f in SPEC.layout.fields if f.kind == "numeric"],
    "categorical": [f.name for f in SPEC.layout.fields if f.kind == "categorical"],
    "time": [SPEC.timestamp],
    "identity": [SPEC.event_id, *SPEC.entity],
}


def _run(field: str, values: list[Any]) -> tuple[int, list[dict[str, Any]]]:
    events = []
    for i, value in enumerate(values):
        doc = dict(BASE[i % len(BASE)])
        doc[field] = value
        events.append(json.dumps(doc).encode())  # stdlib: ints beyond 64 bits as well
    raw = RawBatch(events, [Origin("hypothesis", 0, i) for i in range(len(events))])
    result = PIPELINE.process(raw)
    positions = sorted(
        [*result.record_positions().tolist(), *(d["offset"] for d in result.dead_letters)]
    )
    assert positions == list(range(len(events))), "every input exactly once"
    return len(result.records), result.dead_letters


@pytest.mark.parametrize("kind", list(FIELDS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every machine: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_values_never_crash_and_every_event_has_one_outcome(kind: str, data: Any) -> None:
    field = data.draw(st.sampled_from(FIELDS[kind]))
    values = data.draw(st.lists(hostile, min_size=BATCH, max_size=BATCH))
    _, dead = _run(field, values)
    for d in dead:
        assert d["reason"] and len(d["reason"]) < 300  # a reason, never the whole event
    if kind == "identity":
        for d in dead:
            value = values[d["offset"]]
            if isinstance(value, dict | list | bool):
                assert f"field '{field}'" in d["reason"], d["reason"]
        scored = {d["offset"] for d in dead}
        wrong = [i for i, v in enumerate(values) if isinstance(v, dict | list | bool)]
        assert all(i in scored for i in wrong), "a wrong-typed id/entity was scored"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("event_id", {"x": 1}, "field 'event_id': expected a string or number"),
        ("user", ["a", "b"], "field 'user': expected a string or number"),
        ("user", {"name": "u1"}, "field 'user': expected a string or number"),
        ("src_ip", True, "field 'src_ip': expected a string or number"),
        ("timestamp", 99999999999999999999, "field 'timestamp': 1e+20 is outside 1970-2199"),
        ("timestamp", -5, "field 'timestamp': -5 is outside 1970-2199"),
    ],
)
def test_wrong_typed_ids_entities_and_timestamps_are_dead_lettered(
    field: str, value: Any, reason: str
) -> None:
    scored, dead = _run(field, [value])
    assert scored == 0 and len(dead) == 1 and reason in dead[0]["reason"], dead


def test_ten_thousand_distinct_bad_events_make_a_bounded_set_of_metric_labels() -> None:
    """Reasons carry details (sizes, fields, values); the ``reason`` metric label is one of a
    fixed set of codes, so 10k distinct bad events cannot create 10k Prometheus series."""
    from morpheus_ext.prometheus_metrics import REASON_CODE_SET, pipeline_metrics

    small = ScoringPipeline(
        Featurizer(SPEC), InProcessEngine(DEFAULT_REPOSITORY, SPEC.spec_hash), max_event_bytes=400
    )
    values: list[bytes] = []
    for i in range(10_000):
        base = dict(BASE[i % len(BASE)])
        kind = i % 5
        if kind == 0:
            values.append(json.dumps({**base, "pad": "x" * (400 + i)}).encode())  # too large
        elif kind == 1:
            values.append(f'{{"event_id": "e{i}", "bytes_in": {i}'.encode())  # invalid JSON
        elif kind == 2:
            values.append(json.dumps({**base, "user": [i]}).encode())  # wrong type
        elif kind == 3:
            values.append(json.dumps({**base, "timestamp": f"day {i}"}).encode())  # bad time
        else:
            values.append(b"\xff" + str(i).encode())  # not UTF-8
    dead: list[dict[str, Any]] = []
    for start in range(0, len(values), 2000):
        chunk = values[start : start + 2000]
        result = small.process(RawBatch(chunk, [Origin("t", 0, j) for j in range(len(chunk))]))
        assert len(result.records) == 0
        dead += result.dead_letters
    assert len(dead) == 10_000 and len({d["reason"] for d in dead}) > 3_000  # distinct details
    metric = pipeline_metrics().dead_letters
    labels = {s.labels["reason"] for m in metric.collect() for s in m.samples}
    assert labels <= REASON_CODE_SET, labels - REASON_CODE_SET
    assert {"too_large", "invalid_json", "wrong_type", "bad_timestamp", "invalid_utf8"} <= labels
