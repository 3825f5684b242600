"""Kafka test harness: one real broker (Tansu, scripts/kafka/) per session, plus helpers.

Import the fixtures into a test module with ``from .kafka_fixtures import *  # noqa``-style
explicit imports. Every test uses its own topics and consumer group (``unique``), so tests share
the broker without seeing each other's data. The helpers read topics back by *content*
(event ids, origins), never by end offsets: Tansu reports a wrong high watermark after batched
writes (docs/kafka.md).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from morpheus_ext.stages.input.kafka_source import ensure_topics
from morpheus_ext.stages.input.sources import frame_source
from pipelines.kafka.config import PipelineConfig
from scripts.kafka.broker import BrokerNotInstalled, KafkaBroker
from scripts.kafka.s3 import S3NotInstalled, S3Server
from scripts.kafka.txn_audit import read_partition
from synthetic import SyntheticConfig, generate

REPO_ROOT = Path(__file__).resolve().parent.parent
# Fast group joins on Tansu (JoinGroup waits session.timeout.ms / 2); heartbeats keep up.
FAST_GROUP = {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000}
HANG_GUARD_S = 180.0
"""Upper bound for waiting on the pipeline (a hang guard, not a performance assertion)."""


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Tansu broker on 127.0.0.1 for the whole session.

    A missing broker FAILS (``make test`` runs scripts/kafka/install.sh first): a skipped
    streaming test would hide a broken set-up.
    """
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except BrokerNotInstalled as exc:
        pytest.fail(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


DURABLE_FETCH_WAIT_MS = 50
"""``fetch.wait.max.ms`` for consumers of the s3:// broker. Tansu on S3 answers a fetch with
nothing (no error) when its S3 reads take longer than the wait, so a wait below the S3 request
latency starves the consumer silently; local SeaweedFS answers in ~1 ms, 50 ms leaves a margin
(docs/kafka.md "Storage"). The memory:// default (5 ms, for latency) stays for other tests."""


@dataclass
class DurableKafka:
    """A Tansu broker whose storage is a SeaweedFS S3 server: both can be restarted."""

    broker: KafkaBroker
    s3: S3Server
    consumer: dict[str, Any] = field(
        default_factory=lambda: {"fetch.wait.max.ms": DURABLE_FETCH_WAIT_MS}
    )
    """librdkafka consumer options that work on this storage (``kafka.consumer``)."""


@pytest.fixture(scope="session")
def durable_kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableKafka]:
    """A Tansu broker on ``s3://`` storage (SeaweedFS, data under the session's tmp dir).

    Separate from ``kafka_broker`` (memory://, milliseconds, the default for speed): only
    restart tests need storage that outlives the broker. A missing SeaweedFS or broker FAILS
    (``make kafka`` installs both): a skipped durability test would hide a broken set-up.
    Tests that stop either process must leave it running again (``restart``).
    """
    root = tmp_path_factory.mktemp("durable-kafka")
    s3 = S3Server(root / "s3")
    try:
        s3.start()
    except S3NotInstalled as exc:
        pytest.fail(str(exc))
    broker = KafkaBroker(root / "broker", **s3.broker_options())
    try:
        broker.start()
    except BrokerNotInstalled as exc:
        s3.stop()
        pytest.fail(str(exc))
    try:
        yield DurableKafka(broker, s3)
    finally:
        broker.stop()
        s3.stop()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the committed repository (immune to `make models` running alongside)."""
    dest = tmp_path_factory.mktemp("models") / "triton_model_repository"
    shutil.copytree(REPO_ROOT / "triton_model_repository", dest)
    return dest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Topics:
    events: str
    scores: str
    dead: str
    group: str
    partitions: int = 4


def make_topics(broker: KafkaBroker, partitions: int = 4) -> Topics:
    t = Topics(unique("events"), unique("scores"), unique("dlq"), unique("group"), partitions)
    ensure_topics(broker.bootstrap, {t.events: partitions, t.scores: partitions, t.dead: 1})
    return t


def pipeline_config(
    broker: KafkaBroker, topics: Topics, repository: Path, **kafka: Any
) -> PipelineConfig:
    consumer = {**FAST_GROUP, **kafka.pop("consumer", {})}
    doc: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "topics": [topics.events],
            "group_id": topics.group,
            "scores_topic": topics.scores,
            "dead_letter_topic": topics.dead,
            "batch_size": 2048,
            "consumer": consumer,
            **kafka,
        },
        "inference": {"engine": "inprocess", "repository": str(repository), "threads": 1},
        "retry": {"initial_s": 0.1, "max_s": 1.0},
        "metrics_port": 0,
    }
    return PipelineConfig.model_validate(doc)


def write_config(config: PipelineConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


# --------------------------------------------------------------------------- events
@cache
def synthetic_values(n: int, seed: int = 11) -> tuple[bytes, ...]:
    frame = generate(SyntheticConfig(n_events=n, seed=seed))
    return tuple(v for raw in frame_source(frame, 8192) for v in raw.values)


def event_id_of(value: bytes) -> str:
    return str(orjson.loads(value)["event_id"])


@dataclass
class Produced:
    """What was written to the events topic: value index by (partition, offset)."""

    topic: str
    values: list[bytes] = field(default_factory=list)
    where: dict[tuple[int, int], int] = field(default_factory=dict)

    def index_of(self, partition: int, offset: int) -> int:
        return self.where[(partition, offset)]

    def offsets_by_partition(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for p, o in self.where:
            out.setdefault(p, []).append(o)
        return {p: sorted(v) for p, v in out.items()}


def produce(
    broker: KafkaBroker,
    topic: str,
    values: Sequence[bytes | None],
    rate: float = 0.0,
    produced: Produced | None = None,
    stop: threading.Event | None = None,
) -> Produced:
    """Write ``values`` (None = a message without value) and record where each one landed.

    With ``stop``, production ends early (at a multiple of 1000) once the event is set.
    """
    out = produced or Produced(topic)
    base = len(out.values)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "linger.ms": 10,
            "enable.idempotence": True,
            "message.max.bytes": 4_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any, index: int) -> None:
        if err is not None:
            errors.append(err.str())
        else:
            out.where[(msg.partition(), msg.offset())] = index

    started = time.monotonic()
    for i, value in enumerate(values):
        index = base + i
        out.values.append(value if value is not None else b"")
        key = None
        with contextlib.suppress(Exception):
            key = event_id_of(value).encode() if value else None
        producer.produce(
            topic,
            value,
            key,
            on_delivery=lambda err, msg, index=index: on_delivery(err, msg, index),
        )
        if i % 1000 == 999:
            producer.poll(0)
            if stop is not None and stop.is_set():
                break
            if rate > 0:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    assert producer.flush(60) == 0, "events not acknowledged by the broker"
    assert not errors, errors[:3]
    return out


# --------------------------------------------------------------------------- reading back
@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def json(self) -> dict[str, Any]:
        return dict(orjson.loads(self.value))


def read_until(
    broker: KafkaBroker,
    topics: Sequence[str],
    done: Callable[[list[Message]], bool],
    hang_guard_s: float = HANG_GUARD_S,
) -> list[Message]:
    """Every message of ``topics`` from the beginning, until ``done(messages)`` holds."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    try:
        parts = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(parts)
        out: list[Message] = []
        deadline = time.monotonic() + hang_guard_s
        while not done(out):
            if time.monotonic() > deadline:
                pytest.fail(f"hang guard: only {len(out)} messages after {hang_guard_s:.0f} s")
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    out.append(
                        Message(m.topic(), m.partition(), m.offset(), m.key(), m.value() or b"")
                    )
        # whatever is already there beyond the condition (e.g. duplicates) comes too
        while batch := consumer.consume(10_000, 0.5):
            out += [
                Message(m.topic(), m.partition(), m.offset(), m.key(), m.value() or b"")
                for m in batch
                if m.error() is None
            ]
        return out
    finally:
        consumer.close()


