"""The real ServerApp logic and the real ClientApp handlers, wired in-process (no Flower processes).

``LoopbackGrid`` delivers each message to ``federated.client``'s handler with a per-node
``Context`` (its ``state`` kept across rounds, as Flower does), turns exceptions into error
replies and can drop a site's reply *after* it trained (a straggler past the round timeout).
Fast enough for the unit suite; the integration tests run the same code under Flower.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flwr.supercore.task_identity import TaskIdentity
from opacus.accountants import RDPAccountant

from federated.config import FLConfig, merge_overrides
from federated.launcher import free_port
from federated.ledger import PrivacyBudgetExceeded
from federated.protocol import RUN_CONFIG_PATH, RUN_DIR
from federated.runs import RunDirInUse, prepare_run_dir, read_rounds
from federated.server import RESULT_FILE, run_federated
from federated.site_round import Site
from federated.site_split import fit_public_inputs, load_federated_data
from modelling.checkpoint import CHECKPOINT_DIR, load_checkpoint
from morpheus_ext.config_io import load_config
from morpheus_ext.stages.inference.inprocess import InProcessEngine

from .loopback import LoopbackGrid

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a few seconds per run (export included); no external services


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    """Messages are stamped with the running task's identity; Flower sets it in its processes."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


def small_config(tmp: Path, **overrides: Any) -> FLConfig:
    """configs/fed_dp_small.yml on a quarter of the data, batch 128 (seconds per run)."""
    doc = yaml.safe_load((REPO / "configs" / "fed_dp_small.yml").read_text())
    doc["data"]["train"]["synthetic"]["n_events"] = 4000
    doc["data"]["test"] = None
    doc["public"]["source"]["synthetic"]["n_events"] = 1000
    doc = merge_overrides(
        doc, {"local": {"batch_size": 128}, "runs_dir": str(tmp / "runs"), **overrides}
    )
    return FLConfig.model_validate(doc)


def run_inprocess(
    config: FLConfig, tmp: Path, name: str = "run", **grid_kwargs: Any
) -> tuple[Path, dict[str, Any]]:
    config, run_dir = prepare_run_dir(config, tmp / name)
    run_config = {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)}
    grid = LoopbackGrid(config.sites.n_sites, run_config, **grid_kwargs)
    result = run_federated(grid, load_config(run_dir / "config.yaml", FLConfig), run_dir, 7)
    return run_dir, result


def test_run_counts_failures_and_stragglers_and_exports(tmp_path: Path) -> None:
    port = free_port()
    config = small_config(
        tmp_path,
        stragglers={"drop_sites": [1]},
        monitoring={"metrics_port": port},
    )
    scraped: dict[int, str] = {}

    def scrape(server_round: int) -> None:
        if server_round == 3 and 3 not in scraped:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                scraped[3] = r.read().decode()

    run_dir, result = run_inprocess(
        config,
        tmp_path,
        late=lambda site, kind: site == 2 and kind == "train",  # site 2 always answers late
        on_round=scrape,
    )
    assert result["status"] == "completed"
    assert json.loads((run_dir / RESULT_FILE).read_text())["status"] == "completed"
    rounds = read_rounds(run_dir)
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for r in rounds:
        assert (r["sampled"], r["returned"], r["failed"], r["timed_out"]) == (3, 1, 1, 1)
        assert "drop" in r["failures"][0]
        assert r["sites_returned"] == [0]
    assert rounds[-1]["validation_loss"] < rounds[0]["validation_loss"]

    # The straggler trained (and spent privacy) even though its updates arrived too late.
    dp = result["dp"]
    assert dp["sites"]["1"]["steps"] == 0 and dp["epsilon_spent"]["1"] == 0.0
    for site in ("0", "2"):
        s = dp["sites"][site]
        assert s["rounds_trained"] == 3
        acc = RDPAccountant()
        acc.history = [(s["noise_multiplier"], s["sample_rate"], s["steps"])]
        assert abs(dp["epsilon_spent"][site] - acc.get_epsilon(dp["delta"])) < 1e-6
        assert dp["epsilon_spent"][site] <= config.privacy.target_epsilon

    prom = (run_dir / "metrics.prom").read_text()
    assert "secureai_fl_round 3.0" in prom
    assert 'secureai_fl_round_clients{state="timed_out"} 1.0' in prom
    assert 'secureai_fl_epsilon{site="2"}' in prom
    assert "secureai_fl_round 2.0" in scraped[3]  # the endpoint served during round 3

    repo = run_dir / "model_repository"
    manifest = json.loads((repo / "dfp_autoencoder" / "1" / "manifest.json").read_text())
    assert manifest["fl_run_id"] == result["fl_run_id"] and manifest["rounds"] == 3
    assert result["fl_run_id"].startswith(f"{run_dir.name}.")  # unique per run instance
    assert manifest["dp"]["accountant"] == "rdp" and manifest["dp"]["max_grad_norm"] == 0.05
    assert result["onnx_parity_max_abs_diff"] < 1e-4
    spec_hash = manifest["feature_spec_hash"]
    engine = InProcessEngine(repo, spec_hash)
    public = fit_public_inputs(config.public.source, load_federated_data(config).spec, "normal")
    assert int(engine.infer(public.raw[:4])["MODEL_VERSION"][0]) == 1
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_DIR)
    assert checkpoint.provenance["fl_run_id"] == result["fl_run_id"]
    assert checkpoint.provenance["dp"]["epsilon_spent"] == dp["epsilon_spent"]


