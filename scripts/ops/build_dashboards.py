"""Write the Grafana dashboards (``dashboards/*.json``) from the panel lists below.

    python scripts/ops/build_dashboards.py          # rewrite dashboards/ and the chart's copy
    python scripts/ops/build_dashboards.py --check  # exit 1 if a committed file is stale

The JSON files are what Grafana provisions (docker-compose, Helm); this script keeps their
layout uniform and their queries in one readable place. Every query is checked against a real
Prometheus scraping a running pipeline, Triton and a federated-metrics endpoint
(tests/ops/test_ops_dashboards.py). Metric names: morpheus_ext/prometheus_metrics.py (pipeline),
pipelines/rest/prometheus_metrics.py (REST API), federated/prometheus_metrics.py (FL),
federated/sidecar.py and federated/coordinator.py (the loop), Triton's own ``nv_*``.
``$__rate_interval`` is Grafana's; the test substitutes a window.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIRS = (REPO_ROOT / "dashboards", REPO_ROOT / "helm" / "secureai" / "dashboards")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
R = "[$__rate_interval]"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def quantiles(metric: str, by: str, label: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
            f"(rate({metric}_bucket{R})))",
            f"p{round(q * 100)}{' ' + label if label else ''}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def per_request(numerator: str, by: str) -> str:
    """Average of a Triton ``*_duration_us`` counter per successful request, in seconds."""
    return (
        f"sum by ({by}) (rate({numerator}{R})) / 1e6 / "
        f"clamp_min(sum by ({by}) (rate(nv_inference_request_success{R})), 1e-9)"
    )


INFERENCE = [
    Row(
        "Throughput and rejects",
        [
            Panel(
                "Events per second in and out by outcome",
                [
                    (f"sum(rate(secureai_events_received_total{R}))", "in"),
                    (f"sum by (outcome) (rate(secureai_events_total{R}))", "out: {{outcome}}"),
                ],
                unit="ops",
                description="Events taken in, and out as score records (scored) or dead "
                "letters (rejected). In above out for long: batches are held (Triton outage).",
            ),
            Panel(
                "Reject ratio",
                [
                    (
                        f'sum(rate(secureai_events_total{{outcome="rejected"}}{R})) / '
                        f"clamp_min(sum(rate(secureai_events_total{R})), 1e-9)",
                        "rejected / all",
                    )
                ],
                unit="percentunit",
                description="Share of events sent to the dead-letter sink.",
            ),
            Panel(
                "Dead letters per second by stage and reason",
                [
                    (
                        f"sum by (stage, reason) (rate(secureai_dead_letters_total{R}))",
                        "{{stage}}: {{reason}}",
                    )
                ],
                unit="ops",
                description="Poison input by where it was caught (decode | featurize).",
            ),
            Panel(
                "Anomalies per second and anomaly ratio",
                [
                    (f"sum(rate(secureai_anomalies_total{R}))", "anomalies/s"),
                    (
                        f"sum(rate(secureai_anomalies_total{R})) / "
                        f'clamp_min(sum(rate(secureai_events_total{{outcome="scored"}}{R})), 1e-9)',
                        "anomaly ratio",
                    ),
                ],
                unit="short",
                description="Flagged events; the ratio should sit near the calibrated FPR.",
            ),
            Panel(
                "Incidents: open, opened and closed by severity",
                [
                    ("sum(secureai_incidents_open)", "open"),
                    (f"sum(rate(secureai_incidents_opened_total{R}))", "opened/s"),
                    (
                        f"sum by (severity) (rate(secureai_incidents_closed_total{R}))",
                        "closed/s {{severity}}",
                    ),
                ],
                unit="short",
                description="The incident stage (docs/triage.md): flagged events grouped by "
                "entity, reasons and session gap; open is bounded by incidents.max_open.",
            ),
            Panel(
                "Training window: events kept and not kept per second",
                [
                    (f"sum(rate(secureai_window_rows_written_total{R}))", "kept"),
                    (f"sum(rate(secureai_window_rows_dropped_total{R}))", "not kept"),
                ],
                unit="ops",
                description="Scored events written to the site's training window (docs/loop.md)"
                "; 'not kept': the writer fell behind or a write failed (scoring never waits).",
            ),
        ],
    ),
    Row(
        "Latency",
        [
            Panel(
                "Inference latency by engine",
                quantiles("secureai_inference_latency_seconds", "engine", "{{engine}}"),
                unit="s",
                description="One inference request (in-process ONNX Runtime or Triton).",
            ),
            Panel(
                "End-to-end latency (produce to score record)",
                quantiles("secureai_end_to_end_latency_seconds", "", ""),
                unit="s",
                description="Kafka timestamp of the event to its score record acknowledged.",
            ),
            Panel(
                "Batch latency p99 by stage",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, stage) "
                        f"(rate(secureai_batch_latency_seconds_bucket{R})))",
                        "{{stage}}",
                    )
                ],
                unit="s",
                description="prepare = decode + featurize, records, total per batch.",
            ),
            Panel(
                "Inference requests in flight",
                [("sum by (engine) (secureai_inference_inflight_requests)", "{{engine}}")],
                description="Requests waiting on Triton; pinned at max_in_flight = saturated.",
            ),
        ],
    ),
    Row(
        "Backend health, model and Kafka",
        [
            Panel(
                "Inference backend up",
                [("min by (engine) (secureai_inference_up)", "{{engine}}")],
                kind="stat",
                width=6,
                description="0 during an outage: batches are held and retried, never dropped.",
                extra={
                    "options": {"colorMode": "background", "graphMode": "none"},
                    "thresholds": [("red", None), ("green", 1)],
                },
            ),
            Panel(
                "Model version scored",
                [("max by (model) (secureai_model_version)", "{{model}}")],
                kind="stat",
                width=6,
                description="MODEL_VERSION of the last scored batch (after a publish/rollback).",
                extra={"options": {"colorMode": "value", "graphMode": "none"}},
            ),
            Panel(
                "Inference errors per second",
                [
                    (
                        f"sum by (engine, error) (rate(secureai_inference_errors_total{R}))",
                        "{{engine}} {{error}}",
                    )
                ],
                unit="ops",
                description="Failed attempts (each retry counts) by error class.",
            ),
            Panel(
                "Consumer lag by topic",
                [("sum by (topic) (secureai_consumer_lag_events)", "{{topic}}")],
                description="Events behind the head of each input topic.",
            ),
            Panel(
                "Seconds without an assigned partition",
                [("max by (instance) (secureai_consumer_unassigned_seconds)", "{{instance}}")],
                unit="s",
                description="0 while the process owns partitions. Growing: a spare replica "
                "(more replicas than partitions) or a wedged consumer group "
                "(docs/operations.md, Consumer group wedged).",
                extra={"thresholds": [("green", None), ("orange", 60), ("red", 300)]},
            ),
        ],
    ),
    Row(
        "Triton Inference Server",
        [
            Panel(
                "Triton successful requests per second by model",
                [(f"sum by (model) (rate(nv_inference_request_success{R}))", "{{model}}")],
                unit="reqps",
            ),
            Panel(
                "Triton average request and queue time by model",
                [
                    (per_request("nv_inference_request_duration_us", "model"), "{{model}} request"),
                    (per_request("nv_inference_queue_duration_us", "model"), "{{model}} queue"),
                ],
                unit="s",
                description="Server-side time per request; queue time grows when saturated.",
            ),
            Panel(
                "Triton failed requests per second",
                [(f"sum by (model) (rate(nv_inference_request_failure{R}))", "{{model}}")],
                unit="reqps",
            ),
            Panel(
                "Triton pending requests",
                [("sum by (model) (nv_inference_pending_request_count)", "{{model}}")],
            ),
        ],
    ),
    Row(
        "REST evaluator",
        [
            Panel(
                "API requests per second by route and status",
                [
                    (
                        f"sum by (route, status) (rate(secureai_api_requests_total{R}))",
                        "{{route}} {{status}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "API latency p99 by route",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, route) "
                        f"(rate(secureai_api_request_duration_seconds_bucket{R})))",
                        "{{route}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "API requests in progress by route",
                [("sum by (route) (secureai_api_inflight_requests)", "{{route}}")],
                description="Open requests; beyond limits.max_concurrent_requests uvicorn "
                "answers 503 at once.",
            ),
        ],
    ),
]

FEDERATED = [
    Row(
        "Run",
        [
            Panel(
                "Round",
                [
                    ("max(secureai_fl_round)", "completed"),
                    ("max(secureai_fl_rounds_planned)", "planned"),
                ],
                kind="stat",
                width=6,
                extra={"options": {"colorMode": "value", "graphMode": "none"}},
            ),
            Panel(
                "Largest epsilon spent",
                [("max(secureai_fl_epsilon_max)", "epsilon")],
                kind="stat",
                width=6,
                description="Largest privacy budget any site has spent in this run.",
                extra={
                    "options": {"colorMode": "background", "graphMode": "area"},
                    "thresholds": [("green", None), ("orange", 3), ("red", 8)],
                },
            ),
            Panel(
                "Run",
                [("max by (fl_run_id, strategy, dp) (secureai_fl_run_info)", "{{fl_run_id}}")],
                kind="table",
                description="Run id, aggregation strategy and whether DP-SGD is on.",
                extra={"format": "table", "instant": True},
            ),
        ],
    ),
    Row(
        "Participation",
        [
            Panel(
                "Sites in the last round by state",
                [("sum by (state) (secureai_fl_round_clients)", "{{state}}")],
                description="sampled, returned, failed (error reply), timed_out (straggler).",
            ),
            Panel(
                "Site-round failure ratio",
                [
                    (
                        'sum(secureai_fl_clients_total{state=~"failed|timed_out"}) / '
                        'clamp_min(sum(secureai_fl_clients_total{state="sampled"}), 1)',
                        "failed or timed out / sampled",
                    )
                ],
                unit="percentunit",
            ),
        ],
    ),
    Row(
        "Training",
        [
            Panel(
                "Losses of the global model",
                [
                    ("max(secureai_fl_train_loss)", "train (sites, weighted)"),
                    ("max(secureai_fl_validation_loss)", "validation (sites, weighted)"),
                    ("max(secureai_fl_public_loss)", "public sample (server)"),
                ],
            ),
            Panel(
                "Epsilon spent by site",
                [("max by (site) (secureai_fl_epsilon)", "{{site}}")],
                description="RDP accountant at the run's delta; never reset within a run.",
            ),
            Panel(
                "Update norm by site",
                [("max by (site) (secureai_fl_update_norm)", "{{site}}")],
                description="L2 norm of local - global: a poisoned update stands out here.",
            ),
            Panel(
                "Round duration",
                [("max(secureai_fl_round_duration_seconds)", "last round")],
                unit="s",
            ),
        ],
    ),
    Row(
        "Sites (as each site reports it)",
        [
            Panel(
                "Local optimizer steps by site (run total)",
                [("max by (site) (secureai_fl_local_steps_total)", "{{site}}")],
                description="Steps each site reports per train reply, summed over the run.",
            ),
            Panel(
                "Privacy budget left by site",
                [("min by (site) (secureai_fl_budget_left_epsilon)", "{{site}}")],
                description="Lifetime epsilon a site's ledger still allows; at 0 it refuses "
                "to train (a failed reply).",
                extra={"thresholds": [("red", None), ("orange", 1), ("green", 3)]},
            ),
            Panel(
                "Final model at each site: published or refused",
                [
                    (
                        "sum by (site, outcome) (secureai_fl_site_versions_total)",
                        "{{site}}: {{outcome}}",
                    ),
                    ("max by (site) (secureai_fl_site_served_version)", "{{site}}: serves v"),
                ],
                description="Each site gates the run's final model on its own held-out rows "
                "(docs/loop.md); refused: it keeps serving what it served.",
            ),
        ],
    ),
    Row(
        "The living loop (secureai sidecar at each site, secureai coordinator)",
        [
            Panel(
                "Drift ratio by site (flagged rate / calibrated target)",
                [
                    ("max by (site) (secureai_site_drift_ratio)", "{{site}}"),
                    (
                        "max by (site) (secureai_coordinator_site_drift_ratio)",
                        "{{site}} (received)",
                    ),
                ],
                description="A site reports drift at a ratio >= drift.flagged_ratio (3); the "
                "coordinator starts a run once it has been sustained (docs/loop.md).",
                extra={"thresholds": [("green", None), ("orange", 2), ("red", 3)]},
            ),
            Panel(
                "Flagged rate of the served version by site",
                [
                    ("max by (site) (secureai_site_flagged_rate)", "{{site}}"),
                    ("max by (site) (secureai_site_drifted)", "{{site}}: drifting"),
                ],
                unit="percentunit",
                description="Share of the drift window's events (scored by the served version) "
                "above its threshold.",
            ),
            Panel(
                "Served version and window rows by site",
                [
                    ("max by (site) (secureai_site_served_version)", "{{site}}: serves v"),
                    ("max by (site) (secureai_site_window_rows)", "{{site}}: rows in drift window"),
                ],
            ),
            Panel(
                "Lifetime epsilon by site (ledger)",
                [
                    ("max by (site) (secureai_site_epsilon_spent)", "{{site}}: spent"),
                    ("min by (site) (secureai_site_epsilon_left)", "{{site}}: left"),
                    (
                        "max by (site) (secureai_coordinator_site_epsilon_lifetime)",
                        "{{site}}: spent (reported)",
                    ),
                    ("max by (site) (secureai_coordinator_site_epsilon)", "{{site}}: last run"),
                ],
                description="Each site's own ledger adds runs up (basic composition); a run "
                "over the site's lifetime budget is refused before training.",
            ),
            Panel(
                "Federated runs by trigger and status",
                [
                    (
                        "sum by (trigger, status) (secureai_coordinator_runs_total)",
                        "{{trigger}}: {{status}}",
                    ),
                    ("max(secureai_coordinator_last_run_rounds)", "last run: rounds"),
                    ("max(secureai_coordinator_sites)", "last run: sites"),
                ],
            ),
            Panel(
                "Last run duration",
                [("max(secureai_coordinator_last_run_seconds)", "seconds")],
                unit="s",
            ),
            Panel(
                "Versions the sites gated, by outcome",
                [
                    (
                        "sum by (site, outcome) (secureai_coordinator_site_versions_total)",
                        "{{site}}: {{outcome}}",
                    )
                ],
            ),
            Panel(
                "Sidecar health",
                [
                    (
                        "sum by (site, result) (secureai_site_drift_reports_total)",
                        "{{site}}: reports {{result}}",
                    ),
                    (
                        "sum by (site) (secureai_site_supernode_restarts_total)",
                        "{{site}}: SuperNode restarts",
                    ),
                ],
                description="Failed reports: the coordinator is unreachable (the site keeps "
                "scoring and retries); restarts: the sidecar restarted its SuperNode.",
            ),
        ],
    ),
]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, (expr, legend) in enumerate(panel.targets):
        t: dict[str, Any] = {
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
            "refId": chr(ord("A") + i),
        }
        if panel.extra.get("format"):
            t["format"] = panel.extra["format"]
        if panel.extra.get("instant"):
            t["instant"] = True
            t["range"] = False
        targets.append(t)
    steps = [
        {"color": color, "value": value}
        for color, value in panel.extra.get("thresholds", [("green", None)])
    ]
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
            **panel.extra.get("options", {}),
        }
    elif panel.kind == "table":
        options = {"showHeader": True}
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height if panel.kind != "stat" else 5, "w": panel.width,
                    "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": options,
        "targets": targets,
    }  # fmt: skip
    if panel.description:
        out["description"] = panel.description
    return out


def dashboard(uid: str, title: str, description: str, rows: list[Row]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            p = _panel_json(panel, pid, x, y)
            panels.append(p)
            line_height = max(line_height, p["gridPos"]["h"])
            pid, x = pid + 1, x + panel.width
        y += line_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["secureai"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                    "refresh": 1,
                    "options": [],
                }
            ]
        },
        "panels": panels,
    }


DASHBOARDS = {
    "inference-latency.json": dashboard(
        "secureai-inference",
        "SecureAI — scoring pipeline and inference latency",
        "Throughput, rejects, anomalies, latency (inference, batch, end to end), backend "
        "health, model version, consumer lag, Triton server metrics and the REST evaluator.",
        INFERENCE,
    ),
    "fedmetrics.json": dashboard(
        "secureai-fedmetrics",
        "SecureAI — federated retraining",
        "Rounds, site participation (sampled / returned / failed / timed out), losses, "
        "privacy budget (epsilon) per site and update norms of the federated run; the living "
        "loop's drift signal, runs and versions.",
        FEDERATED,
    ),
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name], indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check the committed files")
    args = p.parse_args(argv)
    stale = []
    for out_dir in OUT_DIRS:
        for name in DASHBOARDS:
            path = out_dir / name
            text = render(name)
            if path.is_file() and path.read_text() == text:
                continue
            if args.check:
                stale.append(str(path.relative_to(REPO_ROOT)))
            else:
                out_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(
            f"dashboards: stale {', '.join(stale)}: run python scripts/ops/build_dashboards.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
