"""The Kafka runner against a real broker (Tansu), in this process.

Every produced event must end in exactly one place: a score record (keyed by its event id) or a
dead letter (with its origin and reason). Outputs are matched back to the produced events by
event id / origin, never by counting end offsets (Tansu's high watermark is unreliable).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.base import InferenceEngine, ModelInfo
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.output.kafka_sink import KafkaSinkStage
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.kafka import KafkaScoringRunner, RunSummary
from pipelines.kafka.config import PipelineConfig
from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import (
    HANG_GUARD_S,
    Topics,
    committed,
    kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    synthetic_values,
    unique,
    wait_covered,
)

pytestmark = pytest.mark.integration
__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name

POISON: dict[str, bytes | None] = {
    "invalid JSON": b'{"event_id": "p1", "timestamp": ',
    "wrong types": orjson.dumps(
        {
            "event_id": "p2",
            "timestamp": "2026-11-01T00:00:00Z",
            "event_type": "auth",
            "bytes_in": "lots",
        }
    ),
    "missing fields": orjson.dumps({"timestamp": "2026-11-01T00:00:00Z", "event_type": "auth"}),
    "1 MB message": b'{"event_id":"p4","pad":"' + b"x" * 1_048_576 + b'"}',
    "invalid UTF-8": b'{"event_id":"p5","user":"\xff\xfe"}',
    "empty value": b"",
    "no value": None,
    "not an object": b"[1, 2, 3]",
}
REASONS = {
    "invalid JSON": "invalid JSON",
    "wrong types": "field 'bytes_in': expected a number",
    "missing fields": "missing required field 'event_id'",
    "1 MB message": "exceeds the 262144-byte limit",
    "invalid UTF-8": "invalid UTF-8",
    "empty value": "empty message",
    "no value": "empty message",
    "not an object": "expected a JSON object",
}


@pytest.fixture(scope="module")
def engine(model_repository: Path) -> InProcessEngine:
    return InProcessEngine(model_repository, load_spec("security_events").spec_hash, threads=1)


def run_inprocess(
    config: PipelineConfig,
    engine: InferenceEngine,
    max_events: int,
    **runner_kwargs: Any,
) -> RunSummary:
    pipeline = ScoringPipeline(Featurizer(load_spec(config.spec)), engine, config.max_event_bytes)
    return KafkaScoringRunner(config, pipeline, **runner_kwargs).run(max_events=max_events)


def with_poison(values: tuple[bytes, ...], every: int) -> tuple[list[bytes | None], dict[int, str]]:
    """Good events with the poison set spread through them; returns values and poison kinds."""
    out: list[bytes | None] = []
    kinds: dict[int, str] = {}
    poison = list(POISON.items())
    for i, v in enumerate(values):
        out.append(v)
        if i % every == every - 1 and i // every < len(poison):
            kind, bad = poison[i // every]
            kinds[len(out)] = kind
            out.append(bad)
    return out, kinds


# --------------------------------------------------------------------------- 100k, both modes
@pytest.mark.slow
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_every_event_has_one_score_record_or_dead_letter(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine, exactly_once: bool
) -> None:
    topics = make_topics(kafka_broker)
    values, _ = with_poison(synthetic_values(100_000), every=10_000)
    produced = produce(kafka_broker, topics.events, values)
    config = pipeline_config(
        kafka_broker, topics, model_repository, batch_size=4096, exactly_once=exactly_once
    )

    summary = run_inprocess(config, engine, max_events=len(values))

    assert summary.events_in == len(values) and summary.drained
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    counts = np.array([outcome.count(i) for i in range(len(values))])
    if exactly_once:
        assert (counts == 1).all(), f"{(counts != 1).sum()} events without exactly one output"
    else:
        assert (counts >= 1).all()
        assert (counts == 1).all(), "no crash and no rebalance: nothing may be replayed"
    assert len(outcome.dead) == len(POISON)
    assert len(outcome.scores) == 100_000
    # Offsets: the group resumes after the last event of every partition.
    done = committed(kafka_broker, topics.group, topics.events, topics.partitions)
    last = {p: max(o) for p, o in produced.offsets_by_partition().items()}
    assert done == {p: o + 1 for p, o in last.items()}


# --------------------------------------------------------------------------- poison input
def test_poison_goes_to_the_dead_letter_topic_and_the_pipeline_keeps_going(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    topics = make_topics(kafka_broker)
    values, kinds = with_poison(synthetic_values(4000), every=400)  # good events after each
    produced = produce(kafka_broker, topics.events, values)
    config = pipeline_config(kafka_broker, topics, model_repository, batch_size=512)

    summary = run_inprocess(config, engine, max_events=len(values))

    outcome, _ = wait_covered(kafka_broker, produced, topics)
    assert summary.rejected == len(POISON) and summary.scored == 4000
    assert all(outcome.count(i) == 1 for i in range(len(values)))
    assert set(outcome.dead) == set(kinds), "exactly the poison is dead-lettered"
    by_kind = {}
    for i, kind in kinds.items():
        (letter,) = outcome.dead[i]
        by_kind[kind] = letter
        assert REASONS[kind] in letter["reason"], (kind, letter["reason"])
        assert letter["source"] == topics.events and letter["stage"] in ("decode", "featurize")
        assert produced.index_of(letter["partition"], letter["offset"]) == i
    # Original bytes come back: whole when small, prefix + size + sha256 when huge.
    assert by_kind["invalid JSON"]["raw"] == b'{"event_id": "p1", "timestamp": '.decode()
    assert "raw_b64" in by_kind["invalid UTF-8"]
    big = by_kind["1 MB message"]
    assert big["raw_truncated"] and big["raw_size"] == len(POISON["1 MB message"] or b"")


# --------------------------------------------------------------------------- inference outage
class FlakyEngine:
    """Named fake engine: the real in-process engine behind a switch that makes every call fail.

    Stands in for an unreachable inference backend (the Triton engine raises the same way once
    its own retries give up); the broker, consumer group and offsets are real.
    """

    def __init__(self, inner: InProcessEngine) -> None:
        self.inner = inner
        self.info: ModelInfo = inner.info
        self.down = threading.Event()
        self.failures = 0

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if self.down.is_set():
            self.failures += 1
            raise ConnectionError("inference backend unavailable (test outage)")
        return self.inner.infer(tensor)

    def submit(self, tensor: np.ndarray) -> Future[dict[str, np.ndarray]]:
        fut: Future[dict[str, np.ndarray]] = Future()
        try:
            fut.set_result(self.infer(tensor))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_inference_outage_of_10s_loses_nothing_and_commits_nothing_unscored(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    topics = make_topics(kafka_broker)
    values = list(synthetic_values(10_000))
    produced = produce(kafka_broker, topics.events, values)
    # max.poll.interval.ms (4 s) < the outage (10 s): the consumer is only kept in the group
    # because the runner keeps polling while it holds the batch.
    config = pipeline_config(
        kafka_broker,
        topics,
        model_repository,
        batch_size=1000,
        consumer={"max.poll.interval.ms": 4000},
    )
    flaky = FlakyEngine(engine)
    flaky.down.set()
    errors_before = (
        REGISTRY.get_sample_value(
            "secureai_inference_errors_total",
            {"engine": "inprocess", "error": "ConnectionError"},
        )
        or 0.0
    )
    result: dict[str, RunSummary] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "summary", run_inprocess(config, flaky, max_events=len(values))
        ),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while flaky.failures < 1:
        assert time.monotonic() < deadline and thread.is_alive(), "runner never called infer"
        time.sleep(0.05)
    outage_ends = time.monotonic() + 10.0
    while time.monotonic() < outage_ends:  # down for 10 s; offsets must not move meanwhile
        assert committed(kafka_broker, topics.group, topics.events, topics.partitions) == {}
        assert thread.is_alive()
        time.sleep(0.5)
    assert REGISTRY.get_sample_value("secureai_inference_up", {"engine": "inprocess"}) == 0.0
    flaky.down.clear()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive()

    summary = result["summary"]
    assert summary.inference_failures == flaky.failures >= 3  # backoff, not a busy loop
    assert summary.rebalances == 1, "the group session expired during the outage"
    assert summary.events_in == len(values) and summary.left_unscored == 0
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    assert all(outcome.count(i) == 1 for i in range(len(values)))
    assert sum(committed(kafka_broker, topics.group, topics.events, 4).values()) == len(values)
    errors_after = REGISTRY.get_sample_value(
        "secureai_inference_errors_total", {"engine": "inprocess", "error": "ConnectionError"}
    )
    assert errors_after == errors_before + flaky.failures
    assert REGISTRY.get_sample_value("secureai_inference_up", {"engine": "inprocess"}) == 1.0


# --------------------------------------------------------------------------- transactions
class AbortThirdTransaction(KafkaSinkStage):
    """The real transactional producer, except that the 3rd commit fails (abortable).

    A broker cannot be made to fail one EndTxn on demand; the failure is injected at the client
    call, after the transaction's records and offsets were really sent to the broker.
    """

    def __init__(self, config: dict[str, Any], probe: Any) -> None:
        super().__init__(config)
        self.probe = probe
        self.commits = 0
        self.before: dict[int, int] | None = None
        self.after_abort: dict[int, int] | None = None

    def begin_transaction(self) -> None:
        if self.commits == 2 and self.before is None:
            self.before = self.probe()
        super().begin_transaction()

    def commit_transaction(self, timeout_s: float) -> None:
        self.commits += 1
        if self.commits == 3:
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT, "injected commit failure", txn_requires_abort=True
                )
            )
        super().commit_transaction(timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        super().abort_transaction(timeout_s)
        self.after_abort = self.probe()


def test_exactly_once_offsets_advance_only_with_committed_transactions(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    topics = make_topics(kafka_broker)
    values = list(synthetic_values(8000))
    produced = produce(kafka_broker, topics.events, values)
    config = pipeline_config(
        kafka_broker, topics, model_repository, batch_size=1000, exactly_once=True
    )
    sinks: list[AbortThirdTransaction] = []

    def sink_factory(conf: dict[str, Any]) -> KafkaSinkStage:
        sink = AbortThirdTransaction(
            conf, lambda: committed(kafka_broker, topics.group, topics.events, 4)
        )
        sinks.append(sink)
        return sink

    summary = run_inprocess(config, engine, max_events=len(values), sink_factory=sink_factory)

    (sink,) = sinks
    assert summary.aborted_transactions == 1
    assert sink.before is not None and sum(sink.before.values()) > 0
    assert sink.after_abort == sink.before, "offsets moved with an aborted transaction"
    final = committed(kafka_broker, topics.group, topics.events, 4)
    assert sum(final.values()) == len(values)
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    counts = [outcome.count(i) for i in range(len(values))]
    assert min(counts) == 1
    # Tansu shows an aborted transaction's records to read_committed consumers (no abort
    # markers filtering, docs/kafka.md): the retried batch appears twice there, nothing else.
    assert sum(c - 1 for c in counts) <= config.kafka.batch_size


# --------------------------------------------------------------------------- a featurizer bug
class ExplodingFeaturizer(Featurizer):
    """Named fake: the real featurizer, except that it raises (as a bug would) on one event."""

    def transform(self, frame: Any) -> Any:
        if "event_id" in frame.columns and (frame["event_id"] == "evt-boom").any():
            raise RuntimeError("featurizer bug (test)")
        return super().transform(frame)


def test_an_event_that_crashes_the_featurizer_is_isolated_and_dead_lettered(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    topics = make_topics(kafka_broker)
    good = list(synthetic_values(3000))
    boom = orjson.dumps({**orjson.loads(good[0]), "event_id": "evt-boom"})
    values: list[bytes | None] = [*good[:1500], boom, *good[1500:]]
    produced = produce(kafka_broker, topics.events, values)
    config = pipeline_config(kafka_broker, topics, model_repository, batch_size=1024)
    pipeline = ScoringPipeline(ExplodingFeaturizer(load_spec(config.spec)), engine)

    summary = KafkaScoringRunner(config, pipeline).run(max_events=len(values))

    outcome, _ = wait_covered(kafka_broker, produced, topics)
    assert summary.scored == len(good) and summary.rejected == 1
    assert all(outcome.count(i) == 1 for i in range(len(values)))
    ((letter,),) = outcome.dead.values()
    assert letter["reason"] == "internal error: RuntimeError: featurizer bug (test)"
    assert produced.index_of(letter["partition"], letter["offset"]) == 1500


# --------------------------------------------------------------------------- sparse streams
def _trickle(
    broker: KafkaBroker, topic: str, values: list[bytes], burst: int, gap_s: float
) -> None:
    """``burst`` events every ``gap_s`` (each burst flushed): a site with little traffic."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
    for lo in range(0, len(values), burst):
        for value in values[lo : lo + burst]:
            producer.produce(topic, value)
        producer.flush(30)
        time.sleep(gap_s)


