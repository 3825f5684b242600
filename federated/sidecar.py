"""``secureai sidecar``: the long-running process beside a site's pipeline.

It does three things, and nothing of the site's data leaves it:

1. keeps a Flower **SuperNode** connected to the coordinator's SuperLink (TLS + node key), with
   the site's node config: its name, its training window, its ledger and its model repository.
   Every message of a federated run runs the ClientApp (``federated.client``) in a fresh
   process that trains on the site's window under DP-SGD, checks and records the site's
   lifetime privacy ledger, and at the end gates and publishes the final model into the site's
   repository (:mod:`federated.site_publish`). A SuperNode that exits is started again;
2. measures the **drift signal** on the window every ``report_interval_s``
   (:mod:`federated.drift`) and reports it to the coordinator (aggregates only);
3. serves **Prometheus metrics**: drift ratio and flagged rate, the served version, epsilon
   spent and left (from the ledger), window rows, SuperNode restarts, reports sent.

The pipeline (``secureai run``) is a separate process: it writes the window and follows the
repository (the in-process engine switches to a newly published version at a batch boundary,
Triton by itself), so a sidecar restart never touches scoring.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import Field

from federated.drift import DriftConfig, measure
from federated.launcher import Process, supernode_args
from federated.ledger import PrivacyLedger
from federated.protocol import (
    NODE_LEDGER_DIR,
    NODE_REPOSITORY,
    NODE_SITE,
    NODE_SITE_NAME,
    NODE_TRITON_URL,
    NODE_WINDOW_DIR,
)
from federated.supernode import DEFAULT_POLL_S
from morpheus_ext.config_io import StrictModel, load_config

log = logging.getLogger(__name__)


class SidecarConfig(StrictModel):
    """``configs/sidecar.yml``: one site's sidecar."""

    site: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    """The site's name: its ledger file, its label in metrics and reports."""
    index: int = Field(default=0, ge=0)
    """The site's number in the federation (``partition-id``), unique per site."""
    window: Path
    """The pipeline's ``training_window.path``."""
    repository: Path
    """The pipeline's model repository (``inference.repository``): where versions are published."""
    ledger_dir: Path
    """The site's lifetime privacy ledger (a folder on its own disk)."""
    superlink: str = "127.0.0.1:9092"
    root_certificates: Path | None = None
    """The coordinator's CA certificate; null: no TLS (a test on loopback only)."""
    auth_private_key: Path | None = None
    """The site's SuperNode key (its public half is registered at the coordinator)."""
    coordinator_url: str | None = None
    """Where drift reports go (``http://127.0.0.1:9480``); null: not reported."""
    report_interval_s: float = Field(default=60.0, gt=0)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    triton_url: str | None = None
    """The site's Triton (HTTP), to confirm each published version is served."""
    work_dir: Path = Path("state/sidecar")
    """Logs and the SuperNode's Flower home."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    restart_backoff_s: float = Field(default=5.0, gt=0)
    supernode_poll_s: float = Field(default=DEFAULT_POLL_S, gt=0, le=60)
    """How often the idle SuperNode asks the SuperLink for a message (Flower's own: 3 s).
    Every message of a run waits for the site's next poll, so this is paid per round."""


class SidecarMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.drift_ratio = Gauge(
            "secureai_site_drift_ratio",
            "Flagged rate of the served version over the drift window / its calibrated target.",
            ["site"],
            registry=r,
        )
        self.flagged_rate = Gauge(
            "secureai_site_flagged_rate",
            "Share of the site's recent events the served version flags.",
            ["site"],
            registry=r,
        )
        self.drifted = Gauge(
            "secureai_site_drifted", "1 while the site reports drift.", ["site"], registry=r
        )
        self.served_version = Gauge(
            "secureai_site_served_version",
            "dfp_autoencoder version the site's repository serves.",
            ["site"],
            registry=r,
        )
        self.epsilon_spent = Gauge(
            "secureai_site_epsilon_spent",
            "Lifetime epsilon the site's ledger records (basic composition over runs).",
            ["site"],
            registry=r,
        )
        self.epsilon_left = Gauge(
            "secureai_site_epsilon_left",
            "Lifetime privacy budget the site has left.",
            ["site"],
            registry=r,
        )
        self.window_rows = Gauge(
            "secureai_site_window_rows",
            "Events of the served version in the drift window.",
            ["site"],
            registry=r,
        )
        self.restarts = Counter(
            "secureai_site_supernode_restarts_total",
            "Times the sidecar started its SuperNode again after it exited.",
            ["site"],
            registry=r,
        )
        self.reports = Counter(
            "secureai_site_drift_reports_total",
            "Drift reports sent to the coordinator, by result (sent | failed).",
            ["site", "result"],
            registry=r,
        )


def node_config(config: SidecarConfig) -> dict[str, Any]:
    """The SuperNode's ``--node-config``: how the ClientApp finds this site's things."""
    out: dict[str, Any] = {
        NODE_SITE: config.index,
        NODE_SITE_NAME: config.site,
        NODE_WINDOW_DIR: str(config.window.resolve()),
        NODE_LEDGER_DIR: str(config.ledger_dir.resolve()),
        NODE_REPOSITORY: str(config.repository.resolve()),
    }
    if config.triton_url:
        out[NODE_TRITON_URL] = config.triton_url
    return out


def post_report(url: str, report: dict[str, Any], timeout_s: float = 5.0) -> None:
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/drift",
        data=json.dumps(report).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


class Sidecar:
    """Runs until :meth:`stop` (SIGTERM/SIGINT from :func:`run_sidecar`)."""

    def __init__(self, config: SidecarConfig, metrics: SidecarMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or SidecarMetrics()
        # counters exist at 0 from the start: a dashboard shows "no restarts", not "no data"
        self.metrics.restarts.labels(config.site)
        for result in ("sent", "failed"):
            self.metrics.reports.labels(config.site, result)
        self._stop = threading.Event()
        self.supernode: Process | None = None
        self.starts = 0
        self.last_report: dict[str, Any] | None = None

    def _start_supernode(self) -> None:
        c = self.config
        args = supernode_args(
            c.superlink,
            node_config(c),
            root_certificates=c.root_certificates,
            private_key=c.auth_private_key,
            poll_s=c.supernode_poll_s,
        )
        log_path = c.work_dir / "logs" / f"supernode-{self.starts}.log"
        from federated.launcher import flower_env

        self.supernode = Process(args, log_path, flower_env(c.work_dir / "flwr-home"), Path.cwd())
        self.starts += 1
        if self.starts > 1:
            self.metrics.restarts.labels(c.site).inc()
        log.info("site %s: SuperNode started (pid %d)", c.site, self.supernode.pid)

    def report_once(self) -> dict[str, Any]:
        """Measure the drift signal, update the metrics, send the report."""
        c = self.config
        report = measure(c.site, c.window, c.repository, c.drift)
        m, site = self.metrics, c.site
        m.served_version.labels(site).set(report["served_version"])
        m.window_rows.labels(site).set(report["rows"])
        m.drifted.labels(site).set(1.0 if report["drifted"] else 0.0)
        if report["ratio"] is not None:
            m.drift_ratio.labels(site).set(report["ratio"])
            m.flagged_rate.labels(site).set(report["flagged_rate"])
        ledger_path = c.ledger_dir / f"{site}.json"
        if ledger_path.is_file():
            doc = json.loads(ledger_path.read_text())
            ledger = PrivacyLedger(
                ledger_path, site, float(doc["budget_epsilon"]), dict(doc["runs"])
            )
            spent, _ = ledger.spent()
            m.epsilon_spent.labels(site).set(spent)
            m.epsilon_left.labels(site).set(ledger.budget_epsilon - spent)
            report["epsilon_spent"] = spent
        if c.coordinator_url:
            try:
                post_report(c.coordinator_url, report)
                m.reports.labels(site, "sent").inc()
            except (OSError, urllib.error.URLError) as exc:
                m.reports.labels(site, "failed").inc()
                log.warning("site %s: drift report not delivered (%s)", site, exc)
        self.last_report = report
        return report

    def run(self) -> None:
        c = self.config
        c.work_dir.mkdir(parents=True, exist_ok=True)
        if c.metrics_port:
            start_http_server(c.metrics_port, addr=c.metrics_host, registry=self.metrics.registry)
        self._start_supernode()
        next_report = time.monotonic()
        try:
            while not self._stop.is_set():
                assert self.supernode is not None
                if not self.supernode.alive():
                    log.warning(
                        "site %s: SuperNode exited (%s); starting it again in %.0fs",
                        c.site,
                        self.supernode.popen.returncode,
                        c.restart_backoff_s,
                    )
                    if self._stop.wait(c.restart_backoff_s):
                        break
                    self._start_supernode()
                if time.monotonic() >= next_report:
                    try:
                        report = self.report_once()
                        log.info(
                            "site %s: served v%s, %d rows, flagged ratio %s%s",
                            c.site,
                            report["served_version"],
                            report["rows"],
                            "-" if report["ratio"] is None else f"{report['ratio']:.1f}",
                            " (drift)" if report["drifted"] else "",
                        )
                    except Exception as exc:  # a bad window file must not stop the sidecar
                        log.warning("site %s: drift measurement failed: %s", c.site, exc)
                    next_report = time.monotonic() + c.report_interval_s
                self._stop.wait(0.5)
        finally:
            if self.supernode is not None:
                self.supernode.stop()

    def stop(self) -> None:
        self._stop.set()


def run_sidecar(config_path: str | Path) -> int:
    """What ``secureai sidecar --config`` does: run until SIGTERM/SIGINT."""
    logging.getLogger("federated").setLevel(logging.INFO)  # a service: say what it does
    config = load_config(config_path, SidecarConfig)
    sidecar = Sidecar(config)

    def handler(signum: int, _frame: FrameType | None) -> None:
        sidecar.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    print(f"sidecar of site {config.site}: SuperNode -> {config.superlink}", flush=True)
    sidecar.run()
    return 0
