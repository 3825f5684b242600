"""``secureai coordinator``: the SuperLink, the drift inbox and the trigger that starts runs.

One long-running process:

* a Flower **SuperLink** on ``superlink_port`` (TLS with a CA it generates or is given, and
  SuperNode authentication: only the registered site keys may connect);
* an HTTP endpoint on 127.0.0.1 (``reports_port``): ``POST /v1/drift`` takes a site's drift
  report (aggregates only, :mod:`federated.drift`), ``GET /v1/status`` says what the coordinator
  knows and did, ``GET /metrics`` is its Prometheus catalogue;
* a loop that asks :func:`federated.triggers.due` every ``poll_s`` and, when a run is due
  (drift reported by enough sites, or the schedule), starts the federated run of ``run_config``
  (``configs/loop_fed.yml``: FedMedian, DP-SGD at the sites on their windows, each site gating
  and publishing the final model itself), waits for it and records the outcome.

Each run warm-starts from the last model the federation produced (the first from
``initial_repository``): ``initial_model`` points at the previous run's exported repository, so
the global model keeps learning across runs while every site decides, with its own gate, what
it serves. Failure behaviour: a site offline at the start is not sampled (the run needs
``min_available_clients``); a site that drops mid-run fails its rounds (FedMedian aggregates the
others); a run that fails leaves the sites serving what they served and the coordinator retries
after the cooldown; a coordinator that is down only delays runs (sites keep scoring and
keeping their windows, and their sidecars keep trying to report).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import Field

from federated.certs import TLSFiles, make_tls
from federated.config import FLConfig, InitialModelConfig
from federated.launcher import RunStopped, SuperLink
from federated.protocol import RUN_CONFIG_PATH, RUN_DIR
from federated.runs import finish_run, prepare_run_dir
from federated.server import RESULT_FILE
from federated.triggers import Report, TriggerConfig, due
from modelling.rundir import write_json
from morpheus_ext.config_io import StrictModel, load_config
from morpheus_ext.errors import SecureAIError

log = logging.getLogger(__name__)
STATE_FILE = "coordinator.json"


class CoordinatorError(SecureAIError, RuntimeError):
    """The coordinator cannot start as configured (message: one line, what to change)."""


class CoordinatorConfig(StrictModel):
    """``configs/coordinator.yml``."""

    run_config: Path = Path("configs/loop_fed.yml")
    """The federated run to start (``sites.method: window``, ``publish.enabled``)."""
    initial_repository: Path = Path("triton_model_repository")
    """The first run warm-starts from what this repository serves."""
    work_dir: Path = Path("state/coordinator")
    superlink_port: int = Field(default=9092, ge=1, le=65535)
    tls: bool = True
    """TLS on the SuperLink: a CA and server certificate are generated under ``work_dir/pki``
    (sites need ``pki/ca.crt``) unless ``tls_dir`` holds ``ca.crt``, ``server.crt`` and
    ``server.key``."""
    tls_dir: Path | None = None
    supernode_auth: bool = True
    authorized_keys: list[Path] = Field(default_factory=list)
    """The sites' SuperNode public keys; only these may connect."""
    reports_host: str = "127.0.0.1"
    reports_port: int = Field(default=9480, ge=0, le=65535)
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    poll_s: float = Field(default=2.0, gt=0)
    run_timeout_s: float = Field(default=1800.0, gt=0)
    max_runs: int | None = Field(default=None, ge=1)
    """Stop after this many runs (demos and tests); null: run until stopped."""


class CoordinatorMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.runs = Counter(
            "secureai_coordinator_runs_total",
            "Federated runs started, by trigger (drift | schedule) and status.",
            ["trigger", "status"],
            registry=r,
        )
        self.rounds = Gauge(
            "secureai_coordinator_last_run_rounds",
            "Rounds completed by the last run.",
            registry=r,
        )
        self.run_seconds = Gauge(
            "secureai_coordinator_last_run_seconds", "Wall time of the last run.", registry=r
        )
        self.sites = Gauge(
            "secureai_coordinator_sites", "Sites that took part in the last run.", registry=r
        )
        self.drift_ratio = Gauge(
            "secureai_coordinator_site_drift_ratio",
            "The drift ratio a site last reported (flagged rate / calibrated target).",
            ["site"],
            registry=r,
        )
        self.epsilon = Gauge(
            "secureai_coordinator_site_epsilon",
            "Epsilon a site spent in the last run (its accountant's report).",
            ["site"],
            registry=r,
        )
        self.epsilon_lifetime = Gauge(
            "secureai_coordinator_site_epsilon_lifetime",
            "Lifetime epsilon a site last reported from its own ledger.",
            ["site"],
            registry=r,
        )
        self.versions = Counter(
            "secureai_coordinator_site_versions_total",
            "Final models the sites gated, by outcome (published | refused | error).",
            ["site", "outcome"],
            registry=r,
        )


