"""The broker goes away mid-stream and comes back: nothing is lost, the group resumes (#18).

A real pipeline process (``python -m pipelines.cli_kafka run``) consumes a stream being
produced; the Tansu broker is stopped for ~10 s and restarted on the same port and the same
s3:// storage (a SeaweedFS server, ``durable_kafka_broker``). In the second case the S3 server
is restarted too while the broker is down (its data lives in files). The pipeline process is
never restarted: it rides through the outage on librdkafka's reconnects and retries.

With memory:// storage the same restart would lose the topics and the committed offsets
(every event after the stop would be lost and the group would start over), which is why this
needs the durable broker.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from morpheus_ext.stages.input.kafka_source import ensure_topics
from scripts.kafka.broker import KafkaBroker
from scripts.kafka.s3 import signed_headers

from ..kafka_fixtures import (
    HANG_GUARD_S,
    DurableKafka,
    PipelineProcess,
    Produced,
    Topics,
    committed,
    durable_kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    synthetic_values,
    unique,
    wait_covered,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["durable_kafka_broker", "model_repository"]  # fixtures used by name

N_EVENTS = 24_000
RATE = 2_000.0
"""Events/s: production spans the stop, the outage and the restart."""
BATCH = 1024
INFLIGHT = 4
DOWN_S = 10.0


def _wait_committed(broker: KafkaBroker, topics: Topics, at_least: int) -> dict[int, int]:
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        now = committed(broker, topics.group, topics.events, topics.partitions)
        if sum(now.values()) >= at_least:
            return now
        assert time.monotonic() < deadline, "hang guard: offsets never advanced"
        time.sleep(0.05)


@pytest.mark.parametrize("s3_restarts_too", [False, True], ids=["broker", "broker+s3"])
def test_broker_restart_mid_stream_loses_nothing_and_the_group_resumes(
    durable_kafka_broker: DurableKafka,
    model_repository: Path,
    tmp_path: Path,
    s3_restarts_too: bool,
) -> None:
    broker, s3 = durable_kafka_broker.broker, durable_kafka_broker.s3
    topics = make_topics(broker)
    config = pipeline_config(
        broker,
        topics,
        model_repository,
        batch_size=BATCH,
        max_inflight_batches=INFLIGHT,
        consumer=durable_kafka_broker.consumer,
    )
    path = write_config(config, tmp_path / "pipeline.yml")
    pipeline = PipelineProcess(path, tmp_path / "pipeline.log")
    try:
        pipeline.wait_for("assigned")
        produced = Produced(topics.events)
        producer = threading.Thread(
            target=produce,
            args=(broker, topics.events, synthetic_values(N_EVENTS), RATE, produced),
            daemon=True,
        )
        producer.start()
        _wait_committed(broker, topics, N_EVENTS // 5)

        # What was committed just before the stop (the pipeline may commit a little more
        # before the broker goes: the checks below hold for any earlier reading too).
        at_stop = committed(broker, topics.group, topics.events, topics.partitions)
        port = broker.port
        broker.stop()  # SIGTERM mid-stream: batches in flight, more events on the way
        if s3_restarts_too:
            s3.restart(down_s=2.0)
        time.sleep(DOWN_S)
        assert producer.is_alive(), "the stop must land mid-stream (production still going)"
        broker.start()
        assert broker.port == port, "the broker must come back on the same address"

        # The committed offsets survived the restart (memory:// would answer none).
        assert sum(at_stop.values()) >= N_EVENTS // 5
        after = committed(broker, topics.group, topics.events, topics.partitions)
        assert all(after.get(p, -1) >= o for p, o in at_stop.items()), (at_stop, after)

        producer.join(HANG_GUARD_S)
        assert not producer.is_alive(), "hang guard: production never finished"
        outcome, _ = wait_covered(broker, produced, topics)
        assert pipeline.proc.poll() is None, "the pipeline rode through the outage"
        assert pipeline.terminate() == 0, pipeline.output()[-2000:]
    finally:
        pipeline.close()
    assert "drained" in pipeline.output()

    # Nothing lost: every produced event has a score record or a dead letter.
    counts = {i: outcome.count(i) for i in range(len(produced.values))}
    assert len(counts) == N_EVENTS and min(counts.values()) >= 1
    # The group resumed where it was: events below the offsets committed before the stop are
    # never scored again (a group that restarted from the beginning would replay all of them).
    where = {i: po for po, i in produced.where.items()}
    below = [i for i in counts if where[i][1] < at_stop.get(where[i][0], 0)]
    assert len(below) >= N_EVENTS // 5
    assert all(counts[i] == 1 for i in below), "an event below the committed offset was replayed"
    # Replays (what was in flight when the broker went) stay within the at-least-once bound.
    replayed = [i for i, n in counts.items() if n > 1]
    bound = (INFLIGHT + 1) * BATCH
    assert len(replayed) <= bound, f"{len(replayed)} replays > {bound}"
    # After the drain everything is committed.
    final = committed(broker, topics.group, topics.events, topics.partitions)
    assert final == {p: max(o) + 1 for p, o in produced.offsets_by_partition().items()}


def _read_all(broker: KafkaBroker, topic: str) -> list[bytes]:
    """Every value of ``topic`` (read by content: Tansu's high watermark is unreliable)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("reader")})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(out) < 10 and time.monotonic() < deadline:
            out += [m.value() or b"" for m in consumer.consume(100, 0.2) if m.error() is None]
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("durable", [True, False], ids=["s3", "memory"])
def test_what_a_broker_restart_keeps_depends_on_its_storage(
    durable_kafka_broker: DurableKafka, tmp_path: Path, durable: bool
) -> None:
    """s3:// keeps the topic and its records on the same address; memory:// comes back empty
    (the contrast the restart test above relies on)."""
    broker = durable_kafka_broker.broker if durable else KafkaBroker(tmp_path).start()
    try:
        topic = unique("keep")
        ensure_topics(broker.bootstrap, {topic: 2})
        produce(broker, topic, [f'{{"event_id": "k{i}"}}'.encode() for i in range(10)])
        port = broker.port
        broker.restart()
        assert broker.port == port
        values = _read_all(broker, topic)
        assert len(values) == (10 if durable else 0), values
    finally:
        if not durable:
            broker.stop()


def test_the_s3_server_is_real_authenticated_and_keeps_its_address(
    durable_kafka_broker: DurableKafka,
) -> None:
    """Requests are checked (a wrong secret is refused, so Tansu's signed requests are what
    get in), and a restart comes back on the same port with the bucket still there."""
    s3 = durable_kafka_broker.s3
    assert s3.request("HEAD", f"/{s3.bucket}") == 200
    wrong = signed_headers("HEAD", f"127.0.0.1:{s3.port}", f"/{s3.bucket}", s3.access_key, "x")
    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=5)
    try:
        conn.request("HEAD", f"/{s3.bucket}", headers=wrong)
        assert conn.getresponse().status == 403
    finally:
        conn.close()
    port = s3.port
    s3.restart()
    assert s3.port == port and s3.request("HEAD", f"/{s3.bucket}") == 200
