"""The inference hold: while the engine fails, keep the batch (nothing committed) and retry.

A backend outage must neither lose events nor commit past them, and the consumer must stay in
its group. So on the first failed attempt the consumer is paused (and still polled, which keeps
the membership alive), the batch is retried with capped exponential backoff, partitions revoked
meanwhile are dropped from it, and on recovery the same events are scored and the stream
resumes. A stop during an outage leaves the batch unscored and uncommitted: the next run
re-reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from morpheus_ext.pipeline import BatchResult, ScoringPipeline
from morpheus_ext.prometheus_metrics import PipelineMetrics
from morpheus_ext.stages.input.kafka_source import ConsumedBatch, KafkaSourceStage
from pipelines.kafka.backlog import Backlog
from pipelines.kafka.config import RetrySettings
from pipelines.kafka.summary import RunSummary

log = logging.getLogger(__name__)


def backoff_s(retry: RetrySettings, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped.

    >>> [backoff_s(RetrySettings(initial_s=0.5, max_s=3.0), a) for a in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 3.0]
    """
    return min(retry.max_s, retry.initial_s * 2 ** min(attempt - 1, 30))


class InferenceHold:
    """Scores batches for the Kafka runner, holding them through inference outages."""

    def __init__(
        self,
        pipeline: ScoringPipeline,
        source: KafkaSourceStage,
        backlog: Backlog,
        retry: RetrySettings,
        summary: RunSummary,
        metrics: PipelineMetrics,
        engine_name: str,
        stop: threading.Event,
        service: Callable[[], None],
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.backlog = backlog
        self.retry = retry
        self.summary = summary
        self.metrics = metrics
        self.engine_name = engine_name
        self.stop = stop
        self.service = service
        """Called while waiting: delivery reports, commits and lag go on during an outage."""
        self.holding = False

    def score(
        self, batch: ConsumedBatch, learn: bool = True
    ) -> tuple[ConsumedBatch, BatchResult] | None:
        """Score ``batch`` (what is left of it after revokes) or None when stopped meanwhile."""
        prepared = self.pipeline.prepare_isolating(batch.raw)
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
                    self.holding = True
                    self.source.pause_all()
                batch = self._wait(batch, backoff_s(self.retry, attempt))
                if self.stop.is_set() or len(batch) == 0:
                    self.end()
                    self.summary.left_unscored += len(batch)
                    if len(batch):
                        log.warning(
                            "stopping during an inference outage: %d events not scored "
                            "(offsets not committed; the next run re-reads them)",
                            len(batch),
                        )
                    return None
                if len(batch) != prepared_size:  # a rebalance took some partitions away
                    prepared = self.pipeline.prepare_isolating(batch.raw)
                    prepared_size = len(batch)
                continue
            result = self.pipeline.finish(prepared, outputs, learn=learn)
            if attempt:
                self.end()
                self.metrics.engine_up.labels(self.engine_name).set(1)
                log.warning(
                    "inference back after %d failed attempts (%.1f s); resuming",
                    attempt,
                    time.monotonic() - outage_started,
                )
            return batch, result

    def _wait(self, batch: ConsumedBatch, delay_s: float) -> ConsumedBatch:
        """Wait ``delay_s`` while serving the consumer (paused) and producer; apply revokes."""
        deadline = time.monotonic() + delay_s
        backlog = self.backlog
        backlog.revoked.clear()
        while not self.stop.is_set():
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            extra = self.source.poll_idle(min(wait, 0.2))
            if len(extra):  # should not happen while paused; keep it, in order, for later
                backlog.append(extra)
            if backlog.assignment_changed:
                backlog.assignment_changed = False
                self.source.pause_all()
            self.service()
            if backlog.revoked:
                batch = batch.without(backlog.revoked)
                backlog.drop(backlog.revoked)
                backlog.revoked.clear()
                if len(batch) == 0:
                    break
        return batch

    def end(self) -> None:
        """Resume the consumer after an outage (no-op when not holding)."""
        if self.holding:
            self.holding = False
            self.source.resume_all()
