"""Kafka source stage (confluent-kafka / librdkafka): raw bytes in batches, each with its origin.

The source reads batches bounded by size and time and keeps every value's origin
``(topic, partition, offset)`` and its produce timestamp; it never commits on its own
(``enable.auto.commit`` and ``enable.auto.offset.store`` are off): the runner commits a batch's
offsets only after the broker has acknowledged every score record and dead letter the batch
turned into (``pipelines/kafka/offsets.py``). The sink is in
``morpheus_ext/stages/output/kafka_sink.py``.

Morpheus' own ``KafkaSourceStage`` commits right after parsing, so a crash loses the batch in
flight; this stage is the same step with the commit moved behind delivery (docs/kafka.md).

Example:

>>> conf = consumer_config("127.0.0.1:9092", "secureai", {"fetch.wait.max.ms": 200})
>>> conf["enable.auto.commit"], conf["fetch.wait.max.ms"], conf["isolation.level"]
(False, 200, 'read_committed')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from morpheus_ext.kafka_logging import client_logger
from morpheus_ext.stages.input.sources import Origin, RawBatch

log = logging.getLogger(__name__)
_CLIENT_LOG = client_logger()
"""librdkafka's own log lines go through Python logging (not raw to stderr), rate-limited."""

BATCH_IDLE_S = 0.005
"""A started batch closes when nothing new arrived for this long (see poll_batch)."""
TP = tuple[str, int]
"""A (topic, partition) pair."""

#: Consumer keys the pipeline sets itself (the guarantee depends on them), with the reason.
MANAGED_CONSUMER_KEYS: dict[str, str] = {
    "bootstrap.servers": "set kafka.bootstrap_servers",
    "group.id": "set kafka.group_id",
    "enable.auto.commit": "offsets are committed after delivery",
    "enable.auto.offset.store": "offsets are committed after delivery",
}
#: Producer keys the pipeline sets itself.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "enable.partition.eof": False,
    # Low latency: a broker that holds an empty fetch for the full wait (Tansu does) would add
    # up to this much to every event; Kafka answers as soon as data arrives either way.
    "fetch.wait.max.ms": 5,
    # Large fetches: the consumer thread keeps a backlog ready while Python scores a batch.
    "fetch.max.bytes": 64 * 1024 * 1024,
    "queued.max.messages.kbytes": 256 * 1024,
}


