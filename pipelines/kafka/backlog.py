"""Values consumed but not processed yet, kept in order across holds, splits and rebalances.

Three things put values here: a poll while the consumer is paused (it should return nothing,
but what it returns is kept), a fingerprinted batch split by replay kind (the rest waits), and a
failed transaction's rewind. A revoke drops the values of partitions that are no longer ours.

>>> from morpheus_ext.stages.input.sources import Origin
>>> backlog = Backlog()
>>> extra = ConsumedBatch()
>>> extra.append(b'{"user": "alice"}', Origin("events", 0, 41), -1)
>>> extra.append(b'{"user": "bob"}', Origin("events", 1, 7), -1)
>>> backlog.append(extra)
>>> backlog.forget({("events", 1)})
1
>>> batch = backlog.take()
>>> batch.raw.values, batch.next_offsets, len(backlog)
([b'{"user": "alice"}'], {('events', 0): 42}, 0)
"""

from __future__ import annotations

from morpheus_ext.stages.input.kafka_source import TP, ConsumedBatch


class Backlog:
    """The runner's carry-over batch, plus what rebalances did while a batch was in hand."""

    def __init__(self) -> None:
        self.batch = ConsumedBatch()
        self.revoked: set[TP] = set()
        """Partitions revoked since the last :meth:`take_revoked` (a hold applies them)."""
        self.assignment_changed = False
        """Set by a rebalance: a paused consumer must pause the new assignment too."""

    def __len__(self) -> int:
        return len(self.batch)

    def take(self) -> ConsumedBatch:
        batch, self.batch = self.batch, ConsumedBatch()
        return batch

    def append(self, extra: ConsumedBatch) -> None:
        """Keep ``extra`` after what is already waiting."""
        for value, origin, ts in extra.entries():
            self.batch.append(value, origin, ts)

    def put_first(self, rest: ConsumedBatch) -> None:
        """Keep ``rest`` before what is already waiting (it was read earlier)."""
        waiting, self.batch = self.batch, rest
        self.append(waiting)

    def drop(self, partitions: set[TP]) -> int:
        """Forget the values of ``partitions``; returns how many were dropped."""
        before = len(self.batch)
        self.batch = self.batch.without(partitions)
        return before - len(self.batch)

    def forget(self, revoked: set[TP]) -> int:
        """A rebalance took ``revoked``: drop their values and remember it for a hold."""
        dropped = self.drop(revoked)
        self.revoked |= revoked
        self.assignment_changed = True
        return dropped
