"""The Kafka loop: consume -> score -> produce scores + dead letters -> commit after delivery.

One thread drives everything (librdkafka's own threads do the network I/O)::

    poll a batch (size/time bounded)  ->  ScoringPipeline (decode, featurize, infer, records)
      ->  produce score records (key = event id) and dead letters
      ->  the broker acknowledges every message of the batch  ->  commit the batch's offsets

**At-least-once** (default): up to ``max_inflight_batches`` batches wait for acknowledgement
while the next ones are scored; offsets are committed strictly in batch order, so a crash
(even ``kill -9``) replays at most the unacknowledged batches, with the same event ids.
**Exactly-once** (``exactly_once: true``): each batch is one Kafka transaction holding its
records, its dead letters and its offsets (``send_offsets_to_transaction``); offsets advance only
when the transaction commits.

Failures:
* inference raising (backend down) -> nothing is committed for the batch; it is held and
  retried with capped exponential backoff while the consumer is paused and still polled (the
  group membership stays alive); on recovery the same batch is scored and the stream resumes;
* rebalance -> on revoke, what is done is flushed and committed, what is not is dropped (the new
  owner re-reads it from the committed offset);
* SIGTERM/SIGINT -> drain: stop consuming, finish the batch in hand, wait for acknowledgements,
  commit, leave the group. A second signal stops at once without committing more;
* a delivery that fails for good (after librdkafka's own retries) -> stop with an error and
  without committing that batch: a restart re-reads it.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.featurizer import Featurizer
from morpheus_ext.fingerprint import CheckpointError, EntityBaselines
from morpheus_ext.inference.base import InferenceEngine
from morpheus_ext.metrics import PipelineMetrics, pipeline_metrics
from morpheus_ext.stages.input import RawBatch
from morpheus_ext.stages.kafka import (
    TP,
    ConsumedBatch,
    KafkaSinkStage,
    KafkaSourceStage,
    consumer_config,
    dead_letter_messages,
    producer_config,
    score_messages,
)
from morpheus_ext.stages.output import dead_letter_record
from pipelines.kafka_config import PipelineConfig
from pipelines.runner import BatchResult, Prepared, ScoringPipeline

log = logging.getLogger(__name__)

LATENCY_SAMPLES_PER_BATCH = 256
"""End-to-end latency is observed for an even sample of each batch (cheap at 100k events/s)."""
LAG_INTERVAL_S = 5.0
_MEMBERSHIP_ERRORS = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
}


class KafkaPipelineError(RuntimeError):
    """The pipeline cannot go on safely (message is one user-facing line)."""


@dataclass
class RunSummary:
    events_in: int = 0
    scored: int = 0
    rejected: int = 0
    batches: int = 0
    commits: int = 0
    rebalances: int = 0
    inference_failures: int = 0
    aborted_transactions: int = 0
    dropped_on_revoke: int = 0
    left_unscored: int = 0
    partitions: set[str] = field(default_factory=set)
    seconds: float = 0.0
    drained: bool = False
    checkpoints: int = 0
    learned_only: int = 0
    """Fingerprinting: replayed events learned without emitting them (their outputs were
    committed after the last checkpoint)."""
    rescored: int = 0
    """Fingerprinting: replayed events emitted again without learning them (already held by the
    restored baselines)."""

    @property
    def events_per_s(self) -> float:
        return self.events_in / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        parts = ",".join(sorted(self.partitions)) or "none"
        text = (
            f"{self.events_in} events: {self.scored} scored, {self.rejected} dead-lettered, "
            f"{self.batches} batches, {self.commits} commits, {self.rebalances} rebalances, "
            f"partitions {parts}, {self.events_per_s:,.0f} events/s"
        )
        if self.inference_failures:
            text += f", {self.inference_failures} failed inference attempts"
        if self.checkpoints:
            text += f", {self.checkpoints} checkpoints"
        if self.learned_only or self.rescored:
            text += (
                f", replay after restart: {self.learned_only} learned only, "
                f"{self.rescored} re-scored only"
            )
        if self.left_unscored:
            text += f", {self.left_unscored} events left for the next run"
        return text


class _Delivery:
    """One produced batch waiting for the broker: its offsets and what is still unacknowledged."""

    __slots__ = ("delivered_at", "error", "events", "offsets", "remaining")

    def __init__(self, offsets: dict[TP, int], events: int) -> None:
        self.offsets = offsets
        self.events = events
        self.remaining = 0
        self.error: KafkaError | None = None
        self.delivered_at = 0.0

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = err
        self.remaining -= 1
        if self.remaining == 0:
            self.delivered_at = time.time()

    @property
    def done(self) -> bool:
        return self.remaining <= 0


class KafkaScoringRunner:
    """Runs the scoring loop on one consumer + one producer until stopped.

    ``source_factory``/``sink_factory`` exist for tests that wrap the real clients (e.g. to
    inject a failed transaction commit); by default they build the real ones from ``config``.
    """

    def __init__(
        self,
        config: PipelineConfig,
        pipeline: ScoringPipeline,
        *,
        engine_name: str | None = None,
        source_factory: Callable[..., KafkaSourceStage] = KafkaSourceStage,
        sink_factory: Callable[[dict[str, Any]], KafkaSinkStage] = KafkaSinkStage,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.config = config
        self.kafka = config.kafka
        self.pipeline = pipeline
        self.engine_name = engine_name or config.inference.engine
        self.metrics = metrics or pipeline_metrics()
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._inflight: deque[_Delivery] = deque()
        self._pending_latency: deque[tuple[_Delivery, ConsumedBatch, BatchResult]] = deque()
        self._carry = ConsumedBatch()
        self._revoked: set[TP] = set()
        self._assignment_changed = False
        self._holding = False
        self._next_lag = 0.0
        k = self.kafka
        self.transactional_id = None
        if k.exactly_once:
            self.transactional_id = (
                k.transactional_id or f"{k.group_id}-{socket.gethostname()}-{os.getpid()}"
            )
        producer_options = k.producer_options()
        if k.exactly_once:
            producer_options.setdefault(
                "transaction.timeout.ms", int(k.transaction_timeout_s * 1000)
            )
        self.sink = sink_factory(
            producer_config(k.bootstrap_servers, producer_options, self.transactional_id)
        )
        self.source = source_factory(
            consumer_config(k.bootstrap_servers, k.group_id, k.consumer_options()),
            k.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        # Fingerprinting (docs/fingerprinting.md, "Durability"): per partition, the next offset
        # the baselines have learned through (restored from the checkpoint) and the group's
        # committed offset at assignment; a replayed event below the first is not learned again,
        # one below the second is not emitted again.
        self.baselines: EntityBaselines | None = pipeline.baselines
        fp = config.fingerprint
        self.checkpoint_path: Path | None = None
        self.checkpoint_interval_s = 10.0
        if fp is not None and self.baselines is not None:
            self.checkpoint_path = fp.checkpoint_file(k.group_id)
            self.checkpoint_interval_s = fp.checkpoint_interval_s
        self._learned: dict[TP, int] = {}
        self._emit_from: dict[TP, int] = {}
        self._next_checkpoint = 0.0
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ control
    @property
    def learned_offsets(self) -> dict[TP, int]:
        """Fingerprinting: per partition, the offset below which every event is in the
        baselines (what the next checkpoint will record). A copy; empty without baselines."""
        return dict(self._learned)

    def request_stop(self) -> None:
        """Drain and stop (thread-safe); a second call stops without waiting."""
        if self._stop.is_set():
            self._abort.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: draining (send it again to stop at once)", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------ main loop
    def run(self, max_events: int | None = None) -> RunSummary:
        """Score until stopped (or ``max_events`` consumed); returns what happened."""
        k = self.kafka
        started = time.perf_counter()
        self._open_checkpoint()
        self.source.check_reachable(k.connect_timeout_s)
        if self.transactional_id:
            self.sink.init_transactions(k.transaction_timeout_s)
            log.info("exactly-once: transactional.id %s", self.transactional_id)
        self.source.subscribe()
        timeout_s = k.batch_timeout_ms / 1000
        try:
            while not self._stop.is_set():
                if max_events is not None and self.summary.events_in >= max_events:
                    break
                batch = self._next_batch(timeout_s)
                self._service()
                if len(batch) == 0:
                    continue
                if self.baselines is not None:
                    self._process_fingerprinted(batch)
                    continue
                scored = self._score(batch)
                if scored is None:
                    continue
                batch, result = scored
                if self.transactional_id:
                    self._emit_transaction(batch, result)
                else:
                    self._emit(batch, result)
                    self._wait_window(k.max_inflight_batches)
            self._drain()
            if not self._abort.is_set():
                self._checkpoint()  # final: the state through everything scored
        except BaseException:
            self._abort.set()
            raise
        finally:
            self.summary.seconds = time.perf_counter() - started
            self._close()
            self._release_checkpoint()
        return self.summary

    def _next_batch(self, timeout_s: float) -> ConsumedBatch:
        if len(self._carry):
            batch, self._carry = self._carry, ConsumedBatch()
            return batch
        return self.source.poll_batch(self.kafka.batch_size, timeout_s)

    # ------------------------------------------------------------------ scoring with retries
    def _prepare(self, batch: ConsumedBatch) -> Prepared:
        """Decode + featurize; an event that makes it *raise* (a bug, not bad input, which the
        featurizer rejects itself) is found by bisection and dead-lettered, so one such event
        cannot stop the stream."""
        try:
            return self.pipeline.prepare(batch.raw)
        except Exception as exc:
            log.warning(
                "featurizing a batch raised %s; isolating the events that cause it",
                type(exc).__name__,
            )
        good: list[int] = []
        dead: list[dict[str, Any]] = []
        self._bisect(batch.raw, list(range(len(batch.raw))), good, dead)
        raw = batch.raw
        prepared = self.pipeline.prepare(
            RawBatch([raw.values[i] for i in good], [raw.origins[i] for i in good])
        )
        prepared.dead_letters.extend(dead)
        return prepared

    def _bisect(
        self, raw: RawBatch, idx: list[int], good: list[int], dead: list[dict[str, Any]]
    ) -> None:
        try:
            self.pipeline.prepare(
                RawBatch([raw.values[i] for i in idx], [raw.origins[i] for i in idx])
            )
        except Exception as exc:
            if len(idx) == 1:
                i = idx[0]
                reason = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
                dead.append(dead_letter_record(raw.values[i], raw.origins[i], reason, "featurize"))
                return
            half = len(idx) // 2
            self._bisect(raw, idx[:half], good, dead)
            self._bisect(raw, idx[half:], good, dead)
            return
        good.extend(idx)

    def _score(
        self, batch: ConsumedBatch, learn: bool = True
    ) -> tuple[ConsumedBatch, BatchResult] | None:
        """Score ``batch``; while inference fails hold it (nothing committed) and retry."""
        prepared = self._prepare(batch)
        prepared_size = len(batch)
        attempt = 0
        outage_started = 0.0
        while True:
            try:
                future = self.pipeline.submit(prepared)
                outputs = None if future is None else future.result()
            except Exception as exc:  # the backend is down or failing: hold, retry
                attempt += 1
                self.summary.inference_failures += 1
                self.metrics.inference_errors.labels(self.engine_name, type(exc).__name__).inc()
                if attempt == 1:
                    outage_started = time.monotonic()
                    self.metrics.engine_up.labels(self.engine_name).set(0)
                    log.warning(
                        "inference failed (%s: %s); holding %d events, offsets not committed, "
                        "retrying with backoff",
                        type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "",
                        len(batch),
                    )
                    self._holding = True
                    self.source.pause_all()
                retry = self.config.retry
                delay = min(retry.max_s, retry.initial_s * 2 ** min(attempt - 1, 30))
                batch = self._hold(batch, delay)
                if self._stop.is_set() or len(batch) == 0:
                    self._end_hold()
                    self.summary.left_unscored += len(batch)
                    if len(batch):
                        log.warning(
                            "stopping during an inference outage: %d events not scored "
                            "(offsets not committed; the next run re-reads them)",
                            len(batch),
                        )
                    return None
                if len(batch) != prepared_size:  # a rebalance took some partitions away
                    prepared = self._prepare(batch)
                    prepared_size = len(batch)
                continue
            result = self.pipeline.finish(prepared, outputs, learn=learn)
            if attempt:
                self._end_hold()
                self.metrics.engine_up.labels(self.engine_name).set(1)
                log.warning(
                    "inference back after %d failed attempts (%.1f s); resuming",
                    attempt,
                    time.monotonic() - outage_started,
                )
            return batch, result

    def _hold(self, batch: ConsumedBatch, delay_s: float) -> ConsumedBatch:
        """Wait ``delay_s`` while serving the consumer (paused) and producer; apply revokes."""
        deadline = time.monotonic() + delay_s
        self._revoked.clear()
        while not self._stop.is_set():
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            extra = self.source.poll_idle(min(wait, 0.2))
            if len(extra):  # should not happen while paused; keep it, in order, for later
                self._append_carry(extra)
            if self._assignment_changed:
                self._assignment_changed = False
                self.source.pause_all()
            self._service()
            if self._revoked:
                batch = batch.without(self._revoked)
                self._carry = self._carry.without(self._revoked)
                self._revoked.clear()
                if len(batch) == 0:
                    break
        return batch

    def _end_hold(self) -> None:
        if self._holding:
            self._holding = False
            self.source.resume_all()

    def _append_carry(self, extra: ConsumedBatch) -> None:
        for value, origin, ts in zip(
            extra.raw.values, extra.raw.origins, extra.timestamps_ms, strict=True
        ):
            tp = (origin.source, origin.partition)
            self._carry.raw.values.append(value)
            self._carry.raw.origins.append(origin)
            self._carry.timestamps_ms.append(ts)
            self._carry.first_offsets.setdefault(tp, origin.offset)
            self._carry.next_offsets[tp] = origin.offset + 1

    # ------------------------------------------------------------------ output
    def _messages(
        self, result: BatchResult
    ) -> tuple[list[tuple[bytes | None, bytes]], list[tuple[bytes | None, bytes]]]:
        scores = score_messages(result.records)
        dead = dead_letter_messages(result.dead_letters, self.kafka.dead_letter_max_bytes)
        return scores, dead

    def _count(self, batch: ConsumedBatch, result: BatchResult) -> None:
        s = self.summary
        s.batches += 1
        s.events_in += len(batch)
        s.scored += len(result.records)
        s.rejected += len(result.dead_letters)

    def _emit(self, batch: ConsumedBatch, result: BatchResult) -> None:
        """At-least-once: produce; the batch commits once its last message is acknowledged."""
        scores, dead = self._messages(result)
        delivery = _Delivery(dict(batch.next_offsets), len(batch))
        delivery.remaining = len(scores) + len(dead)
        if delivery.remaining == 0:  # nothing to send (cannot happen: every value has an output)
            delivery.delivered_at = time.time()
        self._inflight.append(delivery)
        self.sink.produce_all(self.kafka.scores_topic, scores, delivery)
        self.sink.produce_all(self.kafka.dead_letter_topic, dead, delivery)
        self._count(batch, result)
        self._pending_latency.append((delivery, batch, result))
        self.sink.poll(0)

    def _wait_window(self, limit: int) -> None:
        while len(self._inflight) >= limit and not self._abort.is_set():
            self.sink.poll(0.01)
            self._commit_done()

    def _service(self) -> None:
        """Serve delivery reports, commit finished batches, refresh lag now and then."""
        self.sink.poll(0)
        if not self.transactional_id:
            self._commit_done()
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL_S
            self._update_lag()

    def _commit_done(self, asynchronous: bool = True) -> None:
        """Commit, in batch order, every batch whose messages are all acknowledged."""
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
        self._observe_latency()
        if offsets:
            self._commit(offsets, asynchronous)

    def _commit(self, offsets: dict[TP, int], asynchronous: bool) -> None:
        try:
            self.source.commit(offsets, asynchronous=asynchronous)
            self.summary.commits += 1
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in _MEMBERSHIP_ERRORS or err.code() == KafkaError._NO_OFFSET:
                log.warning("commit skipped (%s): the partitions moved", err.str())
            else:
                raise

    def _observe_latency(self) -> None:
        """Latency of acknowledged batches, from each event's produce time to delivery."""
        pending = self._pending_latency
        while pending and pending[0][0].done:
            delivery, batch, result = pending.popleft()
            self._observe(batch, result, delivery.delivered_at)

    def _observe(self, batch: ConsumedBatch, result: BatchResult, delivered_at: float) -> None:
        n = len(result.records)
        if n == 0 or result.featurized is None or len(result.raw or batch.raw) != len(batch.raw):
            return  # (a batch with isolated events: positions no longer line up; skip)
        rows = _record_rows(batch.raw, result)
        step = max(1, n // LATENCY_SAMPLES_PER_BATCH)
        hist = self.metrics.end_to_end_latency
        stamps = batch.timestamps_ms
        for i in range(0, n, step):
            ts = stamps[rows[i]]
            if ts > 0:
                hist.observe(max(0.0, delivered_at - ts / 1000))

    # ------------------------------------------------------------------ exactly-once
    def _emit_transaction(self, batch: ConsumedBatch, result: BatchResult) -> None:
        """One transaction: records + dead letters + the batch's offsets, committed together."""
        k = self.kafka
        scores, dead = self._messages(result)
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(batch.next_offsets.items())]
        for attempt in range(1, 4):
            delivery = _Delivery(dict(batch.next_offsets), len(batch))
            delivery.remaining = len(scores) + len(dead)
            try:
                self.sink.begin_transaction()
                self.sink.produce_all(k.scores_topic, scores, delivery)
                self.sink.produce_all(k.dead_letter_topic, dead, delivery)
                self.sink.send_offsets_to_transaction(
                    offsets, self.source.consumer.consumer_group_metadata(), k.transaction_timeout_s
                )
                self._commit_transaction()
            except KafkaException as exc:
                err = exc.args[0]
                if not err.txn_requires_abort():
                    raise KafkaPipelineError(
                        f"Kafka transaction failed ({err.str()}); nothing of the batch committed"
                    ) from exc
                self.summary.aborted_transactions += 1
                log.warning("transaction aborted (%s); attempt %d", err.str(), attempt)
                self.sink.abort_transaction(k.transaction_timeout_s)
                if err.code() in _MEMBERSHIP_ERRORS:
                    break  # the group moved on: the partitions' owner re-reads the batch
                continue
            self.summary.commits += 1
            self._count(batch, result)
            self._observe(batch, result, time.time())
            return
        # Not committed: read the batch again (if the partitions are still ours).
        self.source.rewind(batch.first_offsets)

    def _commit_transaction(self) -> None:
        timeout = self.kafka.transaction_timeout_s
        while True:
            try:
                self.sink.commit_transaction(timeout)
                return
            except KafkaException as exc:
                if exc.args[0].retriable() and not exc.args[0].txn_requires_abort():
                    continue
                raise

    # ------------------------------------------------------------------ fingerprint durability
    def _process_fingerprinted(self, batch: ConsumedBatch) -> None:
        """Score, learn and emit with baselines: each event learned once, emitted at least once.

        After a restart or a reassignment the replayed events below a partition's checkpoint
        offset are scored against the baselines without learning them again, and those below
        the group's committed offset are learned without being emitted again. A batch mixing
        such events is split by kind; the first kind is processed now, the rest next (through
        ``_carry``, so a revoke still drops what is no longer ours).
        """
        part, learn, emit = self._split(batch)
        if len(part) == 0:
            return
        scored = self._score(part, learn=learn)
        if scored is None:
            return
        part, result = scored
        if learn:
            learned = self._learned
            for tp, nxt in part.next_offsets.items():
                if nxt > learned.get(tp, 0):
                    learned[tp] = nxt
        if not emit:
            self.summary.learned_only += len(part)
        else:
            if not learn:
                self.summary.rescored += len(part)
            if self.transactional_id:
                commits = self.summary.commits
                self._emit_transaction(part, result)
                if self.summary.commits == commits:  # rewound: re-read in order from there
                    self._carry = self._carry.without(set(part.first_offsets))
            else:
                self._emit(part, result)
                self._wait_window(self.kafka.max_inflight_batches)
        if time.monotonic() >= self._next_checkpoint:
            self._checkpoint()

    def _split(self, batch: ConsumedBatch) -> tuple[ConsumedBatch, bool, bool]:
        """(events of one kind, learn them, emit them); the other kinds go back to ``_carry``."""
        learned, emit_from = self._learned, self._emit_from
        if all(
            first >= learned.get(tp, 0) and first >= emit_from.get(tp, 0)
            for tp, first in batch.first_offsets.items()
        ):
            return batch, True, True  # the common case: nothing replayed
        kinds: list[tuple[bool, bool]] = []
        for origin in batch.raw.origins:
            tp = (origin.source, origin.partition)
            kinds.append(
                (origin.offset >= learned.get(tp, 0), origin.offset >= emit_from.get(tp, 0))
            )
        # Per partition the kinds are offset ranges: re-score or learn-only first, then both.
        order = [(False, True), (True, False), (True, True)]
        present = [k for k in order if k in kinds]
        if not present:  # below both marks (a rewind after a failed transaction): done already
            return ConsumedBatch(), False, False
        now = present[0]
        part, rest = ConsumedBatch(), ConsumedBatch()
        for value, origin, ts, kind in zip(
            batch.raw.values, batch.raw.origins, batch.timestamps_ms, kinds, strict=True
        ):
            if kind == (False, False):
                continue
            target = part if kind == now else rest
            tp = (origin.source, origin.partition)
            target.raw.values.append(value)
            target.raw.origins.append(origin)
            target.timestamps_ms.append(ts)
            target.first_offsets.setdefault(tp, origin.offset)
            target.next_offsets[tp] = origin.offset + 1
        if len(rest):
            carry, self._carry = self._carry, rest
            self._append_carry(carry)
        return part, now[0], now[1]

    def _checkpoint(self) -> None:
        """Write the baselines with the offsets they reflect (atomic; see EntityBaselines)."""
        self._next_checkpoint = time.monotonic() + self.checkpoint_interval_s
        if self.checkpoint_path is None or self.baselines is None:
            return
        started = time.perf_counter()
        offsets = {f"{t}:{p}": o for (t, p), o in sorted(self._learned.items())}
        self.baselines.checkpoint(self.checkpoint_path, offsets)
        self.summary.checkpoints += 1
        log.info(
            "checkpoint: %d entities through %d partitions in %.0f ms",
            len(self.baselines),
            len(offsets),
            (time.perf_counter() - started) * 1000,
        )

    def _open_checkpoint(self) -> None:
        """Lock this instance's checkpoint and restore the baselines and offsets from it."""
        self._next_checkpoint = time.monotonic() + self.checkpoint_interval_s
        path = self.checkpoint_path
        if path is None or self.baselines is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise KafkaPipelineError(
                f"fingerprint checkpoint {path} is in use by another process; give each "
                "process its own fingerprint.instance_id (or --instance-id)"
            ) from None
        self._lock_fd = fd
        if not path.exists():
            log.info("fingerprint: no checkpoint at %s; baselines start empty", path)
            return
        try:
            offsets = self.baselines.restore(path)
        except CheckpointError:
            self._release_checkpoint()
            raise
        except (OSError, ValueError, KeyError) as exc:  # a truncated or foreign file
            self._release_checkpoint()
            raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition(":")
            self._learned[(topic, int(partition))] = offset
        log.info(
            "fingerprint: restored %d entities from %s (offsets %s)",
            len(self.baselines),
            path,
            ", ".join(f"{k}={v}" for k, v in sorted(offsets.items())) or "none",
        )

    def _release_checkpoint(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _resume_from_checkpoint(self, partitions: list[TopicPartition]) -> None:
        """Start each assigned partition at min(checkpoint offset, group's committed offset).

        A partition the checkpoint does not know yet is learned from the group's offset on,
        and a checkpoint records that before any of it is learned.

        Everything below the checkpoint offset is in the baselines already (not learned again);
        everything below the committed offset was emitted already (not emitted again). A
        partition with no committed offset starts where ``auto.offset.reset`` says and emits
        everything (at-least-once), still learning only what the checkpoint lacks.
        """
        consumer = self.source.consumer
        try:
            committed = consumer.committed(partitions, timeout=self.kafka.connect_timeout_s)
        except KafkaException as exc:
            raise KafkaPipelineError(
                f"cannot read the group's committed offsets ({exc.args[0].str()}); "
                "fingerprinting needs them to resume its baselines"
            ) from None
        positions = []
        first_time = False
        for part in committed:
            tp = (part.topic, part.partition)
            learned = self._learned.get(tp)
            if learned is None:  # new to these baselines: they learn it from where we start
                first_time = True
                learned = self._learned[tp] = max(part.offset, 0)
            if part.offset >= 0:
                self._emit_from[tp] = part.offset
                start = min(part.offset, learned)
            else:
                self._emit_from[tp] = 0
                start = OFFSET_INVALID
            if learned != part.offset:
                log.info(
                    "%s[%d]: checkpoint at %d, group committed %s: starting at %s",
                    part.topic,
                    part.partition,
                    learned,
                    part.offset if part.offset >= 0 else "none",
                    start if start >= 0 else "auto.offset.reset",
                )
            positions.append(TopicPartition(part.topic, part.partition, start))
        if self.kafka.consumer_options().get("partition.assignment.strategy") == (
            "cooperative-sticky"
        ):
            consumer.incremental_assign(positions)
        else:
            consumer.assign(positions)
        if first_time:
            # Record where these partitions start before learning from them: else a crash
            # before the next checkpoint would resume them at the group's offset, past events
            # this state had learned (the state is consistent here: between batches).
            self._checkpoint()

    # ------------------------------------------------------------------ rebalance
    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        self.summary.rebalances += 1
        self._assignment_changed = True
        names = [f"{p.topic}[{p.partition}]" for p in partitions]
        self.summary.partitions.update(names)
        log.info("assigned %s", ", ".join(names) or "nothing")
        if self.baselines is not None and partitions:
            self._resume_from_checkpoint(partitions)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        log.info("revoked %d partitions: committing what is done", len(revoked))
        if not self.transactional_id and not self._abort.is_set():
            self.sink.flush(self.kafka.drain_timeout_s)
            try:
                self._commit_done(asynchronous=False)
            except KafkaPipelineError as exc:
                # The failed batch stays first in line: the main loop raises it next.
                log.debug("on revoke: %s", exc)
        self._forget(revoked)

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        log.warning("lost %d partitions (session expired): dropping their work", len(partitions))
        self._forget({(p.topic, p.partition) for p in partitions})

    def _forget(self, revoked: set[TP]) -> None:
        """Never commit for partitions we no longer own; drop their unfinished values."""
        for delivery in self._inflight:
            for tp in revoked:
                delivery.offsets.pop(tp, None)
        before = len(self._carry)
        self._carry = self._carry.without(revoked)
        self.summary.dropped_on_revoke += before - len(self._carry)
        self._revoked |= revoked
        self._assignment_changed = True

    # ------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        if self._abort.is_set():
            return
        if not self.transactional_id:
            left = self.sink.flush(self.kafka.drain_timeout_s)
            self._commit_done(asynchronous=False)
            if left:
                log.warning("%d messages unacknowledged after the drain timeout", left)
        self.summary.drained = True

    def _close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # closing after a broker loss must not hide the real error
            log.warning("closing the consumer: %s", exc)
        if not self._abort.is_set():
            self.sink.flush(self.kafka.drain_timeout_s)

    def _update_lag(self) -> None:
        try:
            parts = self.source.consumer.position(self.source.assignment())
        except KafkaException:
            return
        for tp in parts:
            if tp.offset < 0:
                continue
            try:
                _low, high = self.source.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - tp.offset)
                )


