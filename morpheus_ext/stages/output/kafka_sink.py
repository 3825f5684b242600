"""Kafka sink stage: score records keyed by event id, dead letters keyed by their origin.

An idempotent producer (``acks=all``, ordered retries), or a transactional one in exactly-once
mode; ``produce`` never drops on a full queue. The runner commits the source offsets only after
this stage's deliveries are acknowledged (``pipelines/kafka/``).

Example:

>>> score_messages([{"event_id": "e1", "anomaly_score": 0.5}])
[(b'e1', b'{"event_id":"e1","anomaly_score":0.5}')]
>>> dead_letter_key({"source": "events", "partition": 2, "offset": 41})
b'events/2/41'
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from morpheus_ext.kafka_logging import client_logger
from morpheus_ext.stages.postprocess.incidents import encoded_record
from morpheus_ext.stages.postprocess.records import ScoreRecords

log = logging.getLogger(__name__)
_CLIENT_LOG = client_logger()
"""librdkafka's own log lines go through Python logging (not raw to stderr), rate-limited."""

MANAGED_PRODUCER_KEYS: dict[str, str] = {
    "bootstrap.servers": "set kafka.bootstrap_servers",
    "enable.idempotence": "the producer is always idempotent",
    "transactional.id": "set kafka.transactional_id",
    "acks": "idempotence needs acks=all",
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 1,
    "batch.num.messages": 10_000,
    "batch.size": 4 * 1024 * 1024,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1024 * 1024,
    # lz4: Tansu's CPU per record scales with bytes (6.6 -> 2.6 us per score record, and
    # less socket work here too); docs/kafka.md "Compression".
    "compression.type": "lz4",
}


def producer_config(
    bootstrap: str, options: dict[str, Any], transactional_id: str | None = None
) -> dict[str, Any]:
    """An idempotent producer (``acks=all``, ordered retries); transactional when given an id."""
    conf = {**PRODUCER_DEFAULTS, **options}
    conf.setdefault("logger", _CLIENT_LOG)
    conf.update({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    if transactional_id:
        conf["transactional.id"] = transactional_id
    return conf


# --------------------------------------------------------------------------- sink
FENCED_CODES = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
"""Codes that mean a newer producer with our transactional.id fenced this one."""

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class KafkaSinkStage:
    """An idempotent (or transactional) producer; ``produce`` never drops on a full queue."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.transactional = bool(config.get("transactional.id"))
        self._fatal: KafkaError | None = None
        self._user_error_cb: Callable[[KafkaError], None] | None = config.get("error_cb")
        self.producer = Producer({**config, "error_cb": self._on_error})

    def _on_error(self, err: KafkaError) -> None:
        """Keep the first fatal error: once fenced, ``produce`` itself fails with a bare
        ``_FATAL`` ("Local: Fatal error"); the cause (fenced, unauthorised...) only ever
        arrives here. Other errors are logged as librdkafka would without a callback."""
        if err.fatal() and self._fatal is None:
            self._fatal = err
        if self._user_error_cb is not None:
            self._user_error_cb(err)
        else:
            _CLIENT_LOG.error("%s", err.str())

    def fatal_error(self, wait_s: float = 0.0) -> KafkaError | None:
        """The producer's fatal error, or None; serves pending callbacks for up to ``wait_s``
        (librdkafka marks itself fatal a moment before it queues the callback)."""
        deadline = time.monotonic() + wait_s
        while self._fatal is None:
            self.producer.poll(min(0.05, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
        return self._fatal

    def is_fenced(self, err: KafkaError) -> bool:
        """Whether ``err`` (or the fatal error behind a bare ``_FATAL``) means that another
        producer with the same ``transactional.id`` took over."""
        if err.code() in FENCED_CODES:
            return True
        if err.code() != KafkaError._FATAL and not err.fatal():
            return False
        cause = self.fatal_error(wait_s=1.0)
        # librdkafka reports a fence through error_cb as _FATAL with the normalised cause
        # (_FENCED: "This instance has been fenced by a newer instance") in its text.
        return cause is not None and (cause.code() in FENCED_CODES or "fenced" in cause.str())

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let the network thread drain it
                self.producer.poll(0.05)

    def produce_all(
        self,
        topic: str,
        messages: Iterable[tuple[bytes | None, bytes]],
        on_delivery: DeliveryCallback,
    ) -> int:
        produce = self.producer.produce
        n = 0
        for key, value in messages:
            try:
                produce(topic, value, key, on_delivery=on_delivery)
            except BufferError:
                self.produce(topic, value, key, on_delivery)
            n += 1
        return n

    def poll(self, timeout_s: float = 0.0) -> int:
        return int(self.producer.poll(timeout_s))

    def flush(self, timeout_s: float) -> int:
        """Wait for acknowledgements; returns how many messages are still unacknowledged."""
        return int(self.producer.flush(timeout_s))

    def pending(self) -> int:
        return len(self.producer)

    # Transactions (exactly-once mode); thin so tests can wrap one step.
    def init_transactions(self, timeout_s: float) -> None:
        self.producer.init_transactions(timeout_s)

    def begin_transaction(self) -> None:
        self.producer.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout_s: float
    ) -> None:
        self.producer.send_offsets_to_transaction(offsets, group_metadata, timeout_s)

    def commit_transaction(self, timeout_s: float) -> None:
        self.producer.commit_transaction(timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        self.producer.abort_transaction(timeout_s)


# --------------------------------------------------------------------------- encoding
def score_messages(records: Sequence[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    """(key, value) per score record: key = event id (None when the event has none)."""
    if isinstance(records, ScoreRecords):  # column-wise: JSON lines without per-event dicts
        return list(zip(records.keys(), records.json_lines(), strict=True))
    dumps = orjson.dumps
    return [
        (None if (eid := r.get("event_id")) is None else str(eid).encode(), dumps(r))
        for r in records
    ]


def incident_messages(records: Sequence[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    """(key, value) per incident record: key = incident id, so a compacted topic keeps each
    incident's latest revision and a replay's copy replaces, never adds."""
    return [(r["incident_id"].encode(), encoded_record(r)) for r in records]


def dead_letter_key(record: dict[str, Any]) -> bytes:
    return f"{record.get('source')}/{record.get('partition')}/{record.get('offset')}".encode()


def fit_dead_letter(record: dict[str, Any], max_bytes: int) -> bytes:
    """Serialise a dead letter; above ``max_bytes`` keep a prefix of the original bytes.

    A truncated dead letter says so (``raw_truncated``) and carries the original's size and
    sha256, so it can be matched with the full value at its origin (topic/partition/offset).
    """
    encoded = orjson.dumps(record)
    if len(encoded) <= max_bytes:
        return encoded
    raw_key = "raw" if "raw" in record else "raw_b64"
    original = record[raw_key].encode() if raw_key == "raw" else base64.b64decode(record[raw_key])
    slim = {k: v for k, v in record.items() if k not in ("raw", "raw_b64")}
    slim["raw_truncated"] = True
    slim["raw_size"] = len(original)
    slim["raw_sha256"] = hashlib.sha256(original).hexdigest()
    # Base64 of a prefix: valid whatever byte the cut lands on; 3/4 of the room for the prefix.
    room = max(0, (max_bytes - len(orjson.dumps(slim)) - 64) * 3 // 4)
    slim["raw_b64"] = base64.b64encode(original[:room]).decode("ascii")
    return orjson.dumps(slim)


def dead_letter_messages(
    records: list[dict[str, Any]], max_bytes: int
) -> list[tuple[bytes | None, bytes]]:
    return [(dead_letter_key(r), fit_dead_letter(r, max_bytes)) for r in records]
