"""Incidents on a real broker: ``kill -9`` mid-stream, restart, and the incidents come out as
an uninterrupted in-process run makes them — no event lost from its incident, none in two."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.postprocess.incidents import (
    IncidentConfig,
    IncidentTracker,
    latest_revisions,
)
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.kafka.config import PipelineConfig
from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import (
    HANG_GUARD_S,
    PipelineProcess,
    committed,
    ensure_topics,
    kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    read_until,
    synthetic_values,
    unique,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name

N_EVENTS = 30_000
SITE = "site-a"


def _incident_settings(path: Path) -> dict[str, Any]:
    return {
        "enabled": True,
        "site": SITE,
        "checkpoint_path": str(path),
        "event_ids_in_record": 5000,  # every id listed: the test checks membership exactly
        "checkpoint_interval_s": 0.3,  # commits (held for a checkpoint) keep up with the stream
    }


def _reference(values: tuple[bytes, ...], repository: Path, settings: dict[str, Any]) -> dict:
    """The incidents of one uninterrupted in-process run over the same events, in order."""
    spec = load_spec("security_events")
    tracker = IncidentTracker(IncidentConfig.model_validate(settings))
    pipeline = ScoringPipeline(
        Featurizer(spec), InProcessEngine(repository, spec.spec_hash), incidents=tracker
    )
    out: list[dict[str, Any]] = []
    for lo in range(0, len(values), 4096):
        chunk = list(values[lo : lo + 4096])
        origins = [Origin("ref", 0, lo + i) for i in range(len(chunk))]
        out += pipeline.process(RawBatch(chunk, origins)).incidents
    return latest_revisions(out + tracker.close_all())


def test_incidents_survive_kill9_without_duplicates(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    topics = make_topics(kafka_broker, partitions=1)
    incidents_topic = unique("incidents")
    ensure_topics(kafka_broker.bootstrap, {incidents_topic: 1})
    base = pipeline_config(
        kafka_broker,
        topics,
        model_repository,
        batch_size=1024,
        max_inflight_batches=4,
        incidents_topic=incidents_topic,
    )
    settings = _incident_settings(tmp_path / "incidents.json")
    config = PipelineConfig.model_validate({**base.model_dump(mode="json"), "incidents": settings})
    path = write_config(config, tmp_path / "pipeline.yml")
    values = synthetic_values(N_EVENTS)

    first = PipelineProcess(path, tmp_path / "first.log")
    first.wait_for("assigned")
    producer = threading.Thread(  # still producing when the kill lands
        target=produce, args=(kafka_broker, topics.events, values, 6_000.0), daemon=True
    )
    producer.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while sum(committed(kafka_broker, topics.group, topics.events, 1).values()) < N_EVENTS // 3:
        assert time.monotonic() < deadline, "hang guard: offsets never advanced"
        time.sleep(0.02)
    first.kill9()
    at_kill = sum(committed(kafka_broker, topics.group, topics.events, 1).values())
    assert at_kill < N_EVENTS, "the kill must land mid-stream"
    assert (tmp_path / "incidents.json").exists(), "checkpointed before the commits"

    second = PipelineProcess(path, tmp_path / "second.log")
    producer.join(HANG_GUARD_S)
    deadline = time.monotonic() + HANG_GUARD_S
    while sum(committed(kafka_broker, topics.group, topics.events, 1).values()) < N_EVENTS:
        assert time.monotonic() < deadline, "hang guard: the restart never caught up"
        time.sleep(0.05)
    assert second.terminate() == 0, second.output()[-2000:]
    assert "incidents: restored" in second.output()

    scores = read_until(kafka_broker, [topics.scores], lambda m: len(m) >= N_EVENTS)
    flagged = {r["event_id"] for r in (orjson.loads(m.value) for m in scores) if r["is_anomaly"]}

    def covered(messages: list[Any]) -> bool:
        latest = latest_revisions(orjson.loads(m.value) for m in messages)
        return {e for r in latest.values() for e in r["event_ids"]} >= flagged

    emitted = read_until(kafka_broker, [incidents_topic], covered)
    latest = latest_revisions(orjson.loads(m.value) for m in emitted)

    members = [e for r in latest.values() for e in r["event_ids"]]
    assert len(members) == len(set(members)), "an event in two incidents"
    assert set(members) == flagged, "a flagged event in no incident"
    assert sum(r["event_count"] for r in latest.values()) == len(flagged)
    reference = _reference(values, model_repository, settings)
    assert {i: r["event_ids"] for i, r in latest.items()} == {
        i: r["event_ids"] for i, r in reference.items()
    }


def test_an_idle_stream_commits_its_last_offsets_without_waiting_for_the_interval(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    """At-least-once commits wait for an incidents checkpoint, paced by
    ``checkpoint_interval_s`` under load. When the input goes idle the held offsets commit
    at once (with a checkpoint if the incidents changed): here the interval is an hour, and
    both bursts are committed while the pipeline keeps running."""
    topics = make_topics(kafka_broker, partitions=1)
    incidents_topic = unique("incidents")
    ensure_topics(kafka_broker.bootstrap, {incidents_topic: 1})
    base = pipeline_config(
        kafka_broker, topics, model_repository, batch_size=1024, incidents_topic=incidents_topic
    )
    settings = {**_incident_settings(tmp_path / "incidents.json"), "checkpoint_interval_s": 3600}
    config = PipelineConfig.model_validate({**base.model_dump(mode="json"), "incidents": settings})
    pipeline = PipelineProcess(write_config(config, tmp_path / "pipeline.yml"), tmp_path / "p.log")
    pipeline.wait_for("assigned")
    values = synthetic_values(6000)
    for upto in (3000, 6000):  # two bursts, each followed by silence
        produce(kafka_broker, topics.events, values[upto - 3000 : upto])
        deadline = time.monotonic() + HANG_GUARD_S
        while sum(committed(kafka_broker, topics.group, topics.events, 1).values()) < upto:
            assert time.monotonic() < deadline, f"offsets held: {pipeline.output()[-1500:]}"
            time.sleep(0.05)
    assert (tmp_path / "incidents.json").exists()  # the commits came with a checkpoint
    assert pipeline.terminate() == 0, pipeline.output()[-2000:]
