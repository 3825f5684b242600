"""Sites that train on their own training windows and publish into their own repositories
(the loop's federated run), through the real ServerApp/ClientApp logic on a loopback grid."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flwr.supercore.task_identity import TaskIdentity

from federated.config import FLConfig, merge_overrides
from federated.protocol import (
    NODE_LEDGER_DIR,
    NODE_REPOSITORY,
    NODE_SITE_NAME,
    NODE_WINDOW_DIR,
    RUN_CONFIG_PATH,
    RUN_DIR,
)
from federated.runs import prepare_run_dir
from federated.server import run_federated
from morpheus_ext.config_io import load_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import list_versions, served_version
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.output.training_window import (
    TrainingWindowConfig,
    TrainingWindowWriter,
    read_window,
)
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT
from .loopback import LoopbackGrid

SPEC = load_spec("security_events")
COMMITTED = REPO_ROOT / "triton_model_repository"


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


def fill_window(window: Path, repository: Path, seed: int, n_events: int = 5000) -> int:
    """What `secureai run` does at a site: score a stream, keep it in the site's window."""
    events = generate(SyntheticConfig(n_events=n_events, seed=seed, population_seed=0))
    engine = InProcessEngine(repository, SPEC.spec_hash, threads=1)
    pipeline = ScoringPipeline(Featurizer(SPEC), engine)
    writer = TrainingWindowWriter(TrainingWindowConfig(path=window), SPEC.event_id)
    for raw in frame_source(events, 2048):
        writer.offer(pipeline.process(raw))
    writer.close()
    return writer.rows_written


def loop_config(tmp: Path, **overrides: Any) -> FLConfig:
    doc = yaml.safe_load((REPO_ROOT / "configs" / "loop_fed.yml").read_text())
    doc["initial_model"]["repository"] = str(COMMITTED)
    doc = merge_overrides(doc, {"runs_dir": str(tmp / "runs"), **overrides})
    return FLConfig.model_validate(doc)


def test_sites_train_on_their_windows_and_publish_into_their_own_repositories(
    tmp_path: Path,
) -> None:
    sites = {}
    for i, name in enumerate(("alpha", "beta")):
        root = tmp_path / name
        shutil.copytree(COMMITTED, root / "repository")
        kept = fill_window(root / "window", root / "repository", seed=40 + i)
        assert kept == 5000
        sites[i] = {
            NODE_SITE_NAME: name,
            NODE_WINDOW_DIR: str(root / "window"),
            NODE_REPOSITORY: str(root / "repository"),
            NODE_LEDGER_DIR: str(root / "ledger"),
        }
    _config, run_dir = prepare_run_dir(
        loop_config(tmp_path, federation={"rounds": 2}), tmp_path / "run"
    )
    run_config = {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)}
    grid = LoopbackGrid(2, run_config, node_config=lambda i: sites[i])
    result = run_federated(grid, load_config(run_dir / "config.yaml", FLConfig), run_dir, 1)

    outcomes = result["site_publish"]
    assert set(outcomes) == {"alpha", "beta"}
    for name in ("alpha", "beta"):
        root = tmp_path / name
        o = outcomes[name]
        assert o["published"] + o["refused"] == 1, o
        repo = root / "repository"
        assert served_version(repo) == o["served-after"]
        if o["published"]:
            row = list_versions(repo)[-1]
            manifest = row["manifest"]
            assert manifest["site"] == name and manifest["fl_run_id"] == result["fl_run_id"]
            assert manifest["gate"]["gate"] == "unlabelled"
            assert manifest["window"]["train"] > 0 and manifest["window"]["trimmed"] > 0
            assert manifest["dp"]["epsilon_spent"] <= 3.0 + 1e-6
        else:
            assert "unlabelled gate" in o["outcome"] and served_version(repo) == 1
        # the site's own ledger, under its own name, holds this run
        ledger = json.loads((root / "ledger" / f"{name}.json").read_text())
        assert set(ledger["runs"]) == {result["fl_run_id"]}
        assert 0 < ledger["spent_epsilon"] <= 3.0 + 1e-6
        # nothing of another site's window was read: each window is intact and separate
        assert len(read_window(root / "window")) == 5000
    assert result["dp"]["sites"].keys() == {"0", "1"}
    assert (run_dir / "metrics.prom").read_text().count("secureai_fl_site_versions_total{") >= 2