def consumer_config(bootstrap: str, group_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The consumer's librdkafka config: defaults < ``options`` < the managed keys."""
    conf = {**CONSUMER_DEFAULTS, **options}
    conf.setdefault("logger", _CLIENT_LOG)
    conf.update(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    return conf


# --------------------------------------------------------------------------- source
class KafkaRawBatch(RawBatch):
    """A :class:`RawBatch` whose :class:`Origin` objects are built on first use.

    Only dead letters and rebalances need origins; building one object per consumed message
    cost more than decoding it. Appending to ``origins`` works (it builds them first).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[list[str], list[int], list[int]]] = []
        self._origins: list[Origin] = []
        super().__init__()

    @property
    def origins(self) -> list[Origin]:
        if self._pending:
            for topics, partitions, offsets in self._pending:
                self._origins.extend(map(Origin, topics, partitions, offsets))
            self._pending.clear()
        return self._origins

    @origins.setter
    def origins(self, value: list[Origin]) -> None:
        self._pending = []
        self._origins = value

    def add(
        self, values: list[bytes], topics: list[str], parts: list[int], offs: list[int]
    ) -> None:
        self.values.extend(values)
        self._pending.append((topics, parts, offs))


_value = Message.value
_topic = Message.topic
_partition = Message.partition
_offset = Message.offset
_timestamp = Message.timestamp
_error = Message.error


@dataclass
class ConsumedBatch:
    """Raw values with origins, their produce timestamps (ms, -1 unknown) and offset ranges."""

    raw: RawBatch = field(default_factory=KafkaRawBatch)
    timestamps_ms: list[int] = field(default_factory=list)
    first_offsets: dict[TP, int] = field(default_factory=dict)
    next_offsets: dict[TP, int] = field(default_factory=dict)
    """Per partition, the offset to commit once the batch is done (last offset + 1)."""

    def __len__(self) -> int:
        return len(self.raw)

    def extend(self, messages: list[Message]) -> None:
        """Add consumed messages (no error) in order; a missing value becomes ``b""``."""
        if not messages:
            return
        # Column by column through C-level map(): this runs once per consumed event.
        maybe = list(map(_value, messages))
        values = cast(list[bytes], maybe if None not in maybe else [v or b"" for v in maybe])
        # A consumed message always has topic, partition and offset (None only for produce).
        topics = cast(list[str], list(map(_topic, messages)))
        parts = cast(list[int], list(map(_partition, messages)))
        offsets = cast(list[int], list(map(_offset, messages)))
        if isinstance(self.raw, KafkaRawBatch):
            self.raw.add(values, topics, parts, offsets)
        else:
            self.raw.values.extend(values)
            self.raw.origins.extend(map(Origin, topics, parts, offsets))
        self.timestamps_ms.extend(
            [ts if kind != 0 else -1 for kind, ts in map(_timestamp, messages)]
        )
        tps = list(zip(topics, parts, strict=True))
        first, nxt = self.first_offsets, self.next_offsets
        for tp, o in dict(zip(reversed(tps), reversed(offsets), strict=True)).items():
            first.setdefault(tp, o)  # the first offset per partition (of this call) ...
        for tp, o in dict(zip(tps, offsets, strict=True)).items():
            nxt[tp] = o + 1  # ... and the last one

    def append(self, value: bytes, origin: Origin, timestamp_ms: int) -> None:
        """Add one value already consumed (from another batch), keeping the offset ranges."""
        tp = (origin.source, origin.partition)
        self.raw.values.append(value)
        self.raw.origins.append(origin)
        self.timestamps_ms.append(timestamp_ms)
        self.first_offsets.setdefault(tp, origin.offset)
        self.next_offsets[tp] = origin.offset + 1

    def entries(self) -> Iterator[tuple[bytes, Origin, int]]:
        """(value, origin, produce timestamp) per value, in order."""
        return zip(self.raw.values, self.raw.origins, self.timestamps_ms, strict=True)

    def without(self, revoked: set[TP]) -> ConsumedBatch:
        """The batch minus the values of ``revoked`` partitions (another consumer owns them)."""
        out = ConsumedBatch()
        for value, origin, ts in self.entries():
            if (origin.source, origin.partition) not in revoked:
                out.append(value, origin, ts)
        return out


class KafkaSourceStage:
    """A subscribed consumer that hands out :class:`ConsumedBatch` es and never auto-commits."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        on_lost: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        self.topics = list(topics)
        self.consumer = Consumer(config)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._warned: set[str] = set()

    def check_reachable(self, timeout_s: float) -> None:
        """Fail fast (one line) when no broker answers; warn about missing input topics."""
        try:
            meta = self.consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaException(
                KafkaError(exc.args[0].code(), f"no Kafka broker answered: {exc.args[0].str()}")
            ) from None
        missing = [t for t in self.topics if t not in meta.topics]
        if missing:
            log.warning("input topics not found (yet): %s", ", ".join(missing))

    def subscribe(self) -> None:
        self.consumer.subscribe(
            self.topics,
            on_assign=lambda _c, parts: self._on_assign and self._on_assign(parts),
            on_revoke=lambda _c, parts: self._on_revoke and self._on_revoke(parts),
            on_lost=lambda _c, parts: self._on_lost and self._on_lost(parts),
        )

    def poll_batch(
        self, max_messages: int, timeout_s: float, idle_s: float = BATCH_IDLE_S
    ) -> ConsumedBatch:
        """Up to ``max_messages`` values: waits up to ``timeout_s`` for the first one, then
        closes at ``max_messages``, ``timeout_s`` after the first, or when nothing new arrived
        for ``idle_s`` — full batches under load, no waiting for the time bound when sparse.
        """
        batch = ConsumedBatch()
        deadline = time.monotonic() + timeout_s
        while len(batch) == 0:  # the first value (an error event adds nothing: go on)
            wait = deadline - time.monotonic()
            if wait <= 0:
                return batch
            first = self.consumer.poll(wait)
            if first is None:
                return batch
            self._add(batch, [first])
        deadline = time.monotonic() + timeout_s
        while (remaining := max_messages - len(batch)) > 0:
            wait = min(deadline - time.monotonic(), idle_s)
            if wait <= 0:
                break
            messages = self.consumer.consume(remaining, wait)
            if not messages:
                break
            self._add(batch, messages)
        return batch

    def poll_idle(self, timeout_s: float) -> ConsumedBatch:
        """Serve callbacks (rebalance, commits) without asking for data (partitions paused)."""
        batch = ConsumedBatch()
        message = self.consumer.poll(timeout_s)
        if message is not None:
            self._add(batch, [message])
        return batch

    def _add(self, batch: ConsumedBatch, messages: list[Message]) -> None:
        good = messages
        # `is not None`, never ==: KafkaError's comparison with None raises inside C code
        # (`list.count(None)` then fails with a SystemError on a missing topic's error)
        if any(e is not None for e in map(_error, messages)):
            good = []
            for message in messages:
                err = message.error()
                if err is None:
                    good.append(message)
                elif err.fatal():
                    raise KafkaException(err)
                elif err.code() != KafkaError._PARTITION_EOF:
                    text = err.str()
                    if text not in self._warned:  # e.g. unknown topic: once, not per poll
                        self._warned.add(text)
                        log.warning("kafka consumer: %s", text)
        batch.extend(good)

    def assignment(self) -> list[TopicPartition]:
        return list(self.consumer.assignment())

    def pause_all(self) -> None:
        parts = self.assignment()
        if parts:
            self.consumer.pause(parts)

    def resume_all(self) -> None:
        parts = self.assignment()
        if parts:
            self.consumer.resume(parts)

    def commit(self, offsets: dict[TP, int], asynchronous: bool) -> None:
        """Commit ``next offset`` per partition (what the group resumes from)."""
        if offsets:
            parts = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            if asynchronous:
                self.consumer.commit(offsets=parts, asynchronous=True)
            else:
                self.consumer.commit(offsets=parts, asynchronous=False)

    def rewind(self, first_offsets: dict[TP, int]) -> None:
        """Seek back so the batch starting at ``first_offsets`` is consumed again."""
        for (topic, partition), offset in first_offsets.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # no longer assigned: the new owner re-reads it
                log.debug("seek %s[%d] skipped: %s", topic, partition, exc)

    def close(self) -> None:
        self.consumer.close()


# --------------------------------------------------------------------------- admin
def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    options: dict[str, Any] | None = None,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); returns those created."""
    admin = AdminClient({**(options or {}), "bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
