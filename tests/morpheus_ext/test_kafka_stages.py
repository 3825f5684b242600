"""Kafka stages, config and CLI without a broker: encoding, client configs, validation, errors."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaError

from morpheus_ext.config_io import ConfigError
from morpheus_ext.stages.input.kafka_source import ConsumedBatch, consumer_config
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.output.files import dead_letter_record
from morpheus_ext.stages.output.kafka_sink import (
    KafkaSinkStage,
    dead_letter_key,
    fit_dead_letter,
    producer_config,
    score_messages,
)
from pipelines.cli_kafka import _key_of
from pipelines.cli_kafka import main as kafka_cli
from pipelines.kafka.config import PipelineConfig, load_pipeline_config
from pipelines.morpheus_pipeline import morpheus_available
from pipelines.top_alerts import render_top

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config(**kafka: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["events"], **kafka}}
    )


def test_shipped_pipeline_config_loads() -> None:
    config = load_pipeline_config(REPO_ROOT / "configs" / "pipeline.yml")
    assert config.kafka.topics == ["security-events"]
    assert not config.kafka.exactly_once
    assert config.inference.engine == "inprocess"


def test_client_options_pass_through_but_guarantees_stay() -> None:
    config = _config(
        common={"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
        consumer={"session.timeout.ms": 6000},
        producer={"compression.type": "zstd"},
    )
    c = consumer_config("b:1", "g", config.kafka.consumer_options())
    p = producer_config("b:1", config.kafka.producer_options(), "tx-1")
    assert c["security.protocol"] == p["security.protocol"] == "SASL_SSL"
    assert c["session.timeout.ms"] == 6000 and p["compression.type"] == "zstd"
    assert c["enable.auto.commit"] is False and c["enable.auto.offset.store"] is False
    assert p["enable.idempotence"] is True and p["acks"] == "all"
    assert p["transactional.id"] == "tx-1"
    assert "transactional.id" not in producer_config("b:1", {})


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("consumer", "enable.auto.commit"),
        ("producer", "enable.idempotence"),
        ("common", "group.id"),
        ("producer", "transactional.id"),
    ],
)
def test_managed_keys_are_refused_with_one_line(section: str, key: str) -> None:
    with pytest.raises(ValueError, match="managed by the pipeline"):
        _config(**{section: {key: "x"}})


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TEST_PASSWORD", "s3cret")
    config = _config(common={"sasl.password": "${KAFKA_TEST_PASSWORD}"})
    assert config.kafka.common["sasl.password"] == "s3cret"
    monkeypatch.delenv("KAFKA_TEST_PASSWORD")
    with pytest.raises(ValueError, match=r"KAFKA_TEST_PASSWORD\}, which is not set"):
        _config(common={"sasl.password": "${KAFKA_TEST_PASSWORD}"})


def test_output_topics_must_differ_from_inputs(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("kafka: {bootstrap_servers: 'b:1', topics: [events], scores_topic: events}\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(path)
    assert "\n" not in str(err.value) and "must differ" in str(err.value)


def test_score_messages_are_keyed_by_event_id() -> None:
    records = [{"event_id": "evt-1", "anomaly_score": 0.5}, {"event_id": None}]
    (k1, v1), (k2, _) = score_messages(records)
    assert k1 == b"evt-1" and orjson.loads(v1)["anomaly_score"] == 0.5
    assert k2 is None


def test_dead_letter_keeps_small_originals_whole() -> None:
    record = dead_letter_record(b"{not json", Origin("events", 2, 17), "invalid JSON", "decode")
    assert dead_letter_key(record) == b"events/2/17"
    assert orjson.loads(fit_dead_letter(record, 10_000))["raw"] == "{not json"


def test_oversized_dead_letter_keeps_prefix_size_and_hash() -> None:
    original = b"\xff" + b"x" * 1_048_575  # 1 MiB, not UTF-8 -> raw_b64
    record = dead_letter_record(original, Origin("events", 0, 5), "too big", "decode")
    encoded = fit_dead_letter(record, 100_000)
    assert len(encoded) <= 100_000
    doc = orjson.loads(encoded)
    assert doc["raw_truncated"] is True and doc["raw_size"] == len(original)
    assert doc["raw_sha256"] == hashlib.sha256(original).hexdigest()
    assert original.startswith(base64.b64decode(doc["raw_b64"]))
    assert (doc["source"], doc["partition"], doc["offset"], doc["reason"]) == (
        "events",
        0,
        5,
        "too big",
    )


def test_a_bare_fatal_error_is_a_fence_only_when_the_recorded_cause_says_so() -> None:
    """Once fenced, librdkafka fails ``produce`` with a bare ``_FATAL``; the cause arrives
    only through error_cb (seen flaky in CI: the replica stopped with "Local: Fatal error"
    instead of the line naming ``kafka.transactional_id``). No broker: callbacks are fed."""
    bare = KafkaError(KafkaError._FATAL)
    sink = KafkaSinkStage(producer_config("127.0.0.1:1", {}, transactional_id="t"))
    assert not sink.is_fenced(bare)  # no cause recorded yet
    assert sink.is_fenced(KafkaError(KafkaError._FENCED))
    assert not sink.is_fenced(KafkaError(KafkaError._TRANSPORT))
    sink._on_error(KafkaError(KafkaError._TRANSPORT, "connect refused"))  # not fatal: ignored
    assert sink.fatal_error() is None
    fenced = "Fatal error: Local: This instance has been fenced by a newer instance: epoch 3"
    sink._on_error(KafkaError(KafkaError._FATAL, fenced, fatal=True))
    assert sink.is_fenced(bare)

    other = KafkaSinkStage(producer_config("127.0.0.1:1", {}, transactional_id="u"))
    denied = "Fatal error: Broker: Transactional Id authorization failed"
    other._on_error(KafkaError(KafkaError._FATAL, denied, fatal=True))
    assert not other.is_fenced(bare)


def test_a_commit_the_coordinator_never_answers_stops_in_one_line() -> None:
    """Seen in make test: a fenced replica whose EndTxn Tansu answers by dropping the
    connection got retriable timeouts forever. ``_commit_transaction`` retries them for at most
    twice the transaction timeout, then stops with one line naming the likely causes.
    ``FakeUnansweredSink`` stands in for the producer (no broker)."""
    import threading

    from confluent_kafka import KafkaException

    from morpheus_ext.prometheus_metrics import pipeline_metrics
    from pipelines.kafka.delivery import ExactlyOnce
    from pipelines.kafka.summary import KafkaPipelineError, RunSummary

    class FakeUnansweredSink:
        calls = 0

        def commit_transaction(self, timeout_s: float) -> None:
            self.calls += 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))

    sink = FakeUnansweredSink()
    kafka = _config(transaction_timeout_s=0.05, exactly_once=True).kafka
    mode = ExactlyOnce(kafka, None, sink, RunSummary(), pipeline_metrics(), threading.Event())  # type: ignore[arg-type]
    with pytest.raises(KafkaPipelineError) as caught:
        mode._commit_transaction()
    line = str(caught.value)
    assert "\n" not in line and "not committed within 0.1 s" in line
    assert "kafka.transactional_id" in line and "fenced" in line
    assert sink.calls >= 2  # retried before giving up


def test_consumed_batch_drops_revoked_partitions() -> None:
    batch = ConsumedBatch(
        RawBatch([b"a", b"b", b"c"], [Origin("t", 0, 5), Origin("t", 1, 9), Origin("t", 0, 6)]),
        [1, 2, 3],
        {("t", 0): 5, ("t", 1): 9},
        {("t", 0): 7, ("t", 1): 10},
    )
    kept = batch.without({("t", 1)})
    assert kept.raw.values == [b"a", b"c"] and kept.timestamps_ms == [1, 3]
    assert kept.first_offsets == {("t", 0): 5} and kept.next_offsets == {("t", 0): 7}


def test_tail_table_shows_highest_scores_with_reasons() -> None:
    rec = {
        "event_id": "evt-9",
        "entity": "alice",
        "anomaly_score": 9.5,
        "threshold": 1.0,
        "is_anomaly": True,
        "reasons": [{"field": "country", "value": "KP", "z": 41.2}],
    }
    low = {**rec, "event_id": "evt-1", "anomaly_score": 0.1, "is_anomaly": False}
    text = render_top([(0.1, 1, low), (9.5, 2, rec)], seen=2, anomalies=1)
    lines = text.splitlines()
    assert "evt-9" in lines[2] and "country=KP (z 41.2)" in lines[2]
    assert "evt-1" in lines[3]


def test_tail_table_ranks_by_combined_score_and_shows_reasons_in_words() -> None:
    said = "country=BR never seen for alice in 30 days (84 events; usual: US)"
    base = {"entity": "alice", "threshold": 1.0, "is_anomaly": False, "combined_anomaly": False}
    quiet = {
        **base,
        "event_id": "evt-1",
        "anomaly_score": 0.9,
        "combined_score": -0.1,
        "reasons": [{"field": "device", "value": "mac", "z": 2.0}],
    }
    new_country = {
        **base,
        "event_id": "evt-2",
        "anomaly_score": 0.2,
        "combined_score": 3.4,
        "combined_anomaly": True,
        "reasons": [{"field": "country", "value": "BR", "z": 0.4, "text": said}],
    }
    top = [(r["combined_score"], i, r) for i, r in enumerate((quiet, new_country))]
    lines = render_top(top, seen=2, anomalies=1).splitlines()
    assert "combined score" in lines[0] and "combined" in lines[1]
    assert "evt-2" in lines[2] and said in lines[2] and " ! " in lines[2] and "3.40" in lines[2]
    assert "evt-1" in lines[3] and "device=mac (z 2.0)" in lines[3]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert kafka_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("secureai: error: ") and "\n" not in err, err
    return err


@pytest.mark.skipif(morpheus_available(), reason="Morpheus is installed here")
def test_morpheus_engine_without_morpheus_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _one_line_error(
        capsys, ["run", "--config", str(REPO_ROOT / "configs/pipeline.yml"), "--engine", "morpheus"]
    )
    assert "conda" in err and "nvcr.io/nvidia/morpheus" in err


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "not found" in _one_line_error(capsys, ["run", "--config", str(tmp_path / "no.yml")])
    assert "config file not found" in _one_line_error(
        capsys, ["tail", "--config", str(tmp_path / "none.yml")]
    )
    missing = str(tmp_path / "events.jsonl")
    assert "events file not found" in _one_line_error(
        capsys, ["produce", "--bootstrap-servers", "127.0.0.1:1", "--file", missing]
    )


def test_unreachable_broker_fails_fast_with_one_line() -> None:
    from confluent_kafka import KafkaException

    from morpheus_ext.stages.input.kafka_source import KafkaSourceStage

    source = KafkaSourceStage(consumer_config("127.0.0.1:1", "g", {}), ["events"])
    try:
        with pytest.raises(KafkaException) as err:
            source.check_reachable(timeout_s=1.0)
    finally:
        source.close()
    text = err.value.args[0].str()
    assert text.startswith("no Kafka broker answered") and "\n" not in text


def test_produce_keys_by_event_id_or_by_entity() -> None:
    auth = orjson.dumps({"event_id": "e1", "user": "alice", "src_ip": "10.0.0.1"})
    flow = orjson.dumps({"event_id": "e2", "user": None, "src_ip": "10.0.0.9"})
    assert _key_of(auth) == b"e1" and _key_of(flow) == b"e2"
    assert _key_of(auth, "entity") == b"alice"  # first non-null entity column of the spec
    assert _key_of(flow, "entity") == b"10.0.0.9"
    assert _key_of(b"{broken", "entity") is None and _key_of(b"[1]") is None
