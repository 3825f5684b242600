"""The reproducibility contract (docs/reproducibility.md).

* One machine: the same config and seeds give the same ONNX bytes (determinism).
* Any x86-64 machine: a retrained version is *equivalent* to the reference within the measured
  tolerances of :mod:`modelling.evaluation.equivalence`, never byte-equal by promise.
* Both checks are sensitive: a changed seed or learning rate fails them.

Another CPU family is emulated on this one by forcing other SIMD kernels in a child process
(``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``): the rounding
differences that made Intel AVX-512 and AMD give different bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelling.centralized import train_centralized
from modelling.evaluation.equivalence import ACROSS_CPU_FAMILIES, compare_versions
from morpheus_ext.config_io import dump_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import AUTOENCODER, ENCODER, sha256_file
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT, small_config

OTHER_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def _onnx_hashes(repository: Path) -> dict[str, str]:
    return {m: sha256_file(repository / m / "1" / "model.onnx") for m in (ENCODER, AUTOENCODER)}


@pytest.fixture(scope="module")
def public_batch() -> tuple[np.ndarray, np.ndarray]:
    """A fixed public batch: synthetic events with anomalies, featurized."""
    featurizer = Featurizer(load_spec("security_events"))
    batch = featurizer.transform(generate(SyntheticConfig(n_events=6000, seed=7)))
    labels = featurizer.labels(batch.frame)
    assert labels is not None
    return np.asarray(batch.tensor), labels


def _train(tmp: Path, name: str, **train: object) -> Path:
    config = small_config(tmp, epochs=6)
    config.train = config.train.model_copy(update=train)
    return train_centralized(config, tmp / name).repository


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("reference"), "run")


@pytest.mark.slow
def test_training_twice_on_one_machine_gives_the_same_bytes(
    reference: Path, tmp_path: Path
) -> None:
    again = _train(tmp_path, "again")
    assert _onnx_hashes(again) == _onnx_hashes(reference)


def _train_in_child(tmp: Path, env: dict[str, str]) -> tuple[Path, dict[str, object]]:
    """The small config trained in a fresh process with ``env`` (kernel choices) on top."""
    config = small_config(tmp, epochs=6)
    tmp.mkdir(parents=True)
    dump_config(config, tmp / "config.yml")
    script = (
        "import sys; from pathlib import Path\n"
        "from pipelines.config import CentralizedConfig, load_config\n"
        "from modelling.centralized import train_centralized\n"
        "c = load_config(Path(sys.argv[1]), CentralizedConfig)\n"
        "train_centralized(c, Path(sys.argv[2]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp / "config.yml"), str(tmp / "run")],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        timeout=600,
    )
    run = json.loads((tmp / "run" / "run.json").read_text())
    return tmp / "run" / "model_repository", run["environment"]["kernels"]


@pytest.mark.slow
def test_another_mkl_code_path_trains_other_bytes_of_the_same_quality(
    reference: Path, public_batch: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """MKL picks GEMM code by ISA and CPU vendor (what made Intel and AMD train different
    bytes). A process told to dispatch MKL as on an SSE4.2-only CPU (another CPU family,
    emulated) records its kernels, trains other bytes (the byte check sees a CPU change) and a
    model within ``ACROSS_CPU_FAMILIES`` of the reference (the cross-CPU contract)."""
    other, kernels = _train_in_child(tmp_path / "sse", {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"})
    assert kernels["pinned"] and kernels["mkl_cbwr_branch"] == "AUTO", kernels
    assert _onnx_hashes(other)[AUTOENCODER] != _onnx_hashes(reference)[AUTOENCODER]
    tensor, labels = public_batch
    report = compare_versions(other, reference, tensor, labels, tolerance=ACROSS_CPU_FAMILIES)
    assert report.equivalent, report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"seed": 1}, {"lr": 0.0021}], ids=["seed", "lr"])
def test_a_real_change_of_training_fails_both_checks(
    change: dict[str, object],
    reference: Path,
    public_batch: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    changed = _train(tmp_path, "changed", **change)
    assert _onnx_hashes(changed)[AUTOENCODER] != _onnx_hashes(reference)[AUTOENCODER]
    tensor, labels = public_batch
    report = compare_versions(changed, reference, tensor, labels)
    assert not report.equivalent
    assert any("scores differ" in f for f in report.failures), report.failures


def test_a_repository_is_equivalent_to_itself_and_names_what_differs(tmp_path: Path) -> None:
    """Unit check of the comparison on the committed repository (no training)."""
    committed = REPO_ROOT / "triton_model_repository"
    tensor = np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)
    same = compare_versions(committed, committed, tensor)
    assert same.equivalent and same.score_max_rel_diff == 0.0 and same.flag_agreement == 1.0

    copy = tmp_path / "repo"
    shutil.copytree(committed, copy)
    manifest = copy / AUTOENCODER / "1" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["architecture"]["hidden"] = [64, 16]
    manifest.write_text(json.dumps(doc))
    report = compare_versions(copy, committed, tensor)
    assert not report.equivalent
    assert len(report.failures) == 1
    assert report.failures[0].startswith("manifest fields differ: architecture: ")
    assert "[64, 16]" in report.failures[0]


@pytest.mark.slow
def test_the_across_cpu_tolerance_still_fails_a_barely_trained_model(
    reference: Path, public_batch: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """``ACROSS_CPU_FAMILIES`` forgives other weights of the same quality (another CPU family
    trains them), not a model that did not learn: a learning rate 1000x too small fails it."""
    tensor, labels = public_batch
    same = compare_versions(reference, reference, tensor, labels, tolerance=ACROSS_CPU_FAMILIES)
    assert same.equivalent
    weak = _train(tmp_path, "weak", lr=2e-6)
    report = compare_versions(weak, reference, tensor, labels, tolerance=ACROSS_CPU_FAMILIES)
    assert not report.equivalent, report.summary()
