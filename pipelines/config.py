"""Typed configuration for runs (YAML under ``configs/``, validated here by pydantic).

Every run writes its *resolved* config (defaults filled in) to its run directory, so a run is
reproducible from that one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from federated.models import ModelConfig
from federated.training import TrainConfig
from morpheus_ext.synthetic import SyntheticConfig


class ConfigError(ValueError):
    """A config that cannot be loaded (message is one user-facing line)."""


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


C = TypeVar("C", bound=BaseModel)


def load_config(path: str | Path, model: type[C]) -> C:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        config = model.model_validate(doc)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {err['msg']}") from exc
    return config


def dump_config(config: BaseModel, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path
