"""Deployment engine on loopback: a SuperLink with TLS and SuperNode authentication, one SuperNode
per site (real processes). A DP run finishes and improves; an unregistered SuperNode, a SuperNode
without the CA certificate and a CLI without it are all refused."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opacus.accountants import RDPAccountant

from federated.certs import make_node_keys
from federated.config import FLConfig
from federated.deployment import LocalFederation
from federated.launcher import CONNECTION, Process, flower_env, start_supernode

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITES = 2


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    work = tmp_path_factory.mktemp("federation")
    with LocalFederation(SITES, work, tls=True, supernode_auth=True) as fed:
        yield fed


def two_site_config(runs_dir: Path) -> FLConfig:
    doc = yaml.safe_load((REPO / "configs" / "fed_dp_small.yml").read_text())
    for source in (doc["data"]["train"], doc["data"]["test"], doc["public"]["source"]):
        source["synthetic"]["n_sites"] = SITES
    doc["sites"]["n_sites"] = SITES
    # Sites' validation rounds are covered by the simulation test; here each message is a fresh
    # process (seconds of imports), so the model's progress is read from the server-side loss
    # on the public sample and the federated evaluation is off.
    doc["federation"].update(
        rounds=2, min_available_clients=SITES, fraction_evaluate=0.0, min_evaluate_clients=0
    )
    doc["runs_dir"] = str(runs_dir)
    return FLConfig.model_validate(doc)


def _wait_exit(process: Process, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    code = process.popen.poll()
    process.stop()
    assert code is not None, f"{process.args[0]} still running after {timeout}s"
    return code


def test_dp_run_over_tls_with_authenticated_supernodes(
    federation: LocalFederation, tmp_path: Path
) -> None:
    assert federation.superlink is not None
    result = federation.run(two_site_config(tmp_path / "runs"), tmp_path / "run")
    assert result.flower_status == "finished:completed"
    assert result.result["status"] == "completed"
    rounds = result.rounds
    assert [r["returned"] for r in rounds] == [SITES, SITES]
    assert (
        rounds[-1]["public_loss"] < rounds[0]["public_loss"] < result.result["initial_public_loss"]
    )

    dp = result.result["dp"]
    for site, info in dp["sites"].items():
        acc = RDPAccountant()
        acc.history = [(info["noise_multiplier"], info["sample_rate"], info["steps"])]
        assert abs(dp["epsilon_spent"][site] - acc.get_epsilon(dp["delta"])) < 1e-6
        assert info["rounds_trained"] == 2
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["deployment"] == {"tls": True, "supernode_auth": True}
    log = (result.run_dir / "logs" / "superlink.log").read_text()
    assert "--insecure" not in " ".join(federation.superlink.process.args)  # type: ignore[union-attr]
    assert "SuperNode authentication is disabled" not in log
    online = [n for n in federation.superlink.list_supernodes() if n["status"] == "online"]
    assert len(online) == SITES


def test_unregistered_supernode_is_refused(federation: LocalFederation, tmp_path: Path) -> None:
    assert federation.superlink is not None and federation.tls is not None
    intruder = make_node_keys(tmp_path, "intruder")  # valid key, never registered
    process = start_supernode(
        federation.superlink,
        tmp_path / "intruder.log",
        {"partition-id": 0},
        root_certificates=federation.tls.ca_cert,
        private_key=intruder.private_key,
        max_wait_s=20,
    )
    assert _wait_exit(process) != 0
    log = process.log_text()
    assert "Failed to activate SuperNode" in log or "2004" in log, log[-2000:]
    assert len(federation.superlink.list_supernodes()) == SITES


def test_supernode_without_ca_certificate_is_refused(
    federation: LocalFederation, tmp_path: Path
) -> None:
    assert federation.superlink is not None
    process = start_supernode(
        federation.superlink,
        tmp_path / "no-ca.log",
        {"partition-id": 0},
        root_certificates=None,  # TLS on, but only the system CAs: the run's CA is unknown
        private_key=federation.keys[0].private_key,
        max_wait_s=20,
    )
    assert _wait_exit(process) != 0
    assert "CERTIFICATE_VERIFY_FAILED" in process.log_text()


def test_cli_without_ca_certificate_is_refused(federation: LocalFederation, tmp_path: Path) -> None:
    assert federation.superlink is not None
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{federation.superlink.address}"\n'
    )
    proc = subprocess.run(
        ["flwr", "ls", CONNECTION, "--format", "json"],
        env=flower_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(proc.stdout[proc.stdout.find("{") :])
    assert doc["success"] is False  # the TLS handshake fails: Flower reports it as unavailable
    assert "unavailable" in doc["error-message"] or "certificate" in doc["error-message"].lower()
    # Control: the same SuperLink answers the connection that carries the CA certificate.
    assert json.loads(federation.superlink.flwr("ls", CONNECTION, "--format", "json"))["success"]