@dataclass
class Outcome:
    """Outputs matched back to produced events: index -> score records / dead letters."""

    scores: dict[int, list[dict[str, Any]]]
    dead: dict[int, list[dict[str, Any]]]

    def covered(self) -> set[int]:
        return set(self.scores) | set(self.dead)

    def count(self, index: int) -> int:
        return len(self.scores.get(index, [])) + len(self.dead.get(index, []))


def match_outputs(produced: Produced, topics: Topics, messages: list[Message]) -> Outcome:
    scores: dict[int, list[dict[str, Any]]] = {}
    dead: dict[int, list[dict[str, Any]]] = {}
    index = message_indexer(produced, topics)
    for m in messages:
        (scores if m.topic == topics.scores else dead).setdefault(index(m), []).append(m.json())
    return Outcome(scores, dead)


def message_indexer(produced: Produced, topics: Topics) -> Callable[[Message], int]:
    """Which produced event an output is for: score records by event id (their key), dead
    letters by the origin (partition, offset) they carry."""
    ids: dict[str, int] = {}
    for i, v in enumerate(produced.values):
        with contextlib.suppress(Exception):
            ids.setdefault(event_id_of(v), i)

    def index(m: Message) -> int:
        doc = m.json()
        if m.topic == topics.scores:
            assert m.key == str(doc["event_id"]).encode(), "score records are keyed by event id"
            return ids[str(doc["event_id"])]
        assert doc["source"] == produced.topic
        return produced.index_of(doc["partition"], doc["offset"])

    return index


