"""Shared fixtures. Services (Triton, Kafka...) are started by fixtures in their own modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from federated.models import ModelConfig
from federated.training import TrainConfig
from morpheus_ext.synthetic import SyntheticConfig
from pipelines.config import CentralizedConfig, DataConfig, DataSource
from pipelines.train import TrainResult, train_centralized

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def small_config(
    runs_dir: Path, kind: str = "mlp", seed: int = 0, epochs: int = 4
) -> CentralizedConfig:
    """A model trained in seconds on 6k synthetic events: enough for contracts, not for AUROC."""
    return CentralizedConfig(
        name=f"tiny-{kind}",
        seed=seed,
        data=DataConfig(
            spec="security_events",
            train=DataSource(synthetic=SyntheticConfig(n_events=6000, seed=seed)),
            fit_on="all",
        ),
        model=ModelConfig(kind=kind),  # type: ignore[arg-type]
        train=TrainConfig(epochs=epochs, batch_size=256, seed=seed, threads=1),
        runs_dir=runs_dir,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    runs = tmp_path_factory.mktemp("runs")
    return train_centralized(small_config(runs), runs / "tiny")
