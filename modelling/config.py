"""Typed configuration of training runs: architecture, training loop, data, calibration.

torch-free (pydantic only), so config loading never pulls the modelling stack into serving:
``pipelines.config`` and the Kafka/REST services validate these without importing torch.
Every run writes its *resolved* config (defaults filled in) to its run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from morpheus_ext.config_io import StrictModel
from synthetic import SyntheticConfig

ModelKind = Literal["mlp", "cnn"]


class ModelConfig(StrictModel):
    """Architecture of the autoencoder (part of every run's resolved config)."""

    kind: ModelKind = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128, 32])
    """MLP: encoder widths, the last one is the bottleneck (the decoder mirrors them)."""
    channels: list[int] = Field(default_factory=lambda: [8, 16])
    """CNN: channels of the strided Conv1d encoder blocks (each halves the length)."""
    latent: int = 32
    """CNN: bottleneck width."""
    dropout: float = 0.0


class TrainConfig(StrictModel):
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=4, ge=1)
    """Stop after this many epochs without validation improvement (best weights are kept)."""
    seed: int = 0
    threads: int = Field(default=2, ge=1)
    precision: Literal["float64", "float32"] = "float64"
    """Arithmetic of the training loop. float64 keeps the last-bit differences between CPUs'
    SIMD kernels (AVX2 vs AVX-512, Intel vs AMD BLAS paths) ~1e-16, so after dozens of epochs
    the float32 weights that are exported still agree across machines; in float32 the same
    differences grow into different models (docs/reproducibility.md). Served graphs are float32
    either way."""


class DataSource(StrictModel):
    """A labelled data file, or synthetic events generated from a config."""

    path: Path | None = None
    synthetic: SyntheticConfig | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DataSource:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of `path` or `synthetic`")
        return self


class DataConfig(StrictModel):
    spec: str = "security_events"
    """A shipped spec name (auth, netflow, security_events, nsl_kdd) or a YAML path."""
    train: DataSource | None = None
    """Required, except by federated runs whose sites train on their own windows."""
    test: DataSource | None = None
    fit_on: Literal["all", "normal"] = "normal"
    """Train on every row (fully unsupervised) or only rows the label calls normal."""
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)


class CalibrationConfig(StrictModel):
    target_fpr: float = Field(default=0.01, gt=0, lt=0.5)


class EvaluationConfig(StrictModel):
    baselines: bool = True
    """IsolationForest (and River HalfSpaceTrees when installed) on the same split."""


class CentralizedConfig(StrictModel):
    name: str = "centralized"
    seed: int = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    runs_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _needs_train(self) -> CentralizedConfig:
        if self.data.train is None:
            raise ValueError("data.train is required")
        return self

    @property
    def train_source(self) -> DataSource:
        """``data.train``, checked present at validation."""
        assert self.data.train is not None
        return self.data.train