def transaction_fates(broker: KafkaBroker, messages: list[Message]) -> list[str]:
    """Each message's transaction outcome read off the broker's log (``committed``, ``aborted``,
    ``open`` or ``plain``; scripts/kafka/txn_audit.py), not what the client library shows."""
    fates = {
        tp: read_partition(broker.bootstrap, *tp).fates()
        for tp in {(m.topic, m.partition) for m in messages}
    }
    return [fates[(m.topic, m.partition)].get(m.offset, "unknown") for m in messages]


def wait_covered(
    broker: KafkaBroker, produced: Produced, topics: Topics, n: int | None = None
) -> tuple[Outcome, list[Message]]:
    """Read scores + dead letters until every produced event (or the first ``n``) has one."""
    want = set(range(len(produced.values) if n is None else n))

    def done(messages: list[Message]) -> bool:
        if len(messages) < len(want):
            return False
        return want <= match_outputs(produced, topics, messages).covered()

    messages = read_until(broker, [topics.scores, topics.dead], done)
    return match_outputs(produced, topics, messages), messages


def committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (partition -> next offset; absent when none)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        parts = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in parts if tp.offset >= 0}


# --------------------------------------------------------------------------- subprocess
_STARTED: list[PipelineProcess] = []
"""Every pipeline process a test started: the ones a failed assertion left running are
killed when the test session ends (they would otherwise outlive it, polling a dead broker)."""


@atexit.register
def _kill_leftovers() -> None:
    for process in _STARTED:
        if process.proc.poll() is None:
            process.proc.kill()


class PipelineProcess:
    """``python -m pipelines.cli_kafka run --config F`` as a real OS process."""

    def __init__(self, config_path: Path, log_path: Path, *extra: str) -> None:
        _STARTED.append(self)
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.cli_kafka",
                "run",
                "--config",
                str(config_path),
                "--verbose",
                *extra,
            ],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, hang_guard_s: float = HANG_GUARD_S) -> None:
        deadline = time.monotonic() + hang_guard_s
        while text not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"pipeline exited ({self.proc.returncode}): {self.output()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"hang guard: no '{text}' in the pipeline output")
            time.sleep(0.05)

    def terminate(self, hang_guard_s: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(hang_guard_s)
        finally:
            self.close()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()
