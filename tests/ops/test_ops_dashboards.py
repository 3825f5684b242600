"""Every PromQL query of both Grafana dashboards returns data from a real Prometheus.

What runs (all real, on 127.0.0.1): Prometheus (Debian package, scripts/ops/prometheus.py)
scraping every second

* ``pipeline`` — this process's Prometheus endpoint (``prometheus_client.start_http_server``),
  fed by the Kafka scoring loop (Tansu broker, ``KafkaScoringRunner``) scoring on a real CPU
  Triton, with poison events, plus the REST evaluator (uvicorn) scoring in-process;
* ``triton`` — Triton's own ``/metrics`` (``nv_*``);
* ``federated`` — an endpoint of ``federated.prometheus_metrics.FLMetrics`` (the federated server's
  catalogue) holding a 3-site run's numbers,
* ``loop`` — a site's sidecar (its metrics endpoint; a real drift measurement on a drifted
  training window and a privacy ledger) reporting over HTTP to a coordinator's inbox, whose own
  ``/metrics`` also holds one finished run,

with the alert rules loaded. Traffic keeps flowing while the queries are asked, so rates and
quantiles have real samples; a query "returns data" when it yields at least one finite value.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, start_http_server

from federated.coordinator import Coordinator, CoordinatorConfig, CoordinatorMetrics
from federated.drift import DriftConfig
from federated.ledger import PrivacyLedger
from federated.prometheus_metrics import FLMetrics
from federated.sidecar import Sidecar, SidecarConfig, SidecarMetrics
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.prometheus_metrics import PipelineMetrics, pipeline_metrics
from morpheus_ext.stages.inference.triton import RetryPolicy, TritonEngine, TritonEngineError
from pipelines.engines import InferenceConfig
from pipelines.kafka import KafkaScoringRunner, build_pipeline
from pipelines.rest.prometheus_metrics import ApiMetrics, api_metrics
from scripts.ops.prometheus import PrometheusServer, free_port
from tests.federated.test_loop_services import site_with_window
from tests.kafka_fixtures import (
    kafka_broker,  # noqa: F401  (fixture)
    make_topics,
    pipeline_config,
    produce,
    synthetic_values,
)
from tests.pipelines.test_rest_api import Api, api_config, synthetic_events

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO_ROOT / "dashboards"
ALERTS = REPO_ROOT / "docker" / "prometheus" / "alerts.yml"
RATE_WINDOW = "30s"
"""Stands in for Grafana's ``$__rate_interval`` (>= 2 scrapes at the 1 s test interval)."""
DEADLINE_S = 30.0


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) for every target of every panel."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                out.append((path.name, panel["title"], target["expr"]))
    return out


def promql(expr: str) -> str:
    """A dashboard expression as Prometheus receives it from Grafana."""
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    assert "$" not in expr, f"unresolved Grafana variable in {expr!r}"
    return expr


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def publish_fl_run(metrics: FLMetrics) -> None:
    """A 3-site DP run after round 2 of 3, as federated/server.py + monitor.py record it."""
    metrics.info.labels("fed-20261124-120000", "fedmedian", "True").set(1)
    metrics.rounds_planned.set(3)
    metrics.round.set(2)
    for state, n in {"sampled": 3, "returned": 2, "failed": 0, "timed_out": 1}.items():
        metrics.clients.labels(state).set(n)
        metrics.clients_total.labels(state).inc(2 * n)
    metrics.train_loss.set(0.0123)
    metrics.validation_loss.set(0.0141)
    metrics.public_loss.set(0.0150)
    for site, eps in {"site-0": 1.8, "site-1": 2.1, "site-2": 2.0}.items():
        metrics.epsilon.labels(site).set(eps)
    metrics.epsilon_max.set(2.1)
    metrics.round_seconds.set(14.2)
    for site, norm in {"site-0": 0.8, "site-1": 0.9, "site-2": 0.85}.items():
        metrics.update_norm.labels(site).set(norm)
    for site, steps in {"site-0": 2 * 40, "site-1": 2 * 37, "site-2": 1 * 41}.items():
        metrics.local_steps.labels(site).inc(steps)
    for site, left in {"site-0": 8.2, "site-1": 7.9, "site-2": 8.0}.items():
        metrics.budget_left.labels(site).set(left)
    # a previous run's publish step (monitor.site_publish): two published, one refused
    for site, outcome, served in (("site-0", "published", 2), ("site-1", "published", 2)):
        metrics.site_versions.labels(site, outcome).inc()
        metrics.site_served_version.labels(site).set(served)
    metrics.site_versions.labels("site-2", "refused").inc()
    metrics.site_served_version.labels("site-2").set(1)


