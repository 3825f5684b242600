"""Detection quality on the data the issues name (slow: real training runs, ~1 minute)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelling.centralized import load_source
from modelling.config import CentralizedConfig
from modelling.evaluation.equivalence import ACROSS_CPU_FAMILIES, compare_versions
from morpheus_ext.config_io import load_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.cli import main

from ..conftest import REPO_ROOT, SHARED_DATA

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
    """`make models` (configs/centralized.yml) gives a version of the committed one's quality
    on any x86-64 CPU (docs/reproducibility.md): the same manifest fields and encoder, and on
    the config's public test batch AUROC within 0.005, >= 99% of events flagged alike, the
    threshold within 35% (``ACROSS_CPU_FAMILIES``: another CPU family trains other weights, as
    a change of seed does). Byte equality is checked on one machine
    (tests/modelling/test_reproducibility.py), where it is promised."""
    repo = tmp_path / "repo"
    metrics = _train(
        REPO_ROOT / "configs" / "centralized.yml", tmp_path, capsys, ["--publish", str(repo)]
    )
    assert metrics["AUROC"] >= 0.95
    config = load_config(REPO_ROOT / "configs" / "centralized.yml", CentralizedConfig)
    assert config.data.test is not None
    spec = load_spec(config.data.spec)
    featurizer = Featurizer(spec)
    frame, _ = load_source(config.data.test, spec)
    batch = featurizer.transform(frame)
    report = compare_versions(
        repo,
        REPO_ROOT / "triton_model_repository",
        batch.tensor,
        featurizer.labels(batch.frame),
        tolerance=ACROSS_CPU_FAMILIES,
    )
    assert report.equivalent, report.summary()
