"""Offsets commit only after delivery, strictly in batch order (at-least-once).

Each produced batch becomes a :class:`Delivery` (its next offsets per partition and a count of
messages the broker has not acknowledged yet); the :class:`OffsetTracker` keeps them in the
order they were produced and hands out the offsets of the leading acknowledged batches only, so
a crash (even ``kill -9``) replays at most the unacknowledged batches. A revoked partition's
offsets are dropped from every waiting batch: the new owner re-reads from the committed offset.

>>> tracker = OffsetTracker()
>>> first, second = Delivery({("events", 0): 10}, 10), Delivery({("events", 0): 20}, 10)
>>> first.remaining = second.remaining = 1
>>> tracker.add(first); tracker.add(second)
>>> second(None, None)          # the later batch is acknowledged first...
>>> tracker.committable()       # ...but nothing commits before the earlier one
{}
>>> first(None, None)
>>> tracker.committable(), len(tracker)
({('events', 0): 20}, 0)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from morpheus_ext.stages.input.kafka_source import TP, KafkaSourceStage
from pipelines.kafka.summary import KafkaPipelineError

log = logging.getLogger(__name__)

MEMBERSHIP_ERRORS = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
}
"""The group moved on: a commit or transaction for these partitions is no longer ours to make."""


class Delivery:
    """One produced batch waiting for the broker: its offsets and what is still unacknowledged.

    It is the producer's delivery callback for every message of the batch.
    """

    __slots__ = ("delivered_at", "error", "events", "offsets", "remaining")

    def __init__(self, offsets: dict[TP, int], events: int) -> None:
        self.offsets = offsets
        self.events = events
        self.remaining = 0
        self.error: KafkaError | None = None
        self.delivered_at = 0.0

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = err
        self.remaining -= 1
        if self.remaining == 0:
            self.delivered_at = time.time()

    @property
    def done(self) -> bool:
        return self.remaining <= 0


class OffsetTracker:
    """Produced batches not committed yet, in produce order."""

    def __init__(self) -> None:
        self._inflight: deque[Delivery] = deque()

    def __len__(self) -> int:
        return len(self._inflight)

    def events_pending(self) -> int:
        """Events of the batches not committed: what a restart re-reads."""
        return sum(d.events for d in self._inflight)

    def add(self, delivery: Delivery) -> None:
        self._inflight.append(delivery)

    def committable(self) -> dict[TP, int]:
        """Offsets of every leading batch whose messages are all acknowledged (removed here).

        Raises :class:`KafkaPipelineError` at the first batch a delivery failed for good: it
        is never committed, and stays first in line.
        """
        offsets: dict[TP, int] = {}
        while self._inflight and self._inflight[0].done:
            delivery = self._inflight[0]
            if delivery.error is not None:
                raise KafkaPipelineError(
                    f"delivery to Kafka failed ({delivery.error.str()}); batch not committed, "
                    "a restart re-reads it"
                )
            self._inflight.popleft()
            offsets.update(delivery.offsets)
        return offsets

    def forget(self, revoked: set[TP]) -> None:
        """Never commit for partitions we no longer own."""
        for delivery in self._inflight:
            for tp in revoked:
                delivery.offsets.pop(tp, None)


def commit_offsets(source: KafkaSourceStage, offsets: dict[TP, int], asynchronous: bool) -> bool:
    """Commit ``offsets``; False (logged) when the group moved on and they are no longer ours."""
    try:
        source.commit(offsets, asynchronous=asynchronous)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() in MEMBERSHIP_ERRORS or err.code() == KafkaError._NO_OFFSET:
            log.warning("commit skipped (%s): the partitions moved", err.str())
            return False
        raise
    return True
