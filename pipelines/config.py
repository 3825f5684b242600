"""Typed configuration for runs (YAML under ``configs/``, validated here by pydantic).

Every run writes its *resolved* config (defaults filled in) to its run directory, so a run is
reproducible from that one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from federated.models import ModelConfig
from federated.training import TrainConfig
from morpheus_ext.fingerprint.config import FingerprintConfig
from morpheus_ext.synthetic import SyntheticConfig
from pipelines.config_io import ConfigError, dump_config, load_config

__all__ = ["ConfigError", "dump_config", "load_config"]  # + the config models below


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """A labelled data file, or synthetic events generated from a config."""

    path: Path | None = None
    synthetic: SyntheticConfig | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DataSource:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of `path` or `synthetic`")
        return self


class DataConfig(_Strict):
    spec: str = "security_events"
    """A shipped spec name (auth, netflow, security_events, nsl_kdd) or a YAML path."""
    train: DataSource
    test: DataSource | None = None
    fit_on: Literal["all", "normal"] = "normal"
    """Train on every row (fully unsupervised) or only rows the label calls normal."""
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)


class CalibrationConfig(_Strict):
    target_fpr: float = Field(default=0.01, gt=0, lt=0.5)


class EvaluationConfig(_Strict):
    baselines: bool = True
    """IsolationForest (and River HalfSpaceTrees when installed) on the same split."""


class CentralizedConfig(_Strict):
    name: str = "centralized"
    seed: int = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    runs_dir: Path = Path("runs")


class DemoConfig(_Strict):
    """The embedded default: synthetic events, train (or use the committed models), stream."""

    name: str = "demo"
    training: CentralizedConfig
    stream: SyntheticConfig
    use_committed_models: bool = False
    committed_repository: Path = Path("triton_model_repository")
    batch_size: int = Field(default=4096, ge=1)
    fingerprint: FingerprintConfig | None = None
    """Per-entity baselines (docs/fingerprinting.md); ``enabled: true`` turns them on."""
