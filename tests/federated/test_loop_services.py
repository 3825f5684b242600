"""The loop's services without Flower: a sidecar measures drift on its window and reports it
over real HTTP to the coordinator's inbox, which then finds a run due."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from federated.coordinator import Coordinator, CoordinatorConfig
from federated.drift import DriftConfig
from federated.launcher import free_port
from federated.sidecar import Sidecar, SidecarConfig
from federated.triggers import TriggerConfig, due
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.output.training_window import TrainingWindowConfig, TrainingWindowWriter
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate
from synthetic.drift import adopt_new_app

from ..conftest import REPO_ROOT

SPEC = load_spec("security_events")


def site_with_window(root: Path, drift: bool) -> tuple[Path, Path]:
    repo = root / "repository"
    shutil.copytree(REPO_ROOT / "triton_model_repository", repo)
    events = generate(SyntheticConfig(n_events=4000, seed=9, population_seed=0, anomaly_rate=0.0))
    if drift:
        events = adopt_new_app(events, start="2026-11-01T00:00:00Z", seed=1)
    pipeline = ScoringPipeline(Featurizer(SPEC), InProcessEngine(repo, SPEC.spec_hash, threads=1))
    writer = TrainingWindowWriter(TrainingWindowConfig(path=root / "window"), SPEC.event_id)
    for raw in frame_source(events, 2048):
        writer.offer(pipeline.process(raw))
    writer.close()
    return repo, root / "window"


def test_sidecar_reports_drift_to_the_coordinator_which_finds_a_run_due(tmp_path: Path) -> None:
    port = free_port()
    coordinator = Coordinator(
        CoordinatorConfig(work_dir=tmp_path / "coordinator", reports_port=port)
    )
    coordinator._serve_http()  # the inbox only: no SuperLink needed to receive reports
    try:
        reports = {}
        for name, drift in (("steady", False), ("drifting", True)):
            repo, window = site_with_window(tmp_path / name, drift)
            sidecar = Sidecar(
                SidecarConfig(
                    site=name,
                    window=window,
                    repository=repo,
                    ledger_dir=tmp_path / name / "ledger",
                    coordinator_url=f"http://127.0.0.1:{port}",
                    drift=DriftConfig(hours=1.0, min_rows=500, flagged_ratio=3.0),
                )
            )
            reports[name] = sidecar.report_once()
        assert reports["steady"]["drifted"] is False and reports["steady"]["ratio"] < 3.0
        assert reports["drifting"]["drifted"] is True and reports["drifting"]["ratio"] >= 3.0
        assert reports["drifting"]["served_version"] == 1 and reports["drifting"]["rows"] == 4000
        assert "event" not in json.dumps(reports["drifting"])  # aggregates only, never events

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as r:
            status = json.loads(r.read())
        assert set(status["reports"]) == {"steady", "drifting"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'secureai_coordinator_site_drift_ratio{site="drifting"}' in metrics
        reason = due(
            time.time(),
            started=coordinator.started,
            last_start=None,
            last_end=None,
            reports=coordinator.reports,
            rules=TriggerConfig(
                schedule_interval_s=None, min_sites=1, cooldown_s=0, drift_sustain_s=0
            ),
        )
        assert reason == "drift: drifting"
        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/drift", data=b"[1, 2]", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 400
    finally:
        coordinator.stop()


def test_loop_commands_name_a_missing_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import build_parser
    from pipelines.cli_base import run_cli

    for command in ("sidecar", "coordinator"):
        code = run_cli(build_parser(), [command, "--config", str(tmp_path / "nope.yml")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "nope.yml" in err[0], err


@pytest.mark.integration
def test_sigterm_stops_a_run_in_progress_instead_of_waiting_it_out(tmp_path: Path) -> None:
    """A real ``secureai coordinator`` (SuperLink + ServerApp) starts a scheduled run that waits
    for sites which never come; SIGTERM stops that run through Flower's Control API and the
    service exits, its state recording the run as stopped (without the stop it would sit for
    ``run_timeout_s``)."""
    import os
    import signal
    import subprocess
    import sys

    import yaml

    work = tmp_path / "coordinator"
    config = tmp_path / "coordinator.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_config": str(REPO_ROOT / "configs" / "loop_fed.yml"),
                "initial_repository": str(REPO_ROOT / "triton_model_repository"),
                "work_dir": str(work),
                "superlink_port": free_port(),
                "supernode_auth": False,
                "reports_port": free_port(),
                "triggers": {"schedule_interval_s": 1, "cooldown_s": 0},
                "poll_s": 0.5,
                "run_timeout_s": 1200,
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "coordinator", "--config", str(config)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((work / "runs").glob("*/config.yaml")):  # the run was submitted
            assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline, "no run started"
            time.sleep(0.5)
        time.sleep(5)  # the ServerApp is up and waiting for its two sites
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()[-2000:]
    state = json.loads((work / "coordinator.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["stopped"], state
    assert "stopped" in out.decode()
