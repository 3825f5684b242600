"""Models, ONNX export and the in-process ensemble, held against torch and NumPy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from modelling.centralized import TrainResult, train_centralized
from modelling.config import ModelConfig, TrainConfig
from modelling.models import ScoredAutoencoder, build_autoencoder
from modelling.training import fit_autoencoder
from morpheus_ext.model_repository import (
    AUTOENCODER,
    ENCODER,
    ENSEMBLE,
    POSTPROC,
    ModelRepository,
    ModelRepositoryError,
)
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT, small_config


def _scored_module(run: TrainResult) -> ScoredAutoencoder:
    model = build_autoencoder(ModelConfig(), run.spec.tensor_width)
    onnx_dir = run.repository / AUTOENCODER / "1"
    assert (onnx_dir / "model.onnx").is_file()
    # Rebuild the torch side from the exported weights to compare the two runtimes.
    import onnx
    from onnx import numpy_helper

    weights = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(onnx_dir / "model.onnx").graph.initializer
    }
    state = {
        k.removeprefix("autoencoder."): torch.from_numpy(v.copy())
        for k, v in weights.items()
        if k.startswith("autoencoder.")
    }
    model.load_state_dict(state)
    c = run.calibration
    return ScoredAutoencoder(
        model,
        run.spec.layout.field_index(),
        len(run.spec.layout.fields),
        c.field_mean,
        c.field_std,
        c.threshold,
        1,
    ).eval()


def _real_tensor(run: TrainResult, n: int = 3000, seed: int = 7) -> np.ndarray:
    frame = generate(SyntheticConfig(n_events=n, seed=seed))
    return np.asarray(Featurizer(run.spec).transform(frame).tensor)


def test_onnx_matches_torch_on_random_and_real_batches(tiny_run: TrainResult) -> None:
    engine = InProcessEngine(tiny_run.repository, tiny_run.spec.spec_hash)
    module = _scored_module(tiny_run)
    rng = np.random.default_rng(0)
    real = _real_tensor(tiny_run)
    noise = rng.normal(size=(512, 256)).astype(np.float32)
    for raw in (real, noise):
        out = engine.infer(raw)
        with torch.no_grad():
            score, field_z, thr, _ = module(torch.from_numpy(tiny_run.normalizer.transform(raw)))
        assert np.abs(out["ANOMALY_SCORE"] - score.numpy()).max() <= 1e-5
        std = tiny_run.calibration.field_std  # compare field errors: z magnifies rounding by 1/std
        assert (np.abs(out["FIELD_Z"] - field_z.numpy()) * std).max() <= 1e-5
        assert (out["THRESHOLD"] == thr.numpy()).all() and (out["MODEL_VERSION"] == 1).all()
    assert tiny_run.metrics["onnx_parity_max_abs_diff"] <= 1e-5


def test_encoder_onnx_equals_the_numpy_normalizer(tiny_run: TrainResult) -> None:
    engine = InProcessEngine(tiny_run.repository, tiny_run.spec.spec_hash)
    raw = _real_tensor(tiny_run, 2000, seed=3)
    raw[::7, 0] = np.nan  # missing optional numerics are imputed by the encoder
    np.testing.assert_allclose(engine.normalize(raw), tiny_run.normalizer.transform(raw), atol=1e-6)


def test_in_process_ensemble_equals_a_numpy_reference(tiny_run: TrainResult) -> None:
    """Reference: reconstruct with torch, then score in plain NumPy from the definitions."""
    engine = InProcessEngine(tiny_run.repository, tiny_run.spec.spec_hash)
    module = _scored_module(tiny_run)
    raw = _real_tensor(tiny_run, 1500, seed=11)
    x = tiny_run.normalizer.transform(raw)
    with torch.no_grad():
        recon = module.autoencoder(torch.from_numpy(x)).numpy()
    err = (x - recon) ** 2
    fields = tiny_run.spec.layout.fields
    field_err = np.stack([err[:, f.offset : f.stop].mean(axis=1) for f in fields], axis=1)
    z = (field_err - tiny_run.calibration.field_mean) / tiny_run.calibration.field_std
    score = err.mean(axis=1)
    out = engine.infer(raw)
    np.testing.assert_allclose(out["ANOMALY_SCORE"].ravel(), score, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        out["MAX_ABS_Z"].ravel(), np.abs(z).max(axis=1), rtol=1e-3, atol=1e-3
    )
    assert (out["IS_ANOMALY"].ravel() == (score > tiny_run.calibration.threshold)).mean() > 0.999
    top1 = np.argmax(z, axis=1)
    assert (out["TOP_FIELDS"][:, 0] == top1).mean() > 0.99


def test_serving_refuses_a_model_for_another_spec(tiny_run: TrainResult) -> None:
    with pytest.raises(ModelRepositoryError, match="feature spec mismatch"):
        InProcessEngine(tiny_run.repository, "0123456789abcdef")


def _parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("root", ["generated", "committed"])
def test_every_config_parses_as_a_triton_model_config(tiny_run: TrainResult, root: str) -> None:
    repo = tiny_run.repository if root == "generated" else REPO_ROOT / "triton_model_repository"
    configs = {
        m: _parse_config(repo / m / "config.pbtxt")
        for m in (ENCODER, AUTOENCODER, POSTPROC, ENSEMBLE)
    }
    assert configs[ENCODER].platform == configs[AUTOENCODER].platform == "onnxruntime_onnx"
    assert configs[POSTPROC].backend == "python"
    ens = configs[ENSEMBLE]
    assert ens.platform == "ensemble" and ens.max_batch_size > 0
    assert [(i.name, list(i.dims)) for i in ens.input] == [("EVENT_TENSOR", [256])]
    assert "ANOMALY_SCORE" in {o.name for o in ens.output}  # the output Morpheus maps to `probs`
    steps = [s.model_name for s in ens.ensemble_scheduling.step]
    assert steps == [ENCODER, AUTOENCODER, POSTPROC]
    assert configs[AUTOENCODER].HasField("dynamic_batching")
    spec_hash = ModelRepository(repo).config_parameters(AUTOENCODER)["feature_spec_hash"]
    assert spec_hash == tiny_run.spec.spec_hash


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 256)).astype(np.float32)
    weights = []
    for _ in range(2):
        model = build_autoencoder(ModelConfig(hidden=[32, 8]), seed=5)
        fit_autoencoder(model, x[:500], x[500:], TrainConfig(epochs=2, seed=5, threads=1))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.slow
def test_cnn_autoencoder_trains_and_exports(tmp_path: Path) -> None:
    run = train_centralized(small_config(tmp_path, kind="cnn", epochs=2), tmp_path / "cnn")
    engine = InProcessEngine(run.repository, run.spec.spec_hash)
    out = engine.infer(_real_tensor(run, 500))
    assert out["ANOMALY_SCORE"].shape == (len(out["TOP_FIELDS"]), 1)
    assert run.metrics["onnx_parity_max_abs_diff"] <= 1e-5


def test_committed_repository_is_what_the_writer_produces() -> None:
    """The committed version 1 is the writer's output: same configs, same postproc wrapper."""
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.repository_writer import POSTPROC_MODEL_SOURCE, render_configs

    repo = REPO_ROOT / "triton_model_repository"
    for model, text in render_configs(load_spec("security_events")).items():
        assert (repo / model / "config.pbtxt").read_text() == text, model
    assert (repo / POSTPROC / "1" / "model.py").read_text() == POSTPROC_MODEL_SOURCE
    manifest = ModelRepository(repo).manifest(AUTOENCODER, 1)
    from morpheus_ext.model_repository import sha256_file

    assert manifest["files"]["model.onnx"] == sha256_file(repo / AUTOENCODER / "1" / "model.onnx")
