"""Shared fixtures. Services (Triton, Kafka...) are started by fixtures in their own modules."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelling.centralized import TrainResult, train_centralized
from modelling.config import CentralizedConfig, DataConfig, DataSource, ModelConfig, TrainConfig
from synthetic import SyntheticConfig

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


# --------------------------------------------------------------------------- Triton (real server)
HARNESS_DIR = REPO_ROOT / "scripts" / "triton"
if str(HARNESS_DIR) not in sys.path:
    sys.path.insert(0, str(HARNESS_DIR))


def triton_harness() -> Any:
    """The harness module (scripts/triton/triton_harness.py), importable from the main venv."""
    import triton_harness as th

    return th


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real CPU Triton server for the suite, serving the committed model repository.

    A missing Triton venv FAILS (``make test`` installs it first): a skipped serving test would
    hide a broken set-up.
    """
    th = triton_harness()
    try:
        th.load_layout()
    except th.TritonNotInstalled as exc:
        pytest.fail(str(exc))
    server = th.TritonServer(
        REPO_ROOT / "triton_model_repository", tmp_path_factory.mktemp("triton")
    )
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()
