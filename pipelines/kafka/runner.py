"""The Kafka loop: consume -> score -> produce scores + dead letters -> commit after delivery.

One thread drives everything (librdkafka's own threads do the network I/O)::

    poll a batch (size/time bounded)  ->  ScoringPipeline (decode, featurize, infer, records)
      ->  produce score records (key = event id) and dead letters
      ->  the broker acknowledges every message of the batch  ->  commit the batch's offsets

The rooms it uses, one job each: the delivery modes and their offset commits
(``delivery.py``, ``offsets.py``: at-least-once or exactly-once), the inference hold
(``hold.py``: an outage holds the batch and retries), the backlog of consumed values
(``backlog.py``) and, with fingerprinting, the baselines' checkpointer
(``morpheus_ext/stages/postprocess/fingerprint/checkpointer.py``). This module holds the loop,
rebalances, signals and shutdown.

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

import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.pipeline import BatchResult, ScoringPipeline
from morpheus_ext.prometheus_metrics import PipelineMetrics, pipeline_metrics
from morpheus_ext.stages.inference.base import InferenceEngine
from morpheus_ext.stages.input.kafka_source import (
    TP,
    ConsumedBatch,
    KafkaSourceStage,
    consumer_config,
)
from morpheus_ext.stages.output.kafka_sink import KafkaSinkStage, producer_config
from morpheus_ext.stages.output.training_window import TrainingWindowWriter
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines
from morpheus_ext.stages.postprocess.fingerprint.checkpointer import (
    BaselineCheckpointer,
    CheckpointInUse,
)
from morpheus_ext.stages.postprocess.incidents import IncidentTracker
from morpheus_ext.stages.postprocess.leakage import leakage_detector
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.kafka.backlog import Backlog
from pipelines.kafka.campaigns import SiteCorrelation
from pipelines.kafka.config import PipelineConfig
from pipelines.kafka.delivery import FENCED, AtLeastOnce, DeliveryMode, ExactlyOnce
from pipelines.kafka.hold import InferenceHold
from pipelines.kafka.summary import KafkaPipelineError, RunSummary

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0


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
        self.kafka = k = config.kafka
        self.pipeline = pipeline
        self.metrics = metrics or pipeline_metrics()
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._next_lag = 0.0
        self._unassigned_since: float | None = time.monotonic()
        self._next_unassigned_warning = 0.0
        self.backlog = Backlog()
        self.transactional_id = None
        if k.exactly_once:
            # Stable across restarts of this replica (not the pid): the restart's
            # init_transactions then fences the crashed process and aborts its open
            # transaction, which would otherwise hold back read_committed readers of those
            # partitions until the broker times it out (on Tansu 0.6: never; docs/kafka.md).
            self.transactional_id = k.transactional_id or f"{k.group_id}-{socket.gethostname()}"
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
        mode = ExactlyOnce if self.transactional_id else AtLeastOnce
        self.delivery: DeliveryMode = mode(
            k, self.source, self.sink, self.summary, self.metrics, self._abort
        )
        self.hold = InferenceHold(
            pipeline,
            self.source,
            self.backlog,
            config.retry,
            self.summary,
            self.metrics,
            engine_name or config.inference.engine,
            self._stop,
            self._service,
        )
        # Fingerprinting (docs/fingerprinting.md, "Durability"): the baselines' checkpoint and
        # the replay marks that keep each event learned once and emitted at least once.
        self.baselines: EntityBaselines | None = pipeline.baselines
        fp = config.fingerprint
        path = None
        interval_s = 10.0
        if fp is not None and self.baselines is not None:
            path = fp.checkpoint_file(k.group_id)
            interval_s = fp.checkpoint_interval_s
        self.checkpointer = BaselineCheckpointer(self.baselines, path, interval_s)
        # Incidents (docs/triage.md): their state is checkpointed before each offset commit,
        # so every event below a committed offset is in it (a replay re-emits, never re-counts).
        self.incidents = pipeline.incidents
        self.incidents_path = (
            config.incidents.checkpoint_file(k.group_id)
            if self.incidents is not None and config.incidents is not None
            else None
        )
        self._next_incident_checkpoint = 0.0
        self._incident_interval_s = (
            config.incidents.checkpoint_interval_s if config.incidents is not None else 0.0
        )
        if self.incidents_path is not None:
            self.delivery.before_commit = self._checkpoint_incidents
        # Cross-site correlation (docs/triage.md): indicator messages with each batch, campaign
        # notices applied between batches (pipelines/kafka/campaigns.py).
        self.correlation: SiteCorrelation | None = None
        corr = config.correlation
        if corr is not None and corr.enabled and self.incidents is not None:
            try:
                self.correlation = SiteCorrelation(corr, k, self.incidents)
            except ValueError as exc:
                raise KafkaPipelineError(str(exc)) from None
            self.delivery.indicators = self.correlation.indicator_messages
        # The site's training window (docs/loop.md): scored events for its sidecar, written by
        # a background thread; offering a batch never waits.
        self.window = (
            None
            if config.training_window is None
            else TrainingWindowWriter(config.training_window, pipeline.featurizer.spec.event_id)
        )

    # ------------------------------------------------------------------ control
    @property
    def learned_offsets(self) -> dict[TP, int]:
        """Fingerprinting: per partition, the offset below which every event is in the
        baselines (what the next checkpoint will record). A copy; empty without baselines."""
        return dict(self.checkpointer.learned)

    def request_stop(self) -> None:
        """Drain and stop (thread-safe); a second call stops without waiting. The drain ends
        ``drain_timeout_s`` after the first call whatever the broker does."""
        if self._stop.is_set():
            self._abort.set()
        elif self.delivery.drain_by is None:
            self.delivery.drain_by = time.monotonic() + self.kafka.drain_timeout_s
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
        try:
            self.checkpointer.open()
        except CheckpointInUse as exc:
            raise KafkaPipelineError(str(exc)) from None
        if self.incidents is not None and self.incidents_path is not None:
            try:
                self.incidents.restore(self.incidents_path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.checkpointer.release()
                raise KafkaPipelineError(
                    f"incident checkpoint {self.incidents_path} unreadable ({exc}); move it "
                    "away to start with no open incidents"
                ) from None
        self.source.check_reachable(k.connect_timeout_s)
        self.delivery.start()
        if self.correlation is not None:
            self.correlation.start()
        if self.transactional_id:
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
                    self.delivery.idle()
                    continue
                if self.baselines is not None:
                    self._process_fingerprinted(batch)
                    continue
                scored = self.hold.score(batch)
                if scored is not None and self.delivery.emit(*scored):
                    self._keep(scored[1])
            self._drain()
            if not self._abort.is_set():
                self._checkpoint()  # final: the state through everything scored
                self._checkpoint_incidents()
        except KafkaException as exc:
            self._abort.set()
            if self.transactional_id and exc.args and self.sink.is_fenced(exc.args[0]):
                raise KafkaPipelineError(FENCED) from exc  # e.g. surfaced in a revoke's flush
            raise
        except BaseException:
            self._abort.set()
            raise
        finally:
            self.summary.seconds = time.perf_counter() - started
            self._close()
            self.checkpointer.release()
        return self.summary

    def _next_batch(self, timeout_s: float) -> ConsumedBatch:
        if len(self.backlog):
            return self.backlog.take()
        return self.source.poll_batch(
            self.kafka.batch_size, timeout_s, self.kafka.batch_idle_ms / 1000
        )

    def _service(self) -> None:
        """Serve delivery reports, commit finished batches, refresh lag now and then."""
        self.delivery.service()
        if self.correlation is not None:
            self.correlation.poll()
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL_S
            self._update_lag()
            self._check_assignment(now)

    def _check_assignment(self, now: float) -> None:
        """Make a pipeline that owns no partition visible (gauge + a warning now and then)."""
        if self.source.assignment():
            self._unassigned_since = None
            self.metrics.unassigned.set(0)
            return
        since = self._unassigned_since = self._unassigned_since or now
        waited = now - since
        self.metrics.unassigned.set(waited)
        if waited >= self.kafka.unassigned_warn_s and now >= self._next_unassigned_warning:
            self._next_unassigned_warning = now + self.kafka.unassigned_warn_s
            log.warning(
                "no partition assigned for %.0f s (group %s): a spare replica (more replicas "
                "than partitions) or a wedged group; see docs/operations.md, Consumer group "
                "wedged",
                waited,
                self.kafka.group_id,
            )

    # ------------------------------------------------------------------ fingerprint durability
    def _process_fingerprinted(self, batch: ConsumedBatch) -> None:
        """Score, learn and emit with baselines: each event learned once, emitted at least once.

        After a restart or a reassignment the replayed events below a partition's checkpoint
        offset are scored against the baselines without learning them again, and those below
        the group's committed offset are learned without being emitted again. A batch mixing
        such events is split by kind; the first kind is processed now, the rest next (through
        the backlog, so a revoke still drops what is no longer ours).
        """
        part, learn, emit, rest = self.checkpointer.split(batch)
        if len(rest):
            self.backlog.put_first(rest)
        if len(part) == 0:
            return
        scored = self.hold.score(part, learn=learn)
        if scored is None:
            return
        part, result = scored
        if learn:
            self.checkpointer.mark_learned(part.next_offsets)
        if not emit:
            self.summary.learned_only += len(part)
        else:
            if not learn:
                self.summary.rescored += len(part)
            if not self.delivery.emit(part, result):  # rewound: re-read in order from there
                self.backlog.drop(set(part.first_offsets))
            else:
                self._keep(result)
        self._checkpoint_if_due()

    def _keep(self, result: BatchResult) -> None:
        if self.window is not None:
            self.window.offer(result)

    def _checkpoint(self) -> None:
        self.checkpointer.checkpoint()
        self.summary.checkpoints = self.checkpointer.checkpoints

    def _checkpoint_incidents(self, force: bool = True) -> bool:
        """Before offsets commit: write the incidents' state if it changed. At most every
        ``incidents.checkpoint_interval_s`` unless forced (a drain, a revoke, a transaction);
        False: not now (the offsets wait for the next checkpoint)."""
        tracker, path = self.incidents, self.incidents_path
        if tracker is None or path is None or not tracker.dirty:
            return True
        now = time.monotonic()
        if not force and now < self._next_incident_checkpoint:
            return False
        tracker.checkpoint(path)
        self._next_incident_checkpoint = now + self._incident_interval_s
        self.summary.incident_checkpoints += 1
        return True

    def _checkpoint_if_due(self) -> None:
        self.checkpointer.checkpoint_if_due()
        self.summary.checkpoints = self.checkpointer.checkpoints

    def _resume_from_checkpoint(self, partitions: list[TopicPartition]) -> None:
        """Start each assigned partition at min(checkpoint offset, group's committed offset)."""
        consumer = self.source.consumer
        try:
            committed = consumer.committed(partitions, timeout=self.kafka.connect_timeout_s)
        except KafkaException as exc:
            raise KafkaPipelineError(
                f"cannot read the group's committed offsets ({exc.args[0].str()}); "
                "fingerprinting needs them to resume its baselines"
            ) from None
        starts, first_time = self.checkpointer.start_offsets(
            [((p.topic, p.partition), p.offset) for p in committed]
        )
        positions = [
            TopicPartition(t, p, start if start >= 0 else OFFSET_INVALID)
            for (t, p), start in starts
        ]
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
        self.backlog.assignment_changed = True
        names = [f"{p.topic}[{p.partition}]" for p in partitions]
        self.summary.partitions.update(names)
        log.info("assigned %s", ", ".join(names) or "nothing")
        if self.baselines is not None and partitions:
            self._resume_from_checkpoint(partitions)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        log.info("revoked %d partitions: committing what is done", len(revoked))
        self.delivery.on_revoke(revoked)
        self.summary.dropped_on_revoke += self.backlog.forget(revoked)

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        log.warning("lost %d partitions (session expired): dropping their work", len(partitions))
        revoked = {(p.topic, p.partition) for p in partitions}
        self.delivery.forget(revoked)
        self.summary.dropped_on_revoke += self.backlog.forget(revoked)

    # ------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        if self._abort.is_set():
            return
        self.delivery.drain()
        self.summary.drained = True

    def _close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.summary.window_rows = self.window.rows_written
            self.summary.window_rows_dropped = self.window.rows_dropped
        closer = threading.Thread(target=self._close_consumer, daemon=True)
        closer.start()  # leaving the group needs a broker: never wait past the drain for it
        closer.join(timeout=max(1.0, self.delivery.time_left()))
        if closer.is_alive():
            log.warning("the consumer did not close before the drain deadline (broker gone?)")
        if not self._abort.is_set():
            self.sink.flush(self.delivery.time_left())
        if self.correlation is not None:
            self.correlation.close(0.0 if self._abort.is_set() else self.delivery.time_left())

    def _close_consumer(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # closing after a broker loss must not hide the real error
            log.warning("closing the consumer: %s", exc)

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
        Featurizer(spec),
        engine,
        config.max_event_bytes,
        baselines=_baselines(config, spec),
        leakage=leakage_detector(config.leakage),
        incidents=_incidents(config),
    )
    return pipeline, engine


def _baselines(config: PipelineConfig, spec: FeatureSpec) -> EntityBaselines | None:
    fp = config.fingerprint
    if fp is None or not fp.enabled:
        return None
    return EntityBaselines(spec, fp.baselines_config())


def _incidents(config: PipelineConfig) -> IncidentTracker | None:
    inc = config.incidents
    return IncidentTracker(inc) if inc is not None and inc.enabled else None


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
            Featurizer(spec),
            engine,
            config.max_event_bytes,
            baselines=_baselines(config, spec),
            leakage=leakage_detector(config.leakage),
            incidents=_incidents(config),
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