def start_loop(work: Path) -> tuple[Coordinator, Any, int]:
    """A coordinator's inbox + /metrics and one site's sidecar that has reported once (real
    drift measurement, real HTTP); the coordinator also records one finished drift run as
    ``Coordinator.run_federation`` does. Returns (coordinator, sidecar server, sidecar port)."""
    port = free_port()
    coordinator = Coordinator(CoordinatorConfig(work_dir=work / "coordinator", reports_port=port))
    coordinator._serve_http()
    repo, window = site_with_window(work / "site-0", drift=True)
    ledger = PrivacyLedger.open(work / "site-0" / "ledger" / "site-0.json", "site-0", 10.0)
    ledger.record("loop-20261205-1", 2.99, 1e-5, {"rounds": 5})
    sidecar = Sidecar(
        SidecarConfig(
            site="site-0",
            window=window,
            repository=repo,
            ledger_dir=work / "site-0" / "ledger",
            coordinator_url=f"http://127.0.0.1:{port}",
            drift=DriftConfig(hours=1.0, min_rows=500),
        )
    )
    report = sidecar.report_once()
    assert report["drifted"] and report["epsilon_spent"] == pytest.approx(2.99)
    coordinator._observe(
        {
            "rounds_completed": 5,
            "epsilon": {"site-0": 2.99},
            "site_publish": {"site-0": {"published": 1, "refused": 0}},
        }
    )
    coordinator.metrics.runs.labels("drift", "completed").inc()
    coordinator.metrics.run_seconds.set(212.0)
    sidecar_port = free_port()
    server, _ = start_http_server(sidecar_port, addr="127.0.0.1", registry=sidecar.metrics.registry)
    return coordinator, server, sidecar_port


@pytest.fixture(scope="module")
def triton(triton_server: Any) -> Any:
    return triton_server


