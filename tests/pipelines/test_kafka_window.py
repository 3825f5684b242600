"""``secureai run`` with ``training_window:``: every scored event lands in the site's window
once, with the score serving gave it; dead letters never do (a real broker, in this process)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.output.training_window import read_window
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.kafka import KafkaScoringRunner
from pipelines.kafka.config import PipelineConfig
from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import (
    kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    synthetic_values,
    wait_covered,
)

pytestmark = pytest.mark.integration
__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name


def test_scored_events_are_kept_in_the_window_and_dead_letters_are_not(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    topics = make_topics(kafka_broker)
    good = list(synthetic_values(6000, seed=5))
    values = [
        *good[:3000],
        b"{not json",
        orjson.dumps({"event_id": "bad", "bytes_in": "x"}),
        *good[3000:],
    ]
    produced = produce(kafka_broker, topics.events, values)
    base = pipeline_config(kafka_broker, topics, model_repository)
    doc = base.model_dump(mode="json")
    doc["training_window"] = {"path": str(tmp_path / "window"), "flush_rows": 1000}
    config = PipelineConfig.model_validate(doc)
    spec = load_spec(config.spec)
    engine = InProcessEngine(model_repository, spec.spec_hash, threads=1)
    pipeline = ScoringPipeline(Featurizer(spec), engine, config.max_event_bytes)
    summary = KafkaScoringRunner(config, pipeline).run(max_events=len(values))

    assert summary.scored == 6000 and summary.window_rows == 6000
    assert summary.window_rows_dropped == 0 and "6000 kept in the training window" in summary.line()
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    window = read_window(tmp_path / "window")
    assert sorted(window["event_id"]) == sorted(orjson.loads(v)["event_id"] for v in good)
    assert set(window["event"]) == set(good)  # the bytes the stream carried
    # the score each event got from serving, as in its score record
    records = {recs[0]["event_id"]: recs[0] for recs in outcome.scores.values()}
    sample = window.sample(50, random_state=0)
    for event_id, score in zip(sample["event_id"], sample["score"], strict=True):
        assert score == pytest.approx(records[event_id]["anomaly_score"], rel=1e-6)
