"""``secureai fl simulate``: 3 sites x 3 DP rounds with Flower's simulation engine (real SuperLink,
Ray ClientApps on loopback). Checks the run *finished*, the model improved over round 1, the
reported epsilon equals Opacus' RDP accountant for the same (sigma, q, steps), and the
Prometheus endpoint served while the run lasted."""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from opacus.accountants import RDPAccountant

from federated.launcher import free_port
from modelling.checkpoint import CHECKPOINT_DIR, load_checkpoint
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from pipelines import cli_fl

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def opacus_epsilon(site: dict[str, float], delta: float) -> float:
    acc = RDPAccountant()
    acc.history = [(site["noise_multiplier"], site["sample_rate"], int(site["steps"]))]
    return float(acc.get_epsilon(delta))


class Scraper(threading.Thread):
    """Polls the run's /metrics endpoint; keeps the last page that showed a finished round."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.pages: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    page = r.read().decode()
                if "secureai_fl_round " in page:
                    self.pages.append(page)
            except OSError:
                pass
            time.sleep(0.5)


def test_simulated_dp_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    doc = yaml.safe_load((REPO / "configs" / "fed_dp_small.yml").read_text())
    doc["monitoring"] = {"metrics_port": port}
    doc["runs_dir"] = str(tmp_path / "runs")
    config_path = tmp_path / "fed.yml"
    config_path.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"

    parser = argparse.ArgumentParser(prog="secureai")
    cli_fl.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["fl", "simulate", "--config", str(config_path), "--run-dir", str(run_dir)]
    )
    scraper = Scraper(port)
    scraper.start()
    try:
        assert args.func(args) == 0
    finally:
        scraper.done.set()
        scraper.join(5)
    out = capsys.readouterr().out
    assert "round   3: 3/3 sites returned" in out

    # Finished, not just exit 0: Flower's status and the ServerApp's own record.
    run = json.loads((run_dir / "run.json").read_text())
    assert run["flower_status"] == "finished:completed"
    assert json.loads((run_dir / "fl_result.json").read_text())["status"] == "completed"
    rounds = run["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["returned"] == 3 and r["failed"] == 0 for r in rounds)

    # The model improved over round 1 (sites' validation loss and the public loss).
    assert rounds[-1]["validation_loss"] < rounds[0]["validation_loss"]
    assert rounds[-1]["public_loss"] < rounds[0]["public_loss"]

    # Reported epsilon == Opacus' RDP accountant for the same (sigma, q, steps).
    manifest_path = run_dir / "model_repository" / "dfp_autoencoder" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    dp = manifest["dp"]
    assert dp["accountant"] == "rdp" and manifest["rounds"] == 3
    assert sorted(dp["epsilon_spent"]) == ["0", "1", "2"]
    for site, info in dp["sites"].items():
        assert info["rounds_trained"] == 3
        assert abs(dp["epsilon_spent"][site] - opacus_epsilon(info, dp["delta"])) < 1e-6
        assert dp["epsilon_spent"][site] <= 3.0
        assert rounds[-1]["epsilon"][site] == pytest.approx(dp["epsilon_spent"][site], abs=1e-9)
        ledger = json.loads((run_dir / "ledger" / f"site-{site}.json").read_text())
        assert ledger["runs"][manifest["fl_run_id"]]["epsilon"] == pytest.approx(info["epsilon"])

    # Export went through the existing path and serves.
    engine = InProcessEngine(run_dir / "model_repository", manifest["feature_spec_hash"])
    assert engine is not None
    assert (
        load_checkpoint(run_dir / CHECKPOINT_DIR).provenance["fl_run_id"] == manifest["fl_run_id"]
    )
    assert manifest["fl_run_id"].startswith(f"{run_dir.name}.")
    assert run["metrics"]["auroc"] > 0.6  # 3 tiny DP rounds: far from converged, but learning

    # Prometheus: textfile after every round, endpoint during the run.
    prom = (run_dir / "metrics.prom").read_text()
    assert "secureai_fl_round 3.0" in prom and "secureai_fl_epsilon_max" in prom
    assert scraper.pages, "the /metrics endpoint never answered during the run"
    assert 'secureai_fl_round_clients{state="sampled"} 3.0' in scraper.pages[-1]