class Coordinator:
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self.metrics = CoordinatorMetrics()
        self.reports: dict[str, Report] = {}
        self.report_docs: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []
        self.started = time.time()
        self.last_start: float | None = None
        self.last_end: float | None = None
        self.reference: InitialModelConfig = InitialModelConfig(
            repository=config.initial_repository.resolve(), version="served"
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.superlink: SuperLink | None = None
        self.http: ThreadingHTTPServer | None = None
        self.current_run: int | None = None
        """The Flower run in progress (a SIGTERM stops it rather than waiting it out)."""
        self._load_state()

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.config.work_dir / STATE_FILE

    def _load_state(self) -> None:
        if not self.state_path.is_file():
            return
        doc = json.loads(self.state_path.read_text())
        self.runs = list(doc.get("runs", []))
        if doc.get("reference"):
            self.reference = InitialModelConfig.model_validate(doc["reference"])
        ends = [r["ended"] for r in self.runs if r.get("ended")]
        self.last_end = max(ends) if ends else None
        self.last_start = max((r["started"] for r in self.runs), default=None)

    def _save_state(self) -> None:
        write_json(
            self.state_path,
            {"runs": self.runs, "reference": self.reference.model_dump(mode="json")},
        )

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "superlink": None if self.superlink is None else self.superlink.address,
                "reports": dict(self.report_docs),
                "runs": list(self.runs),
                "reference": self.reference.model_dump(mode="json"),
            }

    # ------------------------------------------------------------------ reports
    def receive(self, report: dict[str, Any]) -> None:
        site = str(report["site"])
        with self._lock:
            previous = self.reports.get(site, Report(0.0, False))
            self.reports[site] = previous.after(time.time(), bool(report.get("drifted")))
            self.report_docs[site] = report
        if report.get("ratio") is not None:
            self.metrics.drift_ratio.labels(site).set(float(report["ratio"]))
        if report.get("epsilon_spent") is not None:
            self.metrics.epsilon_lifetime.labels(site).set(float(report["epsilon_spent"]))

    def _serve_http(self) -> None:
        coordinator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: DEBUG only
                log.debug("http: " + format, *args)

            def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(coordinator.metrics.registry), "text/plain")
                elif self.path == "/v1/status":
                    self._send(200, json.dumps(coordinator.status(), default=str).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if self.path != "/v1/drift":
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    length = min(int(self.headers.get("Content-Length", "0")), 65536)
                    report = json.loads(self.rfile.read(length))
                    if not isinstance(report, dict) or not isinstance(report.get("site"), str):
                        raise ValueError("a drift report is a JSON object with a 'site'")
                    coordinator.receive(report)
                except (ValueError, TypeError) as exc:
                    self._send(400, json.dumps({"error": str(exc)}).encode())
                    return
                self._send(202, b'{"accepted": true}')

        self.http = ThreadingHTTPServer(
            (self.config.reports_host, self.config.reports_port), Handler
        )
        threading.Thread(
            target=self.http.serve_forever, name="coordinator-http", daemon=True
        ).start()

    # ------------------------------------------------------------------ runs
    def _tls(self) -> TLSFiles | None:
        c = self.config
        if not c.tls:
            return None
        if c.tls_dir is not None:
            d = c.tls_dir
            return TLSFiles(d / "ca.crt", d / "server.crt", d / "server.key")
        pki = c.work_dir / "pki"
        if (pki / "ca.crt").is_file():
            return TLSFiles(pki / "ca.crt", pki / "server.crt", pki / "server.key")
        return make_tls(pki)

    def start(self) -> Coordinator:
        c = self.config
        missing = [str(k) for k in c.authorized_keys if not Path(k).is_file()]
        if missing:
            raise CoordinatorError(
                f"authorized_keys: no such file {missing[0]} (each site's SuperNode public key, "
                "e.g. from ssh-keygen -t ecdsa -b 384)"
            )
        if c.supernode_auth and not c.authorized_keys:
            raise CoordinatorError(
                "supernode_auth is on but authorized_keys is empty: no site could connect"
            )
        c.work_dir.mkdir(parents=True, exist_ok=True)
        self.superlink = SuperLink(
            c.work_dir / "flwr-home",
            c.work_dir / "logs",
            simulation=False,
            tls=self._tls(),
            supernode_auth=c.supernode_auth,
            port=c.superlink_port,
        ).start()
        for key in c.authorized_keys:
            self.superlink.register_supernode(key)
        # The inbox opens last: a listening reports port means the SuperLink is up and every
        # site's key registered, so a site started then connects at its first try (a SuperNode
        # refused before its key is registered exits, and its sidecar waits to start another).
        self._serve_http()
        return self

    def run_federation(self, trigger: str) -> dict[str, Any]:
        """One federated run, start to finish; returns its record (also kept in the state)."""
        assert self.superlink is not None
        config = load_config(self.config.run_config, FLConfig)
        config = config.model_copy(
            update={"initial_model": self.reference, "runs_dir": self.config.work_dir / "runs"}
        )
        config, run_dir = prepare_run_dir(config)
        started = time.time()
        self.last_start = started
        record: dict[str, Any] = {
            "trigger": trigger,
            "started": started,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "run_dir": str(run_dir),
        }
        log.info("starting a federated run (%s): %s", trigger, run_dir)
        status = "failed"
        try:
            run_id = self.superlink.run_app(
                {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)}
            )
            self.current_run = run_id
            status = self.superlink.wait(
                run_id,
                self.config.run_timeout_s,
                stop=self._stop,
                result_file=run_dir / RESULT_FILE,
            )
            flower_log = self.superlink.logs(run_id)
            (run_dir / "logs").mkdir(exist_ok=True)
            (run_dir / "logs" / "flower.log").write_text(flower_log)
            result = finish_run(
                config, run_dir, "federated-loop", status, flower_log, time.time() - started
            )
            status = "completed"
            fl = result.result
            record.update(
                {
                    "fl_run_id": fl.get("fl_run_id"),
                    "rounds_completed": (fl.get("summary") or {}).get("rounds_completed"),
                    "epsilon": ((fl.get("dp") or {}).get("epsilon_spent")),
                    "site_publish": fl.get("site_publish"),
                }
            )
            self._observe(record)
            # the next run continues from this run's global model
            self.reference = InitialModelConfig(
                repository=run_dir / "model_repository", version="latest"
            )
        except RunStopped as exc:  # SIGTERM: the run is stopped, sites keep what they serve
            status = "stopped"
            record["error"] = str(exc)
            log.warning("federated run stopped: the coordinator is shutting down")
        except Exception as exc:  # a failed run leaves every site serving what it served
            record["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            log.warning("federated run failed: %s", record["error"])
        self.current_run = None
        ended = time.time()
        record.update({"status": status, "ended": ended, "seconds": ended - started})
        self.last_end = ended
        self.metrics.runs.labels(trigger.split(":")[0], status).inc()
        self.metrics.run_seconds.set(ended - started)
        with self._lock:
            self.runs.append(record)
        self._save_state()
        return record

    def _observe(self, record: dict[str, Any]) -> None:
        m = self.metrics
        m.rounds.set(float(record.get("rounds_completed") or 0))
        outcomes = record.get("site_publish") or {}
        m.sites.set(len(outcomes))
        for site, o in outcomes.items():
            kind = "published" if o.get("published") else "refused" if o.get("refused") else "error"
            m.versions.labels(site, kind).inc()
        for site, eps in (record.get("epsilon") or {}).items():
            m.epsilon.labels(site).set(float(eps))

    def loop(self) -> None:
        """Start runs when they are due, until stopped (or ``max_runs`` done)."""
        c = self.config
        while not self._stop.is_set():
            with self._lock:
                reports = dict(self.reports)
            trigger = due(
                time.time(),
                started=self.started,
                last_start=self.last_start,
                last_end=self.last_end,
                reports=reports,
                rules=c.triggers,
            )
            if trigger is not None:
                self.run_federation(trigger)
                if c.max_runs is not None and len(self.runs) >= c.max_runs:
                    break
            self._stop.wait(c.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.superlink is not None:
            self.superlink.stop()


def run_coordinator(config_path: str | Path) -> int:
    """What ``secureai coordinator --config`` does: run until SIGTERM/SIGINT."""
    logging.getLogger("federated").setLevel(logging.INFO)  # a service: say what it does
    config = load_config(config_path, CoordinatorConfig)
    coordinator = Coordinator(config)

    def handler(signum: int, _frame: FrameType | None) -> None:
        coordinator._stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    coordinator.start()
    assert coordinator.superlink is not None
    print(
        f"coordinator: SuperLink {coordinator.superlink.address}, drift reports "
        f"http://{config.reports_host}:{config.reports_port}/v1/drift",
        flush=True,
    )
    try:
        coordinator.loop()
    finally:
        coordinator.stop()
    return 0


__all__ = ["Coordinator", "CoordinatorConfig", "run_coordinator"]
