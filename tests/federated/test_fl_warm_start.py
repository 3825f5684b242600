"""Warm start (``initial_model``): a served ONNX version loaded back into torch, its checks, and
a federated run that starts from it (in-process, the real ServerApp and ClientApp handlers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import numpy_helper

from federated.config import FLConfig, InitialModelConfig
from federated.publish import rollback
from federated.runs import prepare_run_dir
from federated.warm_start import (
    WarmStartError,
    load_initial_model,
    resolve_version,
    state_dict_from_onnx,
)
from modelling.checkpoint import CHECKPOINT_DIR, load_checkpoint, normalizer_from_encoder
from modelling.config import ModelConfig
from modelling.export import export_encoder, export_scored_autoencoder
from modelling.models import ScoredAutoencoder, build_autoencoder
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import AUTOENCODER, ENCODER, NORMALIZED, sha256_file
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate
from tests.federated.test_fl_inprocess import (
    _task_identity,  # noqa: F401  (autouse: messages need it)
    run_inprocess,
    small_config,
)

from ..conftest import REPO_ROOT

SPEC = load_spec("security_events")
COMMITTED = REPO_ROOT / "triton_model_repository"
V1_ONNX = COMMITTED / AUTOENCODER / "1" / "model.onnx"
V1 = InitialModelConfig(repository=COMMITTED, version=1)


def _copy(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(COMMITTED, repo)
    return repo


def _one_line_error(exc: pytest.ExceptionInfo[WarmStartError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith("initial_model: ")
    return message


def test_committed_v1_loaded_into_torch_equals_onnx_runtime() -> None:
    initial = load_initial_model(V1, ModelConfig(), SPEC)
    model = build_autoencoder(ModelConfig(), SPEC.tensor_width)
    model.load_state_dict(initial.state_dict)
    # The served head's constants, to rebuild the whole served graph in torch.
    inits = {
        i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(V1_ONNX)).graph.initializer
    }
    for key, tensor in initial.state_dict.items():
        np.testing.assert_array_equal(tensor.numpy(), inits[f"autoencoder.{key}"])
    head = ScoredAutoencoder(
        model,
        SPEC.layout.field_index(),
        len(SPEC.layout.fields),
        inits["field_mean"],
        inits["field_std"],
        float(inits["threshold"][0]),
        int(inits["version"][0]),
    ).eval()
    np.testing.assert_array_equal(head.membership.numpy(), inits["membership"])

    # Real events through the served encoder (normal and anomalous), plus off-distribution input.
    events = generate(SyntheticConfig(n_events=1500, seed=5, population_seed=0))
    raw = np.asarray(Featurizer(SPEC).transform(events).tensor)
    normalized = initial.normalizer.transform(raw)
    noise = np.random.default_rng(0).normal(size=(500, SPEC.tensor_width)).astype(np.float32)
    x = np.concatenate([normalized, noise]).astype(np.float32)

    # ONNX Runtime on the served file, with the reconstruction (the decoder's output, what
    # `NORMALIZED - reconstruction` subtracts) exposed as an extra graph output.
    graph_model = onnx.load(str(V1_ONNX))
    sub = next(n for n in graph_model.graph.node if n.op_type == "Sub" and n.input[0] == NORMALIZED)
    graph_model.graph.output.append(onnx.ValueInfoProto(name=sub.input[1]))
    session = ort.InferenceSession(
        graph_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    score, field_z, threshold, version, recon = session.run(None, {NORMALIZED: x})
    with torch.no_grad():
        t_recon = model(torch.from_numpy(x)).numpy()
        t_score, t_field_z, t_threshold, t_version = (t.numpy() for t in head(torch.from_numpy(x)))
    np.testing.assert_allclose(t_recon, recon, atol=1e-5, rtol=0)
    np.testing.assert_allclose(t_score, score, atol=1e-5, rtol=1e-4)
    # FIELD_Z divides per-field errors by stds of ~1e-5..1e-3, which magnifies float32 rounding
    # 1e5-fold; compare the per-field errors it is made of instead.
    std, mean = inits["field_std"], inits["field_mean"]
    np.testing.assert_allclose(t_field_z * std + mean, field_z * std + mean, atol=1e-5, rtol=1e-3)
    np.testing.assert_array_equal(t_threshold, threshold)
    np.testing.assert_array_equal(t_version, version)

    # The normalizer is the served encoder's, and the provenance names both files.
    served = normalizer_from_encoder(COMMITTED / ENCODER / "1" / "model.onnx")
    np.testing.assert_array_equal(initial.normalizer.center, served.center)
    np.testing.assert_array_equal(initial.normalizer.scale, served.scale)
    assert initial.info["version"] == 1
    assert initial.info["sha256"] == sha256_file(V1_ONNX)
    assert (
        initial.info["run_id"]
        == json.loads((V1_ONNX.parent / "manifest.json").read_text())["run_id"]
    )
    assert initial.info["encoder"]["sha256"] == sha256_file(initial.encoder_path)


@pytest.mark.parametrize(
    "model_config",
    [ModelConfig(kind="cnn"), ModelConfig(hidden=[64, 48, 8], dropout=0.1)],
    ids=["cnn", "mlp-dropout"],
)
def test_other_architectures_round_trip_through_the_export(
    tmp_path: Path, model_config: ModelConfig
) -> None:
    """Conv/ConvTranspose weights and Sequential indices shifted by Dropout map back too."""
    model = build_autoencoder(model_config, SPEC.tensor_width, seed=3).eval()
    n = len(SPEC.layout.fields)
    scored = ScoredAutoencoder(model, SPEC.layout.field_index(), n, np.zeros(n), np.ones(n), 0.5, 1)
    path = export_scored_autoencoder(scored, SPEC.tensor_width, tmp_path / "m.onnx", {})
    state = state_dict_from_onnx(path, model_config, SPEC.tensor_width)
    want = model.state_dict()
    assert list(state) == list(want)
    for key in want:
        torch.testing.assert_close(state[key], want[key], rtol=0, atol=0)


def test_version_served_latest_or_number(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    shutil.copytree(repo / AUTOENCODER / "1", repo / AUTOENCODER / "2")
    cfg = InitialModelConfig(repository=repo)
    assert resolve_version(cfg) == 2  # served: version_policy latest
    rollback(repo, 1)  # pinned: "served" follows the pin, "latest" does not
    assert resolve_version(cfg) == 1
    assert resolve_version(cfg.model_copy(update={"version": "latest"})) == 2
    assert resolve_version(cfg.model_copy(update={"version": 2})) == 2
    with pytest.raises(WarmStartError, match=r"has no version 5 .*\(have \[1, 2\]\)") as exc:
        resolve_version(cfg.model_copy(update={"version": 5}))
    _one_line_error(exc)
    with pytest.raises(WarmStartError, match="no dfp_autoencoder versions"):
        resolve_version(InitialModelConfig(repository=tmp_path / "nowhere"))


def test_other_architecture_is_refused_in_one_line() -> None:
    with pytest.raises(WarmStartError, match="architecture differs") as exc:
        load_initial_model(V1, ModelConfig(hidden=[64, 16]), SPEC)
    message = _one_line_error(exc)
    assert "[128, 32]" in message and "[64, 16]" in message
    with pytest.raises(WarmStartError, match="architecture differs"):
        load_initial_model(V1, ModelConfig(kind="cnn"), SPEC)


def test_other_feature_spec_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    path = repo / AUTOENCODER / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["feature_spec_hash"] = "0000000000000000"
    path.write_text(json.dumps(manifest))
    with pytest.raises(WarmStartError, match="feature spec hash differs") as exc:
        load_initial_model(InitialModelConfig(repository=repo, version=1), ModelConfig(), SPEC)
    assert "0000000000000000" in _one_line_error(exc)


def test_tampered_version_is_refused(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    with (repo / AUTOENCODER / "1" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WarmStartError, match="sha256 differs from its manifest") as exc:
        load_initial_model(InitialModelConfig(repository=repo, version=1), ModelConfig(), SPEC)
    _one_line_error(exc)


def test_public_encoder_must_be_the_served_one(tmp_path: Path) -> None:
    served = COMMITTED / ENCODER / "1" / "model.onnx"
    assert load_initial_model(V1, ModelConfig(), SPEC, public_encoder=served).encoder_path == served
    width = SPEC.tensor_width
    other = export_encoder(
        Normalizer(np.zeros(width, np.float32), np.ones(width, np.float32), 5.0),
        tmp_path / "enc.onnx",
        {"feature_spec_hash": SPEC.spec_hash},
    )
    with pytest.raises(WarmStartError, match="is not the served dfp_encoder") as exc:
        load_initial_model(V1, ModelConfig(), SPEC, public_encoder=other)
    _one_line_error(exc)


def test_config_default_is_random_init_and_run_dir_pins_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = yaml.safe_load((REPO_ROOT / "configs" / "fed_dp_small.yml").read_text())
    assert FLConfig.model_validate(doc).initial_model is None  # results stay reproducible
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        FLConfig.model_validate({**doc, "initial_model": {"version": 0}})

    monkeypatch.chdir(REPO_ROOT)  # a relative repository resolves against the working dir
    doc["runs_dir"] = str(tmp_path / "runs")
    config = FLConfig.model_validate({**doc, "initial_model": {"version": "served"}})
    resolved, run_dir = prepare_run_dir(config, tmp_path / "run")
    assert resolved.initial_model == InitialModelConfig(repository=COMMITTED.resolve(), version=1)
    written = yaml.safe_load((run_dir / "config.yaml").read_text())["initial_model"]
    assert written == {"repository": str(COMMITTED.resolve()), "version": 1}

    # A version that cannot start the run fails before the run directory exists.
    bad = config.model_copy(update={"model": ModelConfig(hidden=[64, 16])})
    with pytest.raises(WarmStartError, match="architecture differs"):
        prepare_run_dir(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_inprocess_run_starts_from_the_served_version(tmp_path: Path) -> None:
    config = small_config(
        tmp_path,
        initial_model={"repository": str(COMMITTED), "version": "latest"},
        federation={"rounds": 1},
    )
    run_dir, result = run_inprocess(config, tmp_path)
    assert result["status"] == "completed" and result["seeds"]["model_init"] is None
    info = result["initial_model"]
    assert info["version"] == 1 and info["sha256"] == sha256_file(V1_ONNX)
    # Round 1 evaluated the served weights on the public sample: the served model's loss
    # (version 1's validation loss is 5.6e-5), not a random model's (~1).
    assert result["initial_public_loss"] < 1e-3
    assert "served encoder" in result["public"]["normalizer"]
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_DIR)
    assert checkpoint.provenance["initial_model"] == info
    served = normalizer_from_encoder(COMMITTED / ENCODER / "1" / "model.onnx")
    np.testing.assert_array_equal(checkpoint.normalizer.center, served.center)
    manifest = json.loads(
        (run_dir / "model_repository" / AUTOENCODER / "1" / "manifest.json").read_text()
    )
    assert manifest["initial_model"] == info