class Traffic:
    """Keeps events flowing through Kafka and the REST API until stopped."""

    def __init__(self, broker: Any, topic: str, api: Api) -> None:
        self.broker, self.topic, self.api = broker, topic, api
        self.values = list(synthetic_values(4000, seed=21))
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.rest_events = synthetic_events(40, seed=22)

    def _run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                chunk: list[bytes | None] = list(self.values[i % 3800 : i % 3800 + 200])
                chunk[5] = b"{not json"
                chunk[9] = b'{"event_id": "no-timestamp"}'
                produce(self.broker, self.topic, chunk)
                status, _ = self.api.post_json("/v1/score", {"events": [*self.rest_events, 7]})
                assert status == 200
                i += 200
                self.stop.wait(0.3)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def stack(
    kafka_broker: Any,  # noqa: F811
    triton: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    spec = load_spec("security_events")
    work = tmp_path_factory.mktemp("ops-dashboards")

    # One request Triton refuses (wrong tensor width): a real inference error, before the
    # pipeline's own engine marks the backend up.
    bad = TritonEngine(
        triton.grpc_url,
        spec.spec_hash,
        retry=RetryPolicy(initial_s=0.05, max_s=0.05, max_outage_s=0.2),
    )
    with pytest.raises(TritonEngineError):
        bad.infer(np.zeros((2, 255), np.float32))
    bad.close()

    topics = make_topics(kafka_broker)
    config = pipeline_config(kafka_broker, topics, REPO_ROOT / "triton_model_repository")
    config = config.model_copy(
        update={
            "inference": InferenceConfig(engine="triton", url=triton.grpc_url, connect_timeout_s=30)
        }
    )
    pipeline, engine = build_pipeline(config)
    runner = KafkaScoringRunner(config, pipeline)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()

    fl = FLMetrics()
    publish_fl_run(fl)
    fl_port = free_port()
    fl_server = fl.serve(fl_port)

    coordinator, sidecar_server, sidecar_port = start_loop(work)
    coordinator_port = coordinator.config.reports_port

    pipeline_metrics()  # registered before the first scrape
    pipeline_port = free_port()
    metrics_server, _ = start_http_server(pipeline_port, addr="127.0.0.1", registry=REGISTRY)

    os.environ["SECUREAI_API_TOKEN"] = "test-token-0123456789abcdef"
    api = Api(api_config(REPO_ROOT / "triton_model_repository"))
    prom = PrometheusServer(
        work / "prometheus",
        {
            "pipeline": [f"127.0.0.1:{pipeline_port}"],
            "triton": [f"127.0.0.1:{triton.metrics_port}"],
            "federated": [f"127.0.0.1:{fl_port}"],
            "loop": [f"127.0.0.1:{coordinator_port}", f"127.0.0.1:{sidecar_port}"],
        },
        rule_files=[str(ALERTS)],
    )
    try:
        with api:
            api.wait_ready()
            with Traffic(kafka_broker, topics.events, api) as traffic, prom:
                yield prom
                assert not traffic.errors, traffic.errors
    finally:
        os.environ.pop("SECUREAI_API_TOKEN", None)
        runner.request_stop()
        worker.join(timeout=60)
        engine.close()
        metrics_server.shutdown()
        fl_server.shutdown()
        sidecar_server.shutdown()
        coordinator.stop()


def test_every_dashboard_query_returns_data(stack: PrometheusServer) -> None:
    queries = dashboard_queries()
    assert len({d for d, _, _ in queries}) == 2 and len(queries) > 30
    missing: dict[str, str] = {}
    deadline = time.monotonic() + DEADLINE_S
    pending = list(queries)
    while pending and time.monotonic() < deadline:
        still = []
        for dash, title, expr in pending:
            result = stack.query(promql(expr))  # a syntax error raises here, at once
            if has_finite_value(result):
                continue
            still.append((dash, title, expr))
            missing[expr] = f"{dash} / {title}: {result[:2]}"
        pending = still
        if pending:
            time.sleep(1)
    assert not pending, "queries without data:\n" + "\n".join(
        f"{missing[e]}\n    {e}" for _, _, e in pending
    )
    assert stack.targets_up() == {
        "pipeline": True,
        "triton": True,
        "federated": True,
        "loop": True,
    }


def test_alert_rules_load_and_evaluate_on_live_data(stack: PrometheusServer) -> None:
    deadline = time.monotonic() + 20
    while True:
        groups = stack.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = [r for r in rules if r.get("lastEvaluation", "").startswith("20")]
        if len(evaluated) == len(rules) and rules:
            break
        assert time.monotonic() < deadline, "rules were not evaluated"
        time.sleep(0.5)
    assert len(rules) == 13
    assert all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ]
    # A healthy stack: the outage, stall and server-error alerts are not even pending.
    quiet = {"SecureAIInferenceBackendDown", "SecureAIPipelineStalled", "SecureAITargetDown"}
    active = {a["labels"]["alertname"] for a in stack.api("alerts")["alerts"]}
    assert not quiet & active, active


def test_dashboards_cover_the_metric_catalogues() -> None:
    """Every metric the pipeline, the API, the FL server and the loop's services export has
    a panel."""
    from prometheus_client import CollectorRegistry

    exprs = " ".join(e for _, _, e in dashboard_queries())
    used = set(re.findall(r"\b(secureai_[a-z_]+)", exprs))
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    ApiMetrics(registry)
    FLMetrics(registry)
    SidecarMetrics(registry)
    registries = [registry, CoordinatorMetrics().registry]
    exported = set()
    for metric in (m for r in registries for m in r.collect()):
        kind = metric.type
        name = metric.name + ("_total" if kind == "counter" else "")
        exported.add(name)
    used_base = {re.sub(r"_(bucket|sum|count)$", "", u) for u in used}
    assert exported - used_base == set(), "metrics without a panel"
    assert used_base - exported == set(), "panels on metrics nobody exports"
    api_metrics()  # the process-wide instance exists (used by the REST app)
