"""Real processes against a real broker: kill -9 mid-stream and restart, SIGTERM drain, scale-out.

The pipeline runs as ``python -m pipelines.cli_kafka run`` (what ``secureai run`` executes);
events are produced at a steady rate while it runs, so a kill lands mid-stream with batches in
flight. Outputs are matched back to the produced events by event id / origin.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import (
    HANG_GUARD_S,
    Message,
    PipelineProcess,
    Produced,
    Topics,
    committed,
    kafka_broker,
    make_topics,
    message_indexer,
    model_repository,
    pipeline_config,
    produce,
    synthetic_values,
    transaction_fates,
    wait_covered,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name

N_EVENTS = 60_000
RATE = 15_000.0
BATCH = 2048
INFLIGHT = 4
MAX_SCALEOUT_EVENTS = 200_000


def _produce_in_background(
    broker: KafkaBroker, topics: Topics, rate: float = RATE
) -> tuple[Produced, threading.Thread]:
    produced = Produced(topics.events)
    values = synthetic_values(N_EVENTS)
    thread = threading.Thread(
        target=produce, args=(broker, topics.events, values, rate, produced), daemon=True
    )
    thread.start()
    return produced, thread


def _wait_committed(broker: KafkaBroker, topics: Topics, at_least: int) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while (
        sum(committed(broker, topics.group, topics.events, topics.partitions).values()) < at_least
    ):
        assert time.monotonic() < deadline, "hang guard: offsets never advanced"
        time.sleep(0.05)


def _offset_of(produced: Produced) -> dict[int, tuple[int, int]]:
    return {i: po for po, i in produced.where.items()}


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_kill9_mid_stream_then_restart_loses_nothing(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path, exactly_once: bool
) -> None:
    topics = make_topics(kafka_broker)
    config = pipeline_config(
        kafka_broker,
        topics,
        model_repository,
        batch_size=BATCH,
        max_inflight_batches=INFLIGHT,
        exactly_once=exactly_once,
        transactional_id=f"{topics.group}-replica-0",  # stable: a restart fences its predecessor
    )
    path = write_config(config, tmp_path / "pipeline.yml")
    first = PipelineProcess(path, tmp_path / "first.log")
    first.wait_for("assigned")
    produced, producer = _produce_in_background(kafka_broker, topics)
    _wait_committed(kafka_broker, topics, N_EVENTS // 4)

    first.kill9()
    at_kill = committed(kafka_broker, topics.group, topics.events, topics.partitions)
    assert sum(at_kill.values()) < N_EVENTS, "the kill must land mid-stream"

    second = PipelineProcess(path, tmp_path / "second.log")
    producer.join(HANG_GUARD_S)
    outcome, messages = wait_covered(kafka_broker, produced, topics)
    assert second.terminate() == 0, second.output()[-2000:]
    assert "drained" in second.output()

    # Nothing lost: every event has at least one output.
    where = _offset_of(produced)
    counts = {i: outcome.count(i) for i in range(N_EVENTS)}
    assert min(counts.values()) >= 1
    # Offsets committed before the kill were really done: those events are never replayed.
    for i, n in counts.items():
        partition, offset = where[i]
        if offset < at_kill.get(partition, 0):
            assert n == 1, f"event {i} below the committed offset was replayed"
    # Replays are bounded by what was in flight, and carry the same event id and score.
    replayed = [i for i, n in counts.items() if n > 1]
    bound = BATCH if exactly_once else (INFLIGHT + 1) * BATCH
    assert len(replayed) <= bound, f"{len(replayed)} replays > {bound}"
    for i in replayed:
        scores = {r["anomaly_score"] for r in outcome.scores.get(i, [])}
        assert len(scores) <= 1 and {r["event_id"] for r in outcome.scores.get(i, [])} <= {
            outcome.scores[i][0]["event_id"]
        }
    if exactly_once:  # every replay is a copy the broker should have hidden (docs/kafka.md)
        _assert_replays_are_uncommitted_copies(kafka_broker, produced, topics, messages)
    # After the drain everything is committed.
    final = committed(kafka_broker, topics.group, topics.events, topics.partitions)
    last = {p: max(o) + 1 for p, o in produced.offsets_by_partition().items()}
    assert final == last


def _assert_replays_are_uncommitted_copies(
    broker: KafkaBroker, produced: Produced, topics: Topics, messages: list[Message]
) -> None:
    """Record by record, from the broker's log: every event is in exactly one *committed*
    transaction, and each extra copy a read_committed reader saw sits in a transaction the
    killed replica never committed (aborted when the restart fenced it). So the
    pipeline's transactions are right, and the duplicates are the broker not filtering aborted
    records (Tansu 0.6.0 sends no aborted-transaction list in Fetch answers)."""
    index = message_indexer(produced, topics)
    in_committed: Counter[int] = Counter()
    elsewhere: Counter[str] = Counter()
    for m, fate in zip(messages, transaction_fates(broker, messages), strict=True):
        if fate == "committed":
            in_committed[index(m)] += 1
        else:
            elsewhere[fate] += 1
    assert set(in_committed) == set(range(len(produced.values))), "an event in no committed txn"
    assert max(in_committed.values()) == 1, in_committed.most_common(3)
    assert set(elsewhere) <= {"aborted"}, elsewhere  # open ones stay behind the stable offset
    assert sum(elsewhere.values()) == len(messages) - len(produced.values)


def test_two_processes_share_the_partitions_and_score_everything(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    """B joins while A is mid-stream: A's revoke commits what is done, B resumes from there.

    Events flow until B has its partitions and for 12k events more, whatever the start-up
    time of B on a busy machine.
    """
    topics = make_topics(kafka_broker, partitions=4)
    config = pipeline_config(
        kafka_broker, topics, model_repository, batch_size=BATCH, max_inflight_batches=INFLIGHT
    )
    path = write_config(config, tmp_path / "pipeline.yml")
    a = PipelineProcess(path, tmp_path / "a.log")
    a.wait_for("assigned")
    produced, stop = Produced(topics.events), threading.Event()
    values = synthetic_values(MAX_SCALEOUT_EVENTS)
    producer = threading.Thread(
        target=produce,
        args=(kafka_broker, topics.events, values, 6000.0, produced, stop),
        daemon=True,
    )
    producer.start()
    _wait_committed(kafka_broker, topics, 3000)
    b = PipelineProcess(path, tmp_path / "b.log")  # joins mid-stream: the group rebalances
    b.wait_for("assigned")
    after = len(produced.values) + 12_000
    while len(produced.values) < after:
        assert producer.is_alive(), "ran out of events before B took part"
        time.sleep(0.05)
    stop.set()
    producer.join(HANG_GUARD_S)
    n = len(produced.values)
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    assert a.terminate() == 0 and b.terminate() == 0, a.output()[-1000:] + b.output()[-1000:]

    counts = [outcome.count(i) for i in range(n)]
    assert min(counts) == 1, "an event was lost"
    assert max(counts) == 1, "the revoke committed what was done: nothing is scored twice"
    events = []
    for proc in (a, b):
        (line,) = [x for x in proc.output().splitlines() if "secureai run: drained" in x]
        events.append(int(re.search(r"drained: (\d+) events", line).group(1)))  # type: ignore[union-attr]
    assert min(events) > 0, f"one process scored nothing: {events}"
    assert sum(events) == n
    final_a = re.findall(r"assigned (.*)", a.output())[-1]
    final_b = re.findall(r"assigned (.*)", b.output())[-1]
    parts_a, parts_b = set(final_a.split(", ")), set(final_b.split(", "))
    assert not parts_a & parts_b and len(parts_a | parts_b) == topics.partitions


def test_a_replica_fenced_by_a_namesake_stops_in_one_line(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    """Two exactly-once replicas given the same transactional id: the newer one fences the older,
    which stops at its next transaction with a line naming ``kafka.transactional_id`` (not a
    retry loop), and the newer one goes on. The newer one reads in its own group: a member that
    leaves mid-rebalance wedges a Tansu 0.6 group (docs/kafka.md), which is not under test here."""
    topics = make_topics(kafka_broker)
    config = pipeline_config(
        kafka_broker, topics, model_repository, batch_size=1024, exactly_once=True,
        transactional_id=f"{topics.group}-same",
    )  # fmt: skip
    older = PipelineProcess(write_config(config, tmp_path / "older.yml"), tmp_path / "older.log")
    older.wait_for("assigned")
    produced, producer = _produce_in_background(kafka_broker, topics, rate=5000.0)
    _wait_committed(kafka_broker, topics, 2048)
    config.kafka.group_id = f"{topics.group}-b"
    newer = PipelineProcess(write_config(config, tmp_path / "newer.yml"), tmp_path / "newer.log")
    assert older.proc.wait(HANG_GUARD_S) == 2, older.output()[-2000:]  # a config mistake
    last = older.output().strip().splitlines()[-1]
    assert "kafka.transactional_id" in last and "fenced" in last, last
    producer.join(HANG_GUARD_S)
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    assert newer.terminate() == 0, newer.output()[-2000:]
    assert min(outcome.count(i) for i in range(len(produced.values))) >= 1
