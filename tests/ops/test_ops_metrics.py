"""Where the metrics endpoints listen, and the FL clients' own metrics (issue #8).

* Every Prometheus endpoint we start binds loopback unless its config names another address
  (``metrics_host``): the pipeline (``secureai run``), the REST API's extra metrics port and the
  FL server. Checked on the real socket table (``/proc/net/tcp``), not on the arguments.
* The sites report local optimizer steps, epsilon and the privacy budget left: in their train
  replies (exported per site by the FL server) and in a textfile next to their ledger.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from federated.config import MonitoringConfig
from federated.launcher import free_port
from federated.prometheus_metrics import ClientMetrics, FLMetrics
from pipelines.kafka import runner as kafka_runner
from pipelines.kafka.config import PipelineConfig
from pipelines.rest.config import ApiConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def listening(port: int) -> set[str]:
    """Addresses with a socket in LISTEN on ``port`` (IPv4 and IPv6), from /proc/net."""
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            if len(raw) == 4:
                out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


def pipeline_doc(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": ["t"], "group_id": "g"},
        "metrics_port": port,
        **extra,
    }


class _Engine:
    def close(self) -> None:
        pass


@pytest.fixture
def started_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Record the servers ``start_http_server`` starts, and shut them down afterwards."""
    servers: list[Any] = []
    real = prometheus_client.start_http_server

    def start(port: int, addr: str = "0.0.0.0", **kwargs: Any) -> Any:
        server, thread = real(port, addr=addr, **kwargs)
        servers.append(server)
        return server, thread

    monkeypatch.setattr(prometheus_client, "start_http_server", start)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", [None, "127.0.0.2"])
def test_pipeline_metrics_bind_loopback_unless_configured(
    host: str | None, started_servers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    doc = pipeline_doc(port, **({"metrics_host": host} if host else {}))
    config = PipelineConfig.model_validate(doc)
    seen: list[set[str]] = []

    class Runner:  # stands in for the Kafka loop: look at the socket while "running"
        def __init__(self, *_: Any) -> None:
            pass

        def run(self, max_events: int | None = None) -> Any:
            seen.append(listening(port))
            return None

    monkeypatch.setattr(kafka_runner, "KafkaScoringRunner", Runner)
    kafka_runner.run_pipeline(config, engine=_Engine(), install_signals=False)  # type: ignore[arg-type]
    assert seen == [{host or "127.0.0.1"}]
    assert len(started_servers) == 1


def test_pipeline_metrics_port_in_use_is_one_line(started_servers: list[Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = PipelineConfig.model_validate(pipeline_doc(port))
        with pytest.raises(kafka_runner.KafkaPipelineError, match=f"127.0.0.1:{port}"):
            kafka_runner.run_pipeline(config, engine=_Engine(), install_signals=False)  # type: ignore[arg-type]


def test_metrics_hosts_default_to_loopback() -> None:
    assert PipelineConfig.model_validate(pipeline_doc(9108)).metrics_host == "127.0.0.1"
    # The API's extra port stays on loopback even when the API itself listens everywhere.
    api = ApiConfig.model_validate({"host": "0.0.0.0", "metrics_port": 9109})
    assert api.metrics_host == "127.0.0.1"
    assert MonitoringConfig().metrics_host == "127.0.0.1"


def test_fl_server_endpoint_binds_its_host() -> None:
    port = free_port()
    server = FLMetrics().serve(port)
    try:
        assert listening(port) == {"127.0.0.1"}
    finally:
        server.shutdown()
        server.server_close()


def test_client_metrics_textfile(tmp_path: Path) -> None:
    metrics = ClientMetrics()
    metrics.record_round("site-0", 2, 40, 80, 1.25, 10.0, 8.75)
    path = tmp_path / "ledger" / "site-0.prom"
    metrics.write_textfile(path)
    values = {
        s.name: (s.labels, s.value)
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert values == {
        "secureai_fl_client_round": ({"site": "site-0"}, 2.0),
        "secureai_fl_client_local_steps": ({"site": "site-0"}, 40.0),
        "secureai_fl_client_run_local_steps": ({"site": "site-0"}, 80.0),
        "secureai_fl_client_epsilon": ({"site": "site-0"}, 1.25),
        "secureai_fl_client_budget_epsilon": ({"site": "site-0"}, 10.0),
        "secureai_fl_client_budget_left_epsilon": ({"site": "site-0"}, 8.75),
    }


@pytest.mark.slow
def test_sites_report_steps_epsilon_and_budget_left(tmp_path: Path) -> None:
    """A real in-process run (ServerApp logic + ClientApp handlers): what each site reports
    reaches the server's metrics per site, and each site's own textfile."""
    from flwr.supercore.task_identity import TaskIdentity

    from tests.federated.test_fl_inprocess import run_inprocess, small_config

    # Messages are stamped with the running task's identity; Flower sets it in its processes.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    try:
        config = small_config(tmp_path, federation={"rounds": 2})
        run_dir, result = run_inprocess(config, tmp_path)
    finally:
        TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]
    assert result["status"] == "completed"
    server = {
        (s.name, s.labels.get("site")): s.value
        for family in text_string_to_metric_families((run_dir / "metrics.prom").read_text())
        for s in family.samples
    }
    budget = config.privacy.site_budget_epsilon
    for site in range(config.sites.n_sites):
        steps = server[("secureai_fl_local_steps_total", str(site))]
        left = server[("secureai_fl_budget_left_epsilon", str(site))]
        eps = server[("secureai_fl_epsilon", str(site))]
        assert steps > 0
        assert left == pytest.approx(budget - eps, abs=1e-6)  # a fresh ledger: this run only
        own = {
            s.name: s.value
            for family in text_string_to_metric_families(
                (run_dir / "ledger" / f"site-{site}.prom").read_text()
            )
            for s in family.samples
        }
        assert own["secureai_fl_client_round"] == 2
        assert own["secureai_fl_client_budget_left_epsilon"] == pytest.approx(left)
        assert own["secureai_fl_client_epsilon"] == pytest.approx(eps)
        assert own["secureai_fl_client_run_local_steps"] == pytest.approx(steps)
