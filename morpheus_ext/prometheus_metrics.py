"""Prometheus metrics of the scoring pipeline: one catalogue, shared by every runner.

Names follow Prometheus conventions (``secureai_`` prefix, ``_total`` counters, ``_seconds``
histograms). The docs' metrics catalogue (docs/operations.md) and the Grafana dashboards quote
these names; a test checks every dashboard query against a real Prometheus.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class PipelineMetrics:
    """All pipeline metrics, registered once per registry (default: the process registry)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.events_in = Counter(
            "secureai_events_received_total",
            "Raw events taken in by the pipeline (every message of a batch, poison included).",
            registry=registry,
        )
        self.events = Counter(
            "secureai_events_total",
            "Events out of the pipeline, by outcome (scored | rejected = dead-lettered).",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "secureai_dead_letters_total",
            "Events sent to the dead-letter sink, by stage (decode | featurize) and reason class.",
            ["stage", "reason"],
            registry=registry,
        )
        self.anomalies = Counter(
            "secureai_anomalies_total", "Events flagged anomalous.", registry=registry
        )
        self.batch_latency = Histogram(
            "secureai_batch_latency_seconds",
            "Wall time to process one batch (decode to records), by stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_latency = Histogram(
            "secureai_inference_latency_seconds",
            "Latency of one inference request, by engine (inprocess | triton).",
            ["engine"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "secureai_end_to_end_latency_seconds",
            "From the event's produce/ingest time to its score record being delivered.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "secureai_inference_inflight_requests",
            "Inference requests in flight.",
            ["engine"],
            registry=registry,
        )
        self.inference_errors = Counter(
            "secureai_inference_errors_total",
            "Failed inference attempts (each retry counts), by engine and error class.",
            ["engine", "error"],
            registry=registry,
        )
        self.engine_up = Gauge(
            "secureai_inference_up",
            "1 while the inference backend answers, 0 during an outage.",
            ["engine"],
            registry=registry,
        )
        self.model_version = Gauge(
            "secureai_model_version",
            "Model version of the last scored batch.",
            ["model"],
            registry=registry,
        )
        self.window_rows_written = Counter(
            "secureai_window_rows_written_total",
            "Scored events kept in the site's training window.",
            registry=registry,
        )
        self.window_rows_dropped = Counter(
            "secureai_window_rows_dropped_total",
            "Scored events not kept in the training window (writer behind, or a write failed).",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "secureai_consumer_lag_events",
            "Consumer lag per partition where the broker reports it.",
            ["topic", "partition"],
            registry=registry,
        )


_default: PipelineMetrics | None = None


def pipeline_metrics() -> PipelineMetrics:
    """The process-wide metrics (created on first use, so imports register nothing)."""
    global _default
    if _default is None:
        _default = PipelineMetrics()
    return _default


def reason_class(reason: str) -> str:
    """A low-cardinality label for a reject reason: the text before its first colon/quote."""
    head = reason.split(":", 1)[0]
    return head.split("'", 1)[0].strip()[:60] or "other"