def _record_rows(raw: RawBatch, result: BatchResult) -> np.ndarray:
    """For each score record, the index of its value in the raw batch."""
    assert result.featurized is not None
    n = len(raw)
    decode_rejected = [d for d in result.dead_letters if d.get("stage") == "decode"]
    if decode_rejected:
        where = {(o.source, o.partition, o.offset): i for i, o in enumerate(raw.origins)}
        drop = [where[(d["source"], d["partition"], d["offset"])] for d in decode_rejected]
        decoded_rows = np.delete(np.arange(n), drop)
    else:
        decoded_rows = np.arange(n)
    return np.asarray(decoded_rows[result.featurized.positions])


# --------------------------------------------------------------------------- building
def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, models) out of the cyclic GC's sight.

    Scoring allocates many short-lived dicts, which trigger collections; without this every
    full collection re-scans pandas', numpy's and ONNX Runtime's module objects (measured:
    scoring 100k events in the Kafka loop 4.5 s -> 3.1 s on 2 cores).
    """
    gc.collect()
    gc.freeze()


def build_pipeline(config: PipelineConfig) -> tuple[ScoringPipeline, InferenceEngine]:
    """Featurizer + engine (``pipelines.engines.build_engine``) for ``config``."""
    from pipelines.engines import build_engine

    spec = load_spec(config.spec)
    engine = build_engine(config.inference, spec)
    pipeline = ScoringPipeline(
        Featurizer(spec), engine, config.max_event_bytes, baselines=_baselines(config, spec)
    )
    return pipeline, engine


def _baselines(config: PipelineConfig, spec: FeatureSpec) -> EntityBaselines | None:
    fp = config.fingerprint
    if fp is None or not fp.enabled:
        return None
    return EntityBaselines(spec, fp.baselines_config())


def run_pipeline(
    config: PipelineConfig,
    *,
    max_events: int | None = None,
    engine: InferenceEngine | None = None,
    install_signals: bool = True,
) -> RunSummary:
    """Build everything from ``config`` and run until SIGTERM (what ``secureai run`` does)."""
    if engine is None:
        pipeline, engine = build_pipeline(config)
    else:
        spec = load_spec(config.spec)
        pipeline = ScoringPipeline(
            Featurizer(spec), engine, config.max_event_bytes, baselines=_baselines(config, spec)
        )
    if config.metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(config.metrics_port, addr=config.metrics_host)
        except OSError as exc:
            engine.close()
            raise KafkaPipelineError(
                f"cannot serve metrics on {config.metrics_host}:{config.metrics_port} "
                f"({exc.strerror}); "
                "set metrics_port (or --metrics-port 0 to turn metrics off)"
            ) from None
        log.info("metrics on %s:%d/metrics", config.metrics_host, config.metrics_port)
    runner = KafkaScoringRunner(config, pipeline)
    freeze_startup_objects()
    if install_signals:
        runner.install_signal_handlers()
    try:
        return runner.run(max_events=max_events)
    finally:
        engine.close()
