"""Issue #6 end to end: FL simulation (3 sites, 2 DP rounds, warm-started from the served
version) -> publish through the default gate -> Triton serves it -> the scoring pipeline scores
with the new version.

Every step is the real thing: Flower's simulation engine (SuperLink + Ray ClientApps, DP-SGD at
each site), the run's ``model/`` checkpoint, ``federated.publish`` into a copy of the committed
``triton_model_repository`` served by a real CPU Triton (explicit model control), and the
pipeline's Triton engine (``pipelines.engines`` -> ``morpheus_ext.stages.inference.triton``). One
engine
is opened before the publish and kept: a running pipeline picks up version 2 without restart.
About 1.5 minutes on 2 cores, most of it Flower/Ray start-up (a round itself takes ~1 s).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from federated.config import FLConfig
from federated.publish import (
    PublishConfig,
    TritonControl,
    publish,
    served_version,
    verify,
)
from federated.simulation import simulate
from modelling.checkpoint import CHECKPOINT_DIR, load_checkpoint, normalizer_from_encoder
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import AUTOENCODER, ENCODER, ModelRepository, sha256_file
from morpheus_ext.pipeline import ScoringPipeline, run_batches
from morpheus_ext.stages.inference.base import InferenceEngine
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.engines import InferenceConfig, build_engine
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT, triton_harness

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPEC = load_spec("security_events")
COMMITTED = REPO_ROOT / "triton_model_repository"
ROUNDS = 2
# The gate compares AUROC on the site's labelled holdout. The served version 1 was trained
# centrally for up to 100 epochs on 60k events (holdout AUROC 0.987). 2 DP rounds from random
# weights reached ~0.82 and needed `tolerance=0.3`. Warm-started from version 1 (`initial_model`)
# with a fine-tuning learning rate the retrained model passes the default gate (tolerance 0.01):
# measured holdout AUROC 0.988 at lr 1e-4 (0.986 at 3e-4). At the from-scratch lr 0.01, Adam's
# per-coordinate steps of ~lr on the DP noise undo the served weights (0.869; 0.975 at 1e-3).
DEFAULT_TOLERANCE = PublishConfig().tolerance
FINE_TUNE_LR = 1e-4


def fl_config(tmp_path: Path) -> FLConfig:
    """configs/fed_dp_small.yml, smaller: 6k training events, 2 rounds, no test-set evaluation,
    warm-started from the version the repository serves (`initial_model`: its weights and its
    `dfp_encoder`'s normalizer, what production uses and what publish requires), fine-tuning
    at a small learning rate."""
    doc = yaml.safe_load((REPO_ROOT / "configs" / "fed_dp_small.yml").read_text())
    doc["name"] = "fed_e2e"
    doc["data"]["train"]["synthetic"]["n_events"] = 6000
    doc["data"]["test"] = None
    doc["public"]["source"]["synthetic"]["n_events"] = 2000
    doc["initial_model"] = {"repository": str(COMMITTED), "version": "served"}
    doc["local"]["lr"] = FINE_TUNE_LR
    doc["federation"]["rounds"] = ROUNDS
    doc["runs_dir"] = str(tmp_path / "runs")
    return FLConfig.model_validate(doc)


def score(engine: InferenceEngine, events: pd.DataFrame) -> list[dict[str, Any]]:
    """The pipeline's batch path (decode -> featurize -> engine -> records), 500 per batch."""
    records: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    stats = run_batches(
        ScoringPipeline(Featurizer(SPEC), engine),
        frame_source(events, 500),
        records.extend,
        dead.extend,
        progress=False,
    )
    assert not dead and stats.scored == len(events) == len(records)
    return records


def test_fl_run_published_served_by_triton_and_scored_by_the_pipeline(tmp_path: Path) -> None:
    # ---- 1. federated run: 3 sites x 2 DP rounds on Flower's simulation engine
    run = simulate(fl_config(tmp_path), tmp_path / "run")
    assert [r["round"] for r in run.rounds] == [1, 2]
    assert all(r["returned"] == 3 and r["failed"] == 0 for r in run.rounds)
    checkpoint = load_checkpoint(run.run_dir / CHECKPOINT_DIR)
    assert checkpoint.provenance["kind"] == "federated"
    assert checkpoint.provenance["fl_run_id"] == run.result["fl_run_id"]
    assert run.result["fl_run_id"].startswith(f"{run.run_dir.name}.")
    assert checkpoint.provenance["rounds"] == ROUNDS
    assert 0 < checkpoint.provenance["dp"]["epsilon_max"] <= 3.0
    parent_onnx = COMMITTED / AUTOENCODER / "1" / "model.onnx"
    initial = checkpoint.provenance["initial_model"]
    assert initial["version"] == 1 and initial["sha256"] == sha256_file(parent_onnx)
    assert initial["repository"] == str(COMMITTED.resolve())
    assert run.result["seeds"]["model_init"] is None
    # Round 1 started from version 1: the public loss before training is the served model's.
    assert run.result["initial_public_loss"] < 1e-3
    served_norm = normalizer_from_encoder(COMMITTED / ENCODER / "1" / "model.onnx")
    np.testing.assert_array_equal(checkpoint.normalizer.center, served_norm.center)
    np.testing.assert_array_equal(checkpoint.normalizer.scale, served_norm.scale)

    # ---- 2. a real Triton serving a copy of the committed repository (version 1)
    repo = tmp_path / "repo"
    shutil.copytree(COMMITTED, repo)
    th = triton_harness()
    server = th.TritonServer(
        repo, tmp_path / "triton", model_control_mode="explicit", load_models=("dfp_ensemble",)
    ).start(timeout=120)
    engine = None
    try:
        control = TritonControl(server.http_address, "explicit", sync=server.derive)
        assert control.probe_version() == 1
        # The pipeline's Triton engine, as `inference: {engine: triton}` builds it.
        engine = build_engine(InferenceConfig(engine="triton", url=server.grpc_url), SPEC)
        events = generate(SyntheticConfig(n_events=2000, seed=41, population_seed=0))
        before = score(engine, events)
        assert {r["model"]["version"] for r in before} == {1}

        # ---- 3. publish the FL checkpoint with this site's data, through the default gate
        site = generate(SyntheticConfig(n_events=8000, seed=31, population_seed=0))
        validation, holdout = site.iloc[:4000], site.iloc[4000:]
        assert ModelRepository(repo).versions(AUTOENCODER) == [1]
        result = publish(
            checkpoint,
            repo,
            SPEC,
            validation,
            holdout,
            triton=control,  # load_model + wait until a probe answers MODEL_VERSION == 2
        )
        assert result.version == 2 and served_version(repo) == 2 and not verify(repo)
        manifest = result.manifest
        assert manifest["parent_version"] == 1 and manifest["version"] == 2
        assert manifest["fl_run_id"] == run.result["fl_run_id"] and manifest["rounds"] == ROUNDS
        assert manifest["dp"]["epsilon_max"] == checkpoint.provenance["dp"]["epsilon_max"]
        assert manifest["initial_model"]["version"] == 1  # what the run started from
        assert manifest["initial_model"]["sha256"] == sha256_file(parent_onnx)
        gate = manifest["gate"]
        assert gate["gate"] == "holdout_auroc" and gate["tolerance"] == DEFAULT_TOLERANCE == 0.01
        assert gate["candidate"] >= gate["served"] - DEFAULT_TOLERANCE
        on_disk = json.loads((repo / AUTOENCODER / "2" / "manifest.json").read_text())
        assert on_disk["fl_run_id"] == run.result["fl_run_id"]

        # ---- 4. Triton serves version 2 (and only it)
        status, _ = th.http_get(f"{server.http_url}/v2/models/{AUTOENCODER}/versions/2/ready")
        assert status == 200
        # Version 1 is unloaded once 2 is ready (version_policy latest 1); Triton may finish the
        # unload a moment after the load call returns.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _ = th.http_get(f"{server.http_url}/v2/models/{AUTOENCODER}/versions/1/ready")
            if status != 200:
                break
            time.sleep(0.2)
        assert status != 200, "Triton still serves dfp_autoencoder version 1"

        # ---- 5. the same pipeline engine now scores with version 2
        after = score(engine, events)
    finally:
        if engine is not None:
            engine.close()
        server.stop()
    assert {r["model"]["version"] for r in after} == {2}
    assert {r["model"]["name"] for r in after} == {"dfp_ensemble"}
    assert [r["event_id"] for r in after] == [str(e) for e in events["event_id"]]
    got = np.array([r["anomaly_score"] for r in after])
    thresholds = np.array([r["threshold"] for r in after])
    assert np.isfinite(got).all() and (got >= 0).all()
    # The threshold calibrated on this site's validation data (not the public sample's).
    np.testing.assert_allclose(thresholds, manifest["calibration"]["threshold"], rtol=1e-6)
    assert all(r["is_anomaly"] == (r["anomaly_score"] > r["threshold"]) for r in after)
    # What Triton served is exactly the published file: the same scores in-process (ONNX Runtime
    # on dfp_autoencoder/2), and not version 1's.
    tensor = np.asarray(Featurizer(SPEC).transform(events).tensor)
    local = InProcessEngine(repo, SPEC.spec_hash, autoencoder_version=2).infer(tensor)
    np.testing.assert_allclose(got, local["ANOMALY_SCORE"].reshape(-1), atol=1e-5, rtol=1e-5)
    old = np.array([r["anomaly_score"] for r in before])
    assert not np.allclose(got, old, rtol=1e-3)
    # Valid scores: the new version ranks this stream's anomalies above its normal events.
    labels = events["label"].to_numpy()
    assert 0 < labels.sum() < len(labels)
    assert roc_auc_score(labels, got) > 0.9
