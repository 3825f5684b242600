"""Centralized training: data file + spec -> featurize -> fit -> calibrate -> ONNX -> repository.

The same featurizer, normalizer and model factory as serving and federated training; the run
directory gets the resolved config, seeds, library versions, data hashes, history and metrics,
and a Triton model repository holding the new version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelling.calibration import Calibration, calibrate
from modelling.checkpoint import CHECKPOINT_DIR, save_checkpoint
from modelling.config import CentralizedConfig, DataSource
from modelling.export import export_version
from modelling.models import ScoredAutoencoder, build_autoencoder
from modelling.progress import EpochProgress, Steps
from modelling.rundir import environment, new_run_dir, write_json
from modelling.training import EpochRecord, fit_autoencoder, seed_everything
from morpheus_ext.config_io import dump_config
from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.io import check_labels, file_sha256, read_frame
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.repository_writer import write_repository
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import generate

log = logging.getLogger(__name__)
MODEL_REPOSITORY = "model_repository"


@dataclass
class TrainResult:
    run_dir: Path
    repository: Path
    spec: FeatureSpec
    normalizer: Normalizer
    calibration: Calibration
    history: list[EpochRecord]
    metrics: dict[str, Any]
    train_normalized: np.ndarray


def load_source(source: DataSource, spec: FeatureSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The DataFrame and how to find it again (file hash, or the synthetic config)."""
    if source.path is not None:
        return read_frame(source.path, spec), {
            "path": str(source.path),
            "sha256": file_sha256(source.path),
        }
    assert source.synthetic is not None
    return generate(source.synthetic), {"synthetic": source.synthetic.model_dump(mode="json")}


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation row indices (sorted); centralized and per-site training share it
    so a site's split is the one its rows would get in a centralized run with the same seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def onnx_parity(
    repository: Path,
    spec: FeatureSpec,
    module: ScoredAutoencoder,
    normalizer: Normalizer,
    raw: np.ndarray,
) -> float:
    """ONNX vs torch over the whole served graph (encoder + scored autoencoder).

    Max abs diff of the score, and of the per-field errors (z times the calibration std)
    relative to max(1, error): the model's numbers. z itself divides by small stds, which
    magnifies float32 rounding, and errors of anomalous rows reach 100s, where float32 rounding
    alone exceeds 1e-5 absolute.
    """
    engine = InProcessEngine(repository, spec.spec_hash)
    onnx_out = engine.infer(raw)
    with torch.no_grad():
        score, field_z, _, _ = module(torch.from_numpy(normalizer.transform(raw)))
    std, mean = module.field_std.numpy(), module.field_mean.numpy()
    field_err = field_z.numpy() * std + mean
    field_err_diff = (
        np.abs(onnx_out["FIELD_Z"] - field_z.numpy()) * std / np.maximum(1.0, field_err)
    )
    return float(max(np.abs(onnx_out["ANOMALY_SCORE"] - score.numpy()).max(), field_err_diff.max()))


