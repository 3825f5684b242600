"""Prometheus metrics of the REST evaluator (on top of the pipeline catalogue it also updates).

``route`` is the route template (``/v1/score``), never the raw path, so a scanner probing random
URLs cannot blow up the label set: unknown paths count as ``other``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "secureai_api_requests_total",
            "HTTP requests answered by the REST evaluator, by route template and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "secureai_api_request_duration_seconds",
            "Time from request received to response sent, by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "secureai_api_inflight_requests",
            "HTTP requests in progress, by route template (capped by "
            "limits.max_concurrent_requests).",
            ["route"],
            registry=registry,
        )


_default: ApiMetrics | None = None


def api_metrics() -> ApiMetrics:
    """The process-wide API metrics (created on first use)."""
    global _default
    if _default is None:
        _default = ApiMetrics()
    return _default
