"""The two delivery modes: how a scored batch reaches Kafka and when its offsets commit.

* :class:`AtLeastOnce` (default): produce; up to ``max_inflight_batches`` batches wait for the
  broker's acknowledgement while the next ones are scored; offsets commit in batch order
  (:class:`~pipelines.kafka.offsets.OffsetTracker`), so a crash replays at most the
  unacknowledged batches, with the same event ids.
* :class:`ExactlyOnce` (``exactly_once: true``): each batch is one Kafka transaction holding its
  records, its dead letters and its offsets (``send_offsets_to_transaction``); offsets advance
  only when the transaction commits.

Both observe end-to-end latency (event produce time -> acknowledged) on a sample of each batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from confluent_kafka import KafkaException, TopicPartition

from morpheus_ext.pipeline import BatchResult
from morpheus_ext.prometheus_metrics import PipelineMetrics
from morpheus_ext.stages.input.kafka_source import TP, ConsumedBatch, KafkaSourceStage
from morpheus_ext.stages.output.kafka_sink import (
    KafkaSinkStage,
    dead_letter_messages,
    incident_messages,
    score_messages,
)
from pipelines.kafka.config import KafkaSettings
from pipelines.kafka.offsets import MEMBERSHIP_ERRORS, Delivery, OffsetTracker, commit_offsets
from pipelines.kafka.summary import KafkaPipelineError, RunSummary

log = logging.getLogger(__name__)

LATENCY_SAMPLES_PER_BATCH = 256
"""End-to-end latency is observed for an even sample of each batch (cheap at 100k events/s)."""

Messages = list[tuple[bytes | None, bytes]]


class DeliveryMode:
    """What the runner needs from a delivery mode (both modes share the plumbing)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        source: KafkaSourceStage,
        sink: KafkaSinkStage,
        summary: RunSummary,
        metrics: PipelineMetrics,
        abort: threading.Event,
    ) -> None:
        self.kafka = kafka
        self.source = source
        self.sink = sink
        self.summary = summary
        self.metrics = metrics
        self.abort = abort
        self.drain_by: float | None = None
        """Monotonic time the drain must end by (set at the first stop request)."""
        self.before_commit: Callable[[bool], bool] | None = None
        """Asked before offsets are committed, ``force`` at a drain, revoke or transaction:
        the incidents' checkpoint (its state must hold every event below a committed offset).
        False: not now (at-least-once keeps the offsets and commits them later)."""
        self.indicators: Callable[[BatchResult], Messages] | None = None
        """Cross-site correlation: the batch's indicator messages (one per incident record) for
        ``kafka.correlation_topic``, sent with the batch (pipelines/kafka/campaigns.py)."""
        self._setup()

    def time_left(self) -> float:
        """Seconds of the drain left (``drain_timeout_s`` before a stop was asked for)."""
        if self.drain_by is None:
            return self.kafka.drain_timeout_s
        return max(0.0, self.drain_by - time.monotonic())

    def past_drain(self) -> bool:
        return self.drain_by is not None and time.monotonic() >= self.drain_by

    def _setup(self) -> None:
        """The mode's own state (a hook, so subclasses keep the one constructor)."""

    def start(self) -> None:
        """Before the first batch."""

    def emit(self, batch: ConsumedBatch, result: BatchResult) -> bool:
        """Send the batch's outputs; False when it was not taken and must be read again."""
        raise NotImplementedError

    def service(self) -> None:
        """Between batches: serve delivery reports (and commit what is done)."""
        self.sink.poll(0)

    def idle(self) -> None:
        """The input is idle (a poll brought nothing): settle what is done now."""
        self.service()

    def on_revoke(self, revoked: set[TP]) -> None:
        """Partitions are leaving: settle what can be settled for them now, then forget them."""
        self.forget(revoked)

    def forget(self, revoked: set[TP]) -> None:
        """Never commit for partitions we no longer own."""

    def drain(self) -> None:
        """At a clean stop: wait for acknowledgements and commit."""

    def _messages(self, result: BatchResult) -> list[tuple[str, Messages]]:
        """(topic, messages) of everything the batch sends."""
        k = self.kafka
        out = [
            (k.scores_topic, score_messages(result.records)),
            (
                k.dead_letter_topic,
                dead_letter_messages(result.dead_letters, k.dead_letter_max_bytes),
            ),
            (k.incidents_topic, incident_messages(result.incidents)),
        ]
        if self.indicators is not None and result.incidents:
            out.append((k.correlation_topic, self.indicators(result)))
        return out

    def _before_commit(self, force: bool) -> bool:
        return self.before_commit is None or self.before_commit(force)

    def _count(self, batch: ConsumedBatch, result: BatchResult) -> None:
        self.summary.count(len(batch), len(result.records), len(result.dead_letters))
        self.summary.incident_updates += len(result.incidents)

    def _observe(self, batch: ConsumedBatch, result: BatchResult, delivered_at: float) -> None:
        n = len(result.records)
        if n == 0 or result.raw is None or len(result.raw) != len(batch.raw):
            return  # (a batch with isolated events: positions no longer line up; skip)
        rows = result.record_positions()
        step = max(1, n // LATENCY_SAMPLES_PER_BATCH)
        hist = self.metrics.end_to_end_latency
        stamps = batch.timestamps_ms
        for i in range(0, n, step):
            ts = stamps[rows[i]]
            if ts > 0:
                hist.observe(max(0.0, delivered_at - ts / 1000))


class AtLeastOnce(DeliveryMode):
    """Produce, then commit once the broker acknowledged every message (in batch order)."""

    def _setup(self) -> None:
        self.tracker = OffsetTracker()
        self._held: dict[TP, int] = {}
        """Acknowledged, not yet committed: waiting for the incidents' next checkpoint."""
        self._pending_latency: deque[tuple[Delivery, ConsumedBatch, BatchResult]] = deque()

    def emit(self, batch: ConsumedBatch, result: BatchResult) -> bool:
        outputs = self._messages(result)
        delivery = Delivery(dict(batch.next_offsets), len(batch))
        delivery.remaining = sum(len(m) for _, m in outputs)
        if delivery.remaining == 0:  # nothing to send (cannot happen: every value has an output)
            delivery.delivered_at = time.time()
        self.tracker.add(delivery)
        for topic, messages in outputs:
            self.sink.produce_all(topic, messages, delivery)
        self._count(batch, result)
        self._pending_latency.append((delivery, batch, result))
        self.sink.poll(0)
        # The window: at most max_inflight_batches wait for acknowledgement.
        # A stop's drain deadline ends the wait too (a broker that is gone never acknowledges).
        while (
            len(self.tracker) >= self.kafka.max_inflight_batches
            and not self.abort.is_set()
            and not self.past_drain()
        ):
            self.sink.poll(0.01)
            self.commit_done()
        return True

    def service(self) -> None:
        self.sink.poll(0)
        self.commit_done()

    def idle(self) -> None:
        """Nothing new to read: commit what is acknowledged without waiting for the next
        incidents checkpoint slot (the interval only paces checkpoints under load; an idle
        stream's last offsets should not sit uncommitted, and a checkpoint is only written
        when the incidents changed)."""
        self.sink.poll(0)
        self.commit_done(force_checkpoint=True)

    def commit_done(self, asynchronous: bool = True, force_checkpoint: bool = False) -> None:
        """Commit, in batch order, every batch whose messages are all acknowledged."""
        offsets = self.tracker.committable()
        pending = self._pending_latency
        while pending and pending[0][0].done:
            delivery, batch, result = pending.popleft()
            self._observe(batch, result, delivery.delivered_at)
        self._held.update(offsets)
        if not self._held or not self._before_commit(force=force_checkpoint or not asynchronous):
            return
        offsets, self._held = self._held, {}
        if commit_offsets(self.source, offsets, asynchronous):
            self.summary.commits += 1

    def on_revoke(self, revoked: set[TP]) -> None:
        if not self.abort.is_set():
            self.sink.flush(self.kafka.drain_timeout_s)
            try:
                self.commit_done(asynchronous=False)
            except KafkaPipelineError as exc:
                # The failed batch stays first in line: the main loop raises it next.
                log.debug("on revoke: %s", exc)
        self.forget(revoked)

    def forget(self, revoked: set[TP]) -> None:
        self.tracker.forget(revoked)
        for tp in revoked:
            self._held.pop(tp, None)

    def drain(self) -> None:
        """Wait (at most until the drain deadline) for acknowledgements, commit what is
        acknowledged, and count what was not: those batches stay uncommitted, a restart
        re-reads them."""
        left = self.sink.flush(self.time_left())
        self.commit_done(asynchronous=False)
        pending = self.tracker.events_pending()
        if left or pending:
            self.summary.left_unscored += pending
            log.warning(
                "drain timeout: %d messages unacknowledged; %d events not committed, a restart "
                "re-reads them",
                left,
                pending,
            )


FENCED = (
    "another process took over this replica's transactional.id (fenced); nothing of the "
    "batch committed: give each replica its own kafka.transactional_id (default "
    "<group_id>-<hostname>)"
)
"""The one line a fenced replica stops with, wherever the fence surfaces (a transaction, a
rebalance's flush, the producer's poll)."""


class ExactlyOnce(DeliveryMode):
    """One transaction per batch: records + dead letters + offsets, committed together."""

    def start(self) -> None:
        self.sink.init_transactions(self.kafka.transaction_timeout_s)

    def emit(self, batch: ConsumedBatch, result: BatchResult) -> bool:
        k = self.kafka
        outputs = self._messages(result)
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(batch.next_offsets.items())]
        for attempt in range(1, 4):
            delivery = Delivery(dict(batch.next_offsets), len(batch))
            delivery.remaining = sum(len(m) for _, m in outputs)
            try:
                self.sink.begin_transaction()
                for topic, messages in outputs:
                    self.sink.produce_all(topic, messages, delivery)
                self.sink.send_offsets_to_transaction(
                    offsets, self.source.consumer.consumer_group_metadata(), k.transaction_timeout_s
                )
                self._before_commit(force=True)
                self._commit_transaction()
            except KafkaException as exc:
                err = exc.args[0]
                if self.sink.is_fenced(err):
                    raise KafkaPipelineError(FENCED) from exc
                if not err.txn_requires_abort():
                    raise KafkaPipelineError(
                        f"Kafka transaction failed ({err.str()}); nothing of the batch committed"
                    ) from exc
                self.summary.aborted_transactions += 1
                log.warning("transaction aborted (%s); attempt %d", err.str(), attempt)
                self.sink.abort_transaction(k.transaction_timeout_s)
                if err.code() in MEMBERSHIP_ERRORS:
                    break  # the group moved on: the partitions' owner re-reads the batch
                continue
            self.summary.commits += 1
            self._count(batch, result)
            self._observe(batch, result, time.time())
            return True
        # Not committed: read the batch again (if the partitions are still ours).
        self.source.rewind(batch.first_offsets)
        return False

    def _commit_transaction(self) -> None:
        """Commit, retrying what librdkafka calls retriable for at most twice the transaction
        timeout: a coordinator that never answers (seen when Tansu drops the connection of a
        producer a namesake has fenced) must stop the replica with one line, not keep it
        retrying in silence."""
        timeout = self.kafka.transaction_timeout_s
        deadline = time.monotonic() + 2 * timeout
        while True:
            try:
                self.sink.commit_transaction(timeout)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort():
                    raise
                if time.monotonic() >= deadline:
                    raise KafkaPipelineError(
                        f"the Kafka transaction was not committed within {2 * timeout:g} s "
                        f"({err.str()}); nothing of the batch committed: the transaction "
                        "coordinator stopped answering (a broker outage, or another replica with "
                        "the same kafka.transactional_id fenced this one)"
                    ) from exc
                log.warning("transaction commit not acknowledged yet (%s); retrying", err.str())
