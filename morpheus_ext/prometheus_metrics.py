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
        self.incidents_open = Gauge(
            "secureai_incidents_open",
            "Incidents open in this process's incident stage (bounded by incidents.max_open).",
            registry=registry,
        )
        self.incidents_opened = Counter(
            "secureai_incidents_opened_total",
            "Incidents opened by the incident stage.",
            registry=registry,
        )
        self.incidents_closed = Counter(
            "secureai_incidents_closed_total",
            "Incidents closed, by severity (low | medium | high | critical).",
            ["severity"],
            registry=registry,
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
        self.unassigned = Gauge(
            "secureai_consumer_unassigned_seconds",
            "Seconds this pipeline has had no partition assigned (0 while it owns some).",
            registry=registry,
        )


_default: PipelineMetrics | None = None


def pipeline_metrics() -> PipelineMetrics:
    """The process-wide metrics (created on first use, so imports register nothing)."""
    global _default
    if _default is None:
        _default = PipelineMetrics()
    return _default


REASON_CODES: tuple[tuple[str, str], ...] = (
    ("empty message", "empty"),
    ("event of ", "too_large"),
    ("invalid UTF-8", "invalid_utf8"),
    ("invalid JSON", "invalid_json"),
    ("expected a JSON object", "not_an_object"),
    ("missing required field", "missing_field"),
    ("number is not finite", "not_finite"),
    ("as a time", "bad_timestamp"),
    ("is outside 1970", "bad_timestamp"),
    ("expected a", "wrong_type"),
    ("internal error", "internal"),
)
"""Dead-letter reason -> the code used as the ``reason`` metric label (first match wins). The
detail (field, value, size) stays in the dead-letter record only: a label must not carry it, or
every distinct bad event would create a new Prometheus series."""
REASON_CODE_SET = frozenset(code for _, code in REASON_CODES) | {"other"}


def reason_class(reason: str) -> str:
    """The fixed code for a reject reason (``REASON_CODES``; ``other`` when none matches).

    >>> reason_class("event of 400025 bytes exceeds the 262144-byte limit")
    'too_large'
    >>> reason_class("field 'user': expected a string or number, got ['a']")
    'wrong_type'
    """
    for text, code in REASON_CODES:
        if text in reason:
            return code
    return "other"