def test_partial_participation_and_dropouts_repeat_with_the_seed(tmp_path: Path) -> None:
    """Same seed, same sites sampled and same numbers, even though node ids differ per run
    (they are random in Flower): sampling follows site order (federated.sampling)."""
    overrides = {
        "federation": {"rounds": 3, "fraction_train": 0.67, "min_train_clients": 2},
        "stragglers": {"drop_probability": 0.3},
    }
    runs = []
    for i, ids in enumerate(([100, 101, 102], [907, 55, 311])):
        config = small_config(tmp_path / str(i), **overrides)
        run_dir, _ = run_inprocess(config, tmp_path / str(i), node_ids=ids)
        runs.append(read_rounds(run_dir))
    keys = ("sampled", "returned", "failed", "sites_returned", "train_loss", "validation_loss")
    assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[1]]
    assert all(r["sampled"] == 2 for r in runs[0])
    assert len({tuple(r["sites_returned"]) for r in runs[0]}) > 1  # not always the same sites


def test_dp_off_is_a_config_switch(tmp_path: Path) -> None:
    config = small_config(
        tmp_path, privacy={"enabled": False}, strategy={"name": "fedavg"}, federation={"rounds": 2}
    )
    run_dir, result = run_inprocess(config, tmp_path)
    assert result["dp"] is None
    manifest = json.loads(
        (run_dir / "model_repository/dfp_autoencoder/1/manifest.json").read_text()
    )
    assert manifest["dp"] is None and manifest["strategy"] == "fedavg"
    ledger = json.loads((run_dir / "ledger" / "site-0.json").read_text())
    assert ledger["runs"][result["fl_run_id"]]["epsilon"] is None and ledger["spent_epsilon"] == 0.0
    rounds = read_rounds(run_dir)
    assert rounds[-1]["validation_loss"] < rounds[0]["validation_loss"]


def test_a_run_that_cannot_fit_the_budget_is_refused_before_training(tmp_path: Path) -> None:
    config = small_config(
        tmp_path,
        federation={"rounds": 4},
        privacy={"target_epsilon": 3.0, "site_budget_epsilon": 2.5},
    )
    data = load_federated_data(config)
    public = fit_public_inputs(config.public.source, data.spec, "normal")
    site = Site(config, 0, public.normalizer, tmp_path / "ledger")
    from modelling.models import build_autoencoder

    weights = build_autoencoder(config.model, data.spec.tensor_width, seed=0).state_dict()
    with pytest.raises(PrivacyBudgetExceeded, match="refuses run run-a before training") as exc:
        site.train(weights, 1, "run-a", None)
    assert "planned to spend epsilon 2.99" in str(exc.value) and "2.500" in str(exc.value)
    assert not site.ledger_path.exists()  # nothing trained, nothing spent


def test_ledger_accumulates_across_reruns_and_refuses_over_budget(tmp_path: Path) -> None:
    """Two runs of the same config on the same sites (their ledgers in one place, as a site
    keeps it) add up: a new entry per run, never an overwrite; once the lifetime budget cannot
    hold another run, the site refuses it. A run never reuses a directory holding a run."""
    config = small_config(
        tmp_path,
        federation={"rounds": 2},
        privacy={
            "target_epsilon": 1.0,
            "site_budget_epsilon": 2.5,
            "ledger_dir": str(tmp_path / "ledger"),
        },
    )
    first_dir, first = run_inprocess(config, tmp_path, "first")
    with pytest.raises(RunDirInUse, match="already holds a federated run"):
        prepare_run_dir(config, first_dir)
    second_dir, second = run_inprocess(config, tmp_path, "second")
    assert first_dir != second_dir and first["fl_run_id"] != second["fl_run_id"]
    ledger = json.loads((tmp_path / "ledger" / "site-0.json").read_text())
    assert set(ledger["runs"]) == {first["fl_run_id"], second["fl_run_id"]}
    per_run = [ledger["runs"][r["fl_run_id"]]["epsilon"] for r in (first, second)]
    assert all(0.5 < e <= 1.0 + 1e-6 for e in per_run)
    assert ledger["spent_epsilon"] == pytest.approx(sum(per_run))  # about 2, not about 1

    data = load_federated_data(config)
    public = fit_public_inputs(config.public.source, data.spec, "normal")
    site = Site(config, 0, public.normalizer, tmp_path / "ledger")
    from modelling.models import build_autoencoder

    weights = build_autoencoder(config.model, data.spec.tensor_width, seed=0).state_dict()
    with pytest.raises(PrivacyBudgetExceeded, match="before training"):
        site.train(weights, 1, "third", None)
    assert json.loads(site.ledger_path.read_text())["runs"].keys() == ledger["runs"].keys()