def training_rows(
    config: CentralizedConfig, spec: FeatureSpec, frame: pd.DataFrame
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(featurized batch, raw tensor, rows fitted on, their train / validation positions):
    the one place a run's split is decided, so ``evaluate --run-dir`` fits its baselines on
    exactly the rows training did (and reports the same numbers)."""
    featurizer = Featurizer(spec)
    batch = featurizer.transform(frame)
    labels = featurizer.labels(batch.frame)
    tensor = np.asarray(batch.tensor)
    use = np.ones(len(tensor), dtype=bool)
    if config.data.fit_on == "normal" and labels is not None:
        use = labels == 0
    fit_rows = np.flatnonzero(use)
    tr, va = split_rows(len(fit_rows), config.data.val_fraction, config.seed)
    return batch, tensor, fit_rows, tr, va


def baseline_training_matrix(config: CentralizedConfig, run_dir: Path) -> np.ndarray:
    """The normalized training rows of a finished run, as its own evaluation used them
    (the run's split, the run's stored normalizer)."""
    from modelling.checkpoint import load_checkpoint

    spec = load_spec(config.data.spec)
    frame, _ = load_source(config.train_source, spec)
    _, tensor, fit_rows, tr, _ = training_rows(config, spec, frame)
    normalizer = load_checkpoint(run_dir / CHECKPOINT_DIR).normalizer
    return normalizer.transform(tensor[fit_rows[tr]])


def preflight(config: CentralizedConfig, spec: FeatureSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the training data and check what would otherwise fail only after training: the
    label column exists and has normal rows (``fit_on: normal``), and the test file (if any)
    has both classes. Returns the training frame and how to find it again."""
    frame, data_info = load_source(config.train_source, spec)
    where = str(config.train_source.path or "data.train (synthetic)")
    if spec.label_column is not None and config.data.fit_on == "normal":
        check_labels(frame, spec, where, need_both=False, need_normal=True)
    test = config.data.test
    if test is not None and test.path is not None and spec.label_column is not None:
        test_frame, _ = load_source(test, spec)
        check_labels(test_frame, spec, str(test.path), need_both=True, need_normal=False)
    return frame, data_info


def train_centralized(
    config: CentralizedConfig,
    run_dir: Path | None = None,
    version: int = 1,
    progress: bool = False,
) -> TrainResult:
    """Train one version. Data and labels are checked before the run directory exists; a run
    that fails after that leaves ``failed.json`` (the error) beside its config."""
    seed_everything(config.seed, config.train.threads)
    spec = load_spec(config.data.spec)
    frame, data_info = preflight(config, spec)
    run_dir = run_dir or new_run_dir(config.runs_dir, config.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    try:
        return _train(config, spec, frame, data_info, run_dir, version, progress)
    except BaseException as exc:
        write_json(
            run_dir / "failed.json",
            {
                "status": "failed",
                "error": f"{type(exc).__name__}: {str(exc).strip()[:2000]}",
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        raise


def _train(
    config: CentralizedConfig,
    spec: FeatureSpec,
    frame: pd.DataFrame,
    data_info: dict[str, Any],
    run_dir: Path,
    version: int,
    progress: bool = False,
) -> TrainResult:
    batch, tensor, fit_rows, tr, va = training_rows(config, spec, frame)
    normalizer = Normalizer.fit(tensor[fit_rows[tr]], spec.layout)
    x_train = normalizer.transform(tensor[fit_rows[tr]])
    x_val = normalizer.transform(tensor[fit_rows[va]])
    log.info(
        "training on %d rows, validating on %d (%d rejected)", len(tr), len(va), len(batch.rejects)
    )

    model = build_autoencoder(config.model, spec.tensor_width, seed=config.train.seed)
    reporter = EpochProgress(config.train.epochs, config.train.patience) if progress else None
    history = fit_autoencoder(model, x_train, x_val, config.train, reporter)
    if reporter is not None:
        reporter.done(len(history))
    steps = Steps("train", enabled=progress)
    with steps(f"calibrated the threshold on {len(va):,} validation rows"):
        calib = calibrate(model, x_val, spec.layout, config.calibration.target_fpr)

    with steps(f"exported version {version} to ONNX"):
        exported = export_version(model, normalizer, spec, calib, version, run_dir / "export")
    enc, ae, scored, meta = (
        exported.encoder,
        exported.autoencoder,
        exported.scored,
        exported.metadata,
    )
    metrics: dict[str, Any] = {
        "train_rows": len(tr),
        "val_rows": len(va),
        "rejected_rows": len(batch.rejects),
        "epochs_run": len(history),
        "final_train_loss": history[-1].train_loss,
        "best_val_loss": min(h.val_loss for h in history),
        "threshold": calib.threshold,
    }
    manifest = {
        "run_id": run_dir.name,
        "parent_version": None,
        "feature_spec": meta["feature_spec"],
        "feature_spec_hash": spec.spec_hash,
        "architecture": config.model.model_dump(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "calibration": {
            "target_fpr": calib.target_fpr,
            "threshold": calib.threshold,
            "n_samples": calib.n_samples,
        },
        "metrics": {k: metrics[k] for k in ("best_val_loss", "threshold")},
        "dp": None,
    }
    with steps(f"wrote the model repository and checkpoint under {run_dir}"):
        repository = write_repository(run_dir / MODEL_REPOSITORY, spec, enc, ae, version, manifest)
        save_checkpoint(
            run_dir / CHECKPOINT_DIR,
            model,
            config.model,
            normalizer,
            config.data.spec,
            spec.spec_hash,
            {"run_id": run_dir.name, "kind": "centralized"},
        )
    sample = tensor[fit_rows[va][:2048]]
    with steps("checked ONNX Runtime against PyTorch"):
        metrics["onnx_parity_max_abs_diff"] = onnx_parity(
            repository, spec, scored, normalizer, sample
        )

    write_json(
        run_dir / "run.json",
        {
            "kind": "centralized",
            "run_id": run_dir.name,
            "seeds": {"global": config.seed, "train": config.train.seed},
            "environment": environment(),
            "precision": config.train.precision,
            "data": {"train": data_info},
            "feature_spec": {"name": spec.name, "version": spec.version, "hash": spec.spec_hash},
            "history": [h.__dict__ for h in history],
            "calibration": calib.summary(),
            "metrics": metrics,
            "dp": None,
        },
    )
    return TrainResult(run_dir, repository, spec, normalizer, calib, history, metrics, x_train)