def test_batch_idle_ms_trades_latency_for_fuller_batches_on_a_sparse_stream(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    values = list(synthetic_values(500))
    batches = {}
    for idle_ms in (5.0, 1500.0):
        topics = make_topics(kafka_broker, partitions=1)
        config = pipeline_config(
            kafka_broker, topics, model_repository, batch_timeout_ms=20_000, batch_idle_ms=idle_ms
        )
        producer = threading.Thread(
            target=_trickle, args=(kafka_broker, topics.events, values, 10, 0.1)
        )
        producer.start()  # 50 bursts over ~5 s, while the runner subscribes and scores
        try:
            summary = run_inprocess(config, engine, max_events=len(values))
        finally:
            producer.join(60)
        assert summary.scored == len(values) and summary.drained
        batches[idle_ms] = summary.batches
    # 5 ms: a batch closes between bursts (what came before the partition was assigned is one
    # batch); 1.5 s: no gap is that long, so one batch takes the stream (two if the broker
    # stalled a burst past 1.5 s)
    assert batches[1500.0] <= 2 and batches[5.0] >= 10, batches


# --------------------------------------------------------------------------- topic created late
def test_a_pipeline_started_before_its_topic_exists_waits_and_then_scores(
    kafka_broker: KafkaBroker, model_repository: Path, engine: InProcessEngine
) -> None:
    """Started before anyone created its input topic, the pipeline logs the broker's "unknown
    topic" once and keeps polling (it once crashed with a SystemError comparing the broker's
    error with None); once the topic appears and events arrive, every one is scored."""
    from morpheus_ext.stages.input.kafka_source import ensure_topics

    topics = make_topics(kafka_broker)
    late = Topics(unique("late-events"), topics.scores, topics.dead, topics.group, 2)
    config = pipeline_config(
        kafka_broker,
        late,
        model_repository,
        consumer={"topic.metadata.refresh.interval.ms": 1000},
    )
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = run_inprocess(config, engine, max_events=500)
        except BaseException as exc:  # the test reports it
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(4)  # the consumer has asked for the missing topic by now
    assert "error" not in result, result.get("error")
    ensure_topics(kafka_broker.bootstrap, {late.events: 2})
    produced = produce(kafka_broker, late.events, list(synthetic_values(500, seed=3)))
    worker.join(timeout=120)
    assert not worker.is_alive() and "error" not in result, result
    assert result["summary"].events_in == 500
    outcome, _ = wait_covered(kafka_broker, produced, late)
    assert len(outcome.scores) == 500


# --------------------------------------------------------------------------- drain, broker gone
def test_sigterm_with_the_broker_gone_ends_within_the_drain_timeout(
    model_repository: Path, engine: InProcessEngine, tmp_path: Path
) -> None:
    """The broker dies mid-stream while batches wait for acknowledgement; a stop request then
    ends the run within ``drain_timeout_s`` (+ 5 s), commits nothing unacknowledged and says how
    many events a restart will read again (it once waited out the 300 s message timeout)."""
    broker = KafkaBroker(tmp_path / "broker").start()
    try:
        topics = make_topics(broker, partitions=2)
        produce(broker, topics.events, list(synthetic_values(150_000, seed=5)))
        config = pipeline_config(
            broker, topics, model_repository, batch_size=1024, drain_timeout_s=3.0,
            max_inflight_batches=4,
        )  # fmt: skip
        pipeline = ScoringPipeline(Featurizer(load_spec(config.spec)), engine)
        runner = KafkaScoringRunner(config, pipeline)
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(summary=runner.run()), daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while runner.summary.events_in < 4096:
            assert time.monotonic() < deadline and worker.is_alive(), "the pipeline did not start"
            time.sleep(0.05)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)  # gone at once; the consumer still holds events
        time.sleep(0.5)
        asked = time.monotonic()
        runner.request_stop()
        worker.join(timeout=60)
        took = time.monotonic() - asked
    finally:
        broker.stop()
    assert not worker.is_alive(), "the run did not end"
    assert took <= 3.0 + 5.0, f"took {took:.1f} s to stop"
    summary = result["summary"]
    assert summary.left_unscored > 0, summary  # batches produced but never acknowledged
    assert "left for the next run" in summary.line()


# --------------------------------------------------------------------------- no assignment
def test_a_replica_without_partitions_says_so(
    kafka_broker: KafkaBroker,
    model_repository: Path,
    engine: InProcessEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two replicas, one partition: the one the group leaves without a partition logs it
    (group named, what to check) once `unassigned_warn_s` has passed, instead of idling
    silently (the wedged group of issue #18 looked exactly like this)."""
    topics = make_topics(kafka_broker, partitions=1)
    config = pipeline_config(kafka_broker, topics, model_repository, unassigned_warn_s=1.0)
    runners = [
        KafkaScoringRunner(config, ScoringPipeline(Featurizer(load_spec(config.spec)), engine))
        for _ in range(2)
    ]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    with caplog.at_level("WARNING", logger="pipelines.kafka.runner"):
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while not any("no partition assigned" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no replica reported its missing assignment"
            time.sleep(0.5)
        for r in runners:
            r.request_stop()
        for t in threads:
            t.join(timeout=60)
    warned = [r.getMessage() for r in caplog.records if "no partition assigned" in r.getMessage()]
    assert topics.group in warned[0] and "docs/operations.md" in warned[0]
