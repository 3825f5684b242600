"""Detection quality on the data the issues name (slow: real training runs, ~1 minute)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from morpheus_ext.model_repository import sha256_file
from pipelines.cli import main
from pipelines.config import CentralizedConfig, load_config

from .conftest import REPO_ROOT, SHARED_DATA

NSL = SHARED_DATA / "nsl-kdd"


def _train(
    config_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str] | None = None,
) -> dict[str, float]:
    """Run `secureai train` on a config (runs written under tmp_path); parse its AUROC line."""
    config = load_config(config_path, CentralizedConfig)
    config.runs_dir = tmp_path
    patched = tmp_path / "config.yml"
    patched.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["train", "--config", str(patched), *(extra or [])]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("AUROC"))
    parts = line.split()
    return {parts[i]: float(parts[i + 1]) for i in range(0, 4, 2)}


@pytest.mark.slow
@pytest.mark.skipif(
    not NSL.is_dir(), reason="needs ../shared/data/nsl-kdd (the shared data folder)"
)
def test_nsl_kdd_reaches_the_published_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = _train(REPO_ROOT / "configs" / "nsl_kdd.yml", tmp_path, capsys)
    assert metrics["AUROC"] >= 0.96 and metrics["AUPRC"] >= 0.96


@pytest.mark.slow
def test_synthetic_default_reaches_auroc_095_and_reproduces_version_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make models` (configs/centralized.yml) gives the committed ONNX files byte for byte."""
    repo = tmp_path / "repo"
    metrics = _train(
        REPO_ROOT / "configs" / "centralized.yml", tmp_path, capsys, ["--publish", str(repo)]
    )
    assert metrics["AUROC"] >= 0.95
    committed = REPO_ROOT / "triton_model_repository"
    for model in ("dfp_encoder", "dfp_autoencoder"):
        rel = Path(model) / "1" / "model.onnx"
        assert sha256_file(repo / rel) == sha256_file(committed / rel), rel
