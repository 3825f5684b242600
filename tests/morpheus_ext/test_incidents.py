"""The incident stage's own logic: grouping, bounds, severity, replays and checkpoints."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.postprocess.incidents import (
    IncidentConfig,
    IncidentTracker,
    incident_schema,
    latest_revisions,
    render_incidents,
)
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

T0 = 1_790_000_000.0


def rec(
    i: int,
    user: str | None,
    field: str = "country",
    value: str = "RU",
    score: float = 4.0,
    flagged: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "entity": user,
        "anomaly_score": score,
        "threshold": 1.0,
        "is_anomaly": flagged,
        "reasons": [{"field": field, "value": value, "z": 9.0}],
        **extra,
    }


def tracker(**kw: Any) -> IncidentTracker:
    return IncidentTracker(IncidentConfig(enabled=True, site="hq", **kw))


def final(t: IncidentTracker, *batches: tuple[list[dict[str, Any]], list[float]]) -> list[dict]:
    out: list[dict[str, Any]] = []
    for records, times in batches:
        out += t.observe(records, times)
    out += t.close_all()
    return sorted(latest_revisions(out).values(), key=lambda r: r["incident_id"])


def test_same_entity_same_reasons_within_the_gap_is_one_incident() -> None:
    t = tracker(gap_s=600)
    records = [rec(1, "alice"), rec(2, "alice"), rec(3, "alice", flagged=False)]
    (inc,) = final(t, (records, [T0, T0 + 300, T0 + 301]))
    assert inc["event_count"] == 2 and inc["event_ids"] == ["e1", "e2"]
    assert inc["entities"] == ["alice"] and inc["status"] == "closed"
    assert inc["reasons"] == [{"field": "country", "text": "unusual country=RU", "events": 2}]
    assert inc["first_seen"] == "2026-09-21T14:13:20Z"


def test_a_gap_an_other_signature_or_an_other_entity_opens_a_new_incident() -> None:
    t = tracker(gap_s=600)
    records = [
        rec(1, "alice"),
        rec(2, "alice", field="bytes_out", value=9e9),  # other reasons: other incident
        rec(3, "alice"),  # 20 min after e1: past the gap
        rec(4, "bob"),
    ]
    incs = final(t, (records, [T0, T0 + 10, T0 + 1200, T0 + 1200]))
    assert sorted(tuple(r["event_ids"]) for r in incs) == [("e1",), ("e2",), ("e3",), ("e4",)]


def test_a_shared_source_ip_links_users_into_one_incident() -> None:
    t = tracker()
    records = [rec(1, "alice"), rec(2, "bob"), rec(3, "carol")]
    values = {"src_ip": ["203.0.113.9", "203.0.113.9", "10.0.0.1"]}
    out = t.observe(records, [T0, T0 + 5, T0 + 6], values)
    by_events = sorted((r["event_count"], r["entities"]) for r in latest_revisions(out).values())
    assert by_events == [(1, ["carol"]), (2, ["alice", "bob"])]


def test_state_is_bounded_and_evicted_incidents_are_emitted_closed() -> None:
    t = tracker(max_open=3)
    out = t.observe([rec(i, f"u{i}") for i in range(5)], [T0 + i for i in range(5)])
    assert len(t) == 3
    closed = [r for r in out if r["status"] == "closed"]
    assert sorted(r["event_ids"][0] for r in closed) == ["e0", "e1"]


def test_severity_rules() -> None:
    t = tracker()
    leak = rec(
        1, "alice", is_leak=True, leakage=[{"type": "aws_access_key", "field": "url"}],
        reasons=[{"field": "url", "value": "[REDACTED:aws_access_key]", "leakage":
                  "aws_access_key", "text": "url carries an AWS access key (masked)"}],
    )  # fmt: skip
    out = latest_revisions(
        t.observe(
            [leak, rec(2, "bob", score=1.5), rec(3, "carol", score=25.0)]
            + [rec(10 + i, "dave", score=4.0) for i in range(10)],
            [T0] * 13,
        )
    )
    by_entity = {r["entities"][0]: r for r in out.values()}
    assert by_entity["alice"]["severity"] == "high"  # a credential
    assert by_entity["alice"]["leakage"] == [{"type": "aws_access_key", "field": "url"}]
    assert "AWS access key" in by_entity["alice"]["reasons"][0]["text"]
    assert by_entity["bob"]["severity"] == "low"
    assert by_entity["carol"]["severity"] == "high"  # 25x the threshold
    assert by_entity["dave"]["severity"] == "high"  # medium, 10 events: one up
    campaign = {"campaign_id": "c1", "sites": 3}
    updated = t.set_campaign(by_entity["dave"]["incident_id"], campaign)
    assert updated is not None and updated["severity"] == "critical"
    assert updated["revision"] > by_entity["dave"]["revision"]


def test_records_follow_the_schema_and_render_in_words() -> None:
    t = tracker()
    out = t.observe([rec(1, "alice"), rec(2, None)], [T0, float("nan")])
    out += t.close_all()
    for record in out:
        jsonschema.validate(record, incident_schema())
    text = render_incidents(list(latest_revisions(out).values()))
    assert "unusual country=RU" in text and "z " not in text


def test_a_replayed_event_is_re_emitted_never_counted_twice() -> None:
    t = tracker()
    first = t.observe([rec(1, "alice"), rec(2, "alice")], [T0, T0 + 1])
    again = t.observe([rec(2, "alice")], [T0 + 1])
    assert [r["event_count"] for r in again] == [2]
    assert again[0]["revision"] == first[0]["revision"]  # same content, same revision


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cut=st.floats(0.1, 0.9),
    back=st.integers(0, 40),
)
def test_checkpoint_restore_and_replay_rebuild_the_same_incidents(
    tmp_path_factory: pytest.TempPathFactory, seed: int, cut: float, back: int
) -> None:
    """A crash anywhere: the state checkpointed at some batch, the stream replayed from an
    earlier point (at-least-once): the final incidents equal those of an uninterrupted run,
    and no event is in two of them."""
    rng = random.Random(seed)
    stream, times = [], []
    for i in range(300):
        user = f"u{rng.randrange(12)}"
        field = rng.choice(["country", "device", "hour"])
        stream.append(rec(i, user, field, "x", flagged=rng.random() < 0.4))
        times.append(T0 + i * rng.uniform(0, 120))
    values = {"src_ip": [f"10.0.0.{rng.randrange(8)}" for _ in stream]}

    def run(t: IncidentTracker, lo: int, hi: int, size: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for a in range(lo, hi, size):
            b = min(a + size, hi)
            out += t.observe(stream[a:b], times[a:b], {k: v[a:b] for k, v in values.items()})
        return out

    clean = tracker(gap_s=900)
    reference = latest_revisions(run(clean, 0, 300, 16) + clean.close_all())

    crashed = tracker(gap_s=900)
    k = int(300 * cut)
    emitted = run(crashed, 0, k, 16)
    path = tmp_path_factory.mktemp("inc") / "state.json"
    crashed.checkpoint(path)
    emitted += run(crashed, k, min(300, k + 30), 7)  # folded after the checkpoint, then lost
    restored = tracker(gap_s=900)
    assert restored.restore(path)
    start = max(0, k - back)  # the committed offset is at or before the checkpoint
    emitted += run(restored, start, 300, 11) + restored.close_all()
    latest = latest_revisions(emitted)

    assert {i: r["event_ids"] for i, r in latest.items()} == {
        i: r["event_ids"] for i, r in reference.items()
    }
    ids = [e for r in latest.values() for e in r["event_ids"]]
    assert len(ids) == len(set(ids)) == sum(1 for r in stream if r["is_anomaly"])


def test_a_checkpoint_of_another_site_is_refused(tmp_path: Path) -> None:
    t = tracker()
    t.observe([rec(1, "alice")], [T0])
    t.checkpoint(tmp_path / "s.json")
    other = IncidentTracker(IncidentConfig(enabled=True, site="branch"))
    with pytest.raises(ValueError, match="site 'hq'"):
        other.restore(tmp_path / "s.json")


def test_pipeline_batches_feed_incidents_without_changing_the_score_records() -> None:
    """The stage reads only the flagged rows' records (parsed from the JSON lines, which the
    sink then reuses): the records stay byte-identical to a run without incidents."""
    spec = load_spec("security_events")
    frame = generate(SyntheticConfig(n_events=6000, anomaly_rate=0.05, seed=3))
    engine = InProcessEngine(DEFAULT_REPOSITORY, spec.spec_hash)
    plain = ScoringPipeline(Featurizer(spec), engine)
    t = tracker(link_fields=["src_ip"])
    with_incidents = ScoringPipeline(Featurizer(spec), engine, incidents=t)
    flagged = 0
    emitted: list[dict[str, Any]] = []
    for raw in frame_source(frame, 2048):
        a = plain.process(raw)
        b = with_incidents.process(raw)
        same_time = b.records.jsonl().replace(  # type: ignore[attr-defined]
            f'"scored_at":"{b.records.scored_at}"'.encode(),  # type: ignore[attr-defined]
            f'"scored_at":"{a.records.scored_at}"'.encode(),  # type: ignore[attr-defined]
        )
        assert same_time == a.records.jsonl()  # type: ignore[attr-defined]
        flagged += int(np.count_nonzero([r["is_anomaly"] for r in a.records]))
        emitted += b.incidents
    emitted += t.close_all()
    latest = latest_revisions(emitted)
    assert sum(r["event_count"] for r in latest.values()) == flagged > 0
    assert len(latest) < flagged  # bursts were grouped
    assert any(r["values"].get("src_ip") for r in latest.values())
    assert orjson.loads(orjson.dumps(emitted[0]))["site"] == "hq"
