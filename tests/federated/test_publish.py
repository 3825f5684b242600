"""Publishing model versions into a repository served by a real Triton (explicit/poll modes)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import numpy_helper

from federated.publish import (
    PAUSE_ENV,
    PublishConfig,
    PublishRefused,
    TritonControl,
    _validate,
    publish,
    rollback,
    served_version,
    verify,
)
from modelling.checkpoint import (
    CHECKPOINT_DIR,
    Checkpoint,
    normalizer_from_encoder,
    save_checkpoint,
)
from modelling.config import ModelConfig, TrainConfig
from modelling.models import build_autoencoder
from modelling.training import fit_autoencoder
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import AUTOENCODER, ModelRepository
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT, triton_harness

SPEC = load_spec("security_events")
COMMITTED = REPO_ROOT / "triton_model_repository"


def served_checkpoint(repo: Path, fine_tune_on: pd.DataFrame | None = None) -> Checkpoint:
    """The served version 1 as a checkpoint (weights from its ONNX), optionally fine-tuned."""
    weights = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(repo / AUTOENCODER / "1" / "model.onnx")).graph.initializer
    }
    model = build_autoencoder(ModelConfig())
    model.load_state_dict(
        {
            k.removeprefix("autoencoder."): torch.from_numpy(v.copy())
            for k, v in weights.items()
            if k.startswith("autoencoder.")
        }
    )
    normalizer = normalizer_from_encoder(repo / "dfp_encoder" / "1" / "model.onnx")
    if fine_tune_on is not None:
        fz = Featurizer(SPEC)
        batch = fz.transform(fine_tune_on)
        x = normalizer.transform(np.asarray(batch.tensor)[fz.labels(batch.frame) == 0])
        fit_autoencoder(model, x[:-500], x[-500:], TrainConfig(epochs=1, seed=3, threads=1))
    return Checkpoint(
        ModelConfig(),
        model.state_dict(),
        normalizer,
        SPEC.name,
        SPEC.spec_hash,
        {"run_id": "test-fine-tune", "rounds": 2, "dp": {"epsilon_spent": 3.0}},
    )


def untrained_checkpoint(repo: Path) -> Checkpoint:
    model = build_autoencoder(ModelConfig(), seed=123)
    return Checkpoint(
        ModelConfig(),
        model.state_dict(),
        normalizer_from_encoder(repo / "dfp_encoder" / "1" / "model.onnx"),
        SPEC.name,
        SPEC.spec_hash,
    )


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(COMMITTED, dst)
    return dst


@pytest.fixture(scope="module")
def site_data() -> dict[str, pd.DataFrame]:
    week = generate(SyntheticConfig(n_events=8000, seed=31, population_seed=0))
    return {"validation": week.iloc[:4000], "holdout": week.iloc[4000:]}


def _snapshot(root: Path) -> dict[str, str]:
    """What a server can see: every non-hidden file and its content (the lock file is hidden)."""
    from morpheus_ext.model_repository import sha256_file

    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_worse_candidate_is_refused_with_numbers_and_nothing_changes(
    repo: Path, site_data: dict[str, pd.DataFrame]
) -> None:
    before = _snapshot(repo)
    with pytest.raises(PublishRefused, match=r"candidate AUROC 0\.\d+ is worse than served 0\.\d+"):
        publish(
            untrained_checkpoint(repo), repo, SPEC, site_data["validation"], site_data["holdout"]
        )
    assert _snapshot(repo) == before
    # Normal-only gate: a candidate whose threshold was calibrated to a 10% false-positive rate
    # flags far more of the site's normal traffic than the served version (1%).
    val = site_data["validation"]
    normal = site_data["holdout"][site_data["holdout"]["label"] == 0]
    with pytest.raises(PublishRefused, match=r"FAILED: above the limit 0\.\d+"):
        publish(
            served_checkpoint(repo),
            repo,
            SPEC,
            val,
            normal,
            PublishConfig(gate="unlabelled", tolerance=0.01, target_fpr=0.1),
        )
    assert _snapshot(repo) == before


def attack_trained_checkpoint(repo: Path) -> Checkpoint:
    """A degraded candidate: the served architecture trained on attack rows only (what a
    window that learned an attack campaign as normal would produce, at its worst)."""
    attacks = generate(SyntheticConfig(n_events=20000, seed=5, population_seed=0, anomaly_rate=0.3))
    normalizer = normalizer_from_encoder(repo / "dfp_encoder" / "1" / "model.onnx")
    fz = Featurizer(SPEC)
    batch = fz.transform(attacks)
    x = normalizer.transform(np.asarray(batch.tensor)[fz.labels(batch.frame) == 1])
    model = build_autoencoder(ModelConfig(), seed=1)
    fit_autoencoder(model, x[:-200], x[-200:], TrainConfig(epochs=20, seed=3, threads=1))
    return Checkpoint(
        ModelConfig(), model.state_dict(), normalizer, SPEC.name, SPEC.spec_hash, {"run_id": "bad"}
    )


def test_degraded_candidate_is_refused_without_labels_and_a_good_one_passes(
    repo: Path, site_data: dict[str, pd.DataFrame]
) -> None:
    """Unlabelled validation data only: calibration and gate use different rows, and canary
    recall catches the candidate that lost detection (its false-positive rate looks fine)."""
    unlabelled = site_data["validation"]
    unlabelled = unlabelled[unlabelled["label"] == 0].drop(columns=["label", "anomaly_kind"])
    before = _snapshot(repo)
    with pytest.raises(PublishRefused) as refused:
        publish(attack_trained_checkpoint(repo), repo, SPEC, unlabelled)
    message = str(refused.value)
    assert "unlabelled gate" in message and "FAILED: fell by more than 0.05" in message
    assert re.search(r"canary recall 0\.\d+ vs served 0\.\d+", message)
    assert "false-positive rate on" in message and "rare_category" in message
    assert _snapshot(repo) == before

    result = publish(served_checkpoint(repo, site_data["holdout"]), repo, SPEC, unlabelled)
    gate = result.manifest["gate"]
    assert gate["gate"] == "unlabelled" and result.version == 2
    rows = gate["rows"]
    assert rows["calibration"] + rows["gate"] == len(unlabelled)  # disjoint halves
    assert result.manifest["calibration"]["n_samples"] == rows["calibration"]
    assert gate["canary_recall"]["candidate"] >= gate["canary_recall"]["served"] - 0.05
    assert gate["false_positive_rate"]["candidate"] <= gate["false_positive_rate"]["served"] + 0.01


def test_holdout_sharing_rows_with_validation_and_another_normalizer_are_refused(
    repo: Path, site_data: dict[str, pd.DataFrame]
) -> None:
    val = site_data["validation"]
    with pytest.raises(PublishRefused, match=r"holdout shares 4000 event id\(s\)"):
        publish(served_checkpoint(repo), repo, SPEC, val, val)
    good = served_checkpoint(repo)
    other = Normalizer(good.normalizer.center + 1.0, good.normalizer.scale, good.normalizer.clip)
    moved = Checkpoint(good.model_config, good.state_dict, other, SPEC.name, SPEC.spec_hash)
    with pytest.raises(PublishRefused, match=r"initial_model: \{repository: .*version: served\}"):
        publish(moved, repo, SPEC, val)


def test_tampered_file_wrong_shape_and_other_spec_are_refused(
    repo: Path, site_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    good = served_checkpoint(repo)
    # a different feature-spec hash
    other = Checkpoint(good.model_config, good.state_dict, good.normalizer, "x", "0123456789abcdef")
    with pytest.raises(PublishRefused, match="feature spec hash mismatch"):
        publish(other, repo, SPEC, site_data["validation"])
    # a wrong input shape (a model for 128 slots exported against the 256-slot config)
    from modelling.export import export_scored_autoencoder
    from modelling.models import ScoredAutoencoder

    small = ScoredAutoencoder(
        build_autoencoder(ModelConfig(), 128), [0] * 128, 16, np.zeros(16), np.ones(16), 1.0, 2
    )
    path = export_scored_autoencoder(
        small, 128, tmp_path / "narrow.onnx", {"feature_spec_hash": SPEC.spec_hash}
    )
    with pytest.raises(PublishRefused, match="candidate inputs"):
        _validate(path, small, SPEC, repo, np.zeros((4, 128), np.float32), 1e-5)
    # a tampered file: verify flags it and publishing refuses to touch the repository
    onnx_file = repo / AUTOENCODER / "1" / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-10] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    assert any("sha256 differs" in p for p in verify(repo))
    with pytest.raises(PublishRefused, match="fails verification"):
        publish(good, repo, SPEC, site_data["validation"])
    assert ModelRepository(repo).versions(AUTOENCODER) == [1]


def test_publisher_killed_midway_leaves_no_servable_version(
    repo: Path, site_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    ckpt = served_checkpoint(repo)
    save_checkpoint(
        run_dir / CHECKPOINT_DIR,
        ckpt.build(),
        ckpt.model_config,
        ckpt.normalizer,
        SPEC.name,
        SPEC.spec_hash,
    )
    validation = tmp_path / "validation.parquet"
    site_data["validation"].to_parquet(validation)
    for stage in ("exported", "manifest"):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "model",
                "publish",
                str(run_dir),
                "--repository",
                str(repo),
                "--validation",
                str(validation),
            ],
            env={**os.environ, PAUSE_ENV: stage},
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        assert proc.stdout is not None
        assert f"publish paused at {stage}" in proc.stdout.readline()
        assert list((repo / AUTOENCODER).glob(".staging-*"))  # half-written, hidden
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert ModelRepository(repo).versions(AUTOENCODER) == [1]
        assert not verify(repo)
    # The next publisher clears the debris and publishes normally.
    result = publish(ckpt, repo, SPEC, site_data["validation"], site_data["holdout"])
    assert result.version == 2 and not list((repo / AUTOENCODER).glob(".staging-*"))


@pytest.mark.integration
@pytest.mark.slow
def test_publish_under_load_then_rollback_on_a_real_triton(
    repo: Path, site_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    th = triton_harness()
    server = th.TritonServer(
        repo, tmp_path / "triton", model_control_mode="explicit", load_models=("dfp_ensemble",)
    ).start(timeout=120)
    control = TritonControl(server.http_address, "explicit", sync=server.derive)
    import tritonclient.grpc as grpcclient

    stop = threading.Event()
    seen: list[int] = []
    failures: list[str] = []
    tensor = np.asarray(Featurizer(SPEC).transform(site_data["holdout"].iloc[:64]).tensor)

    def steady_stream() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inp = grpcclient.InferInput("EVENT_TENSOR", list(tensor.shape), "FP32")
        inp.set_data_from_numpy(tensor)
        while not stop.is_set():
            try:
                out = client.infer("dfp_ensemble", [inp])
                seen.append(int(out.as_numpy("MODEL_VERSION")[0, 0]))
            except Exception as exc:  # every failed request is a test failure
                failures.append(str(exc))
            time.sleep(0.005)

    worker = threading.Thread(target=steady_stream)
    worker.start()
    try:
        time.sleep(1.0)
        candidate = served_checkpoint(repo)  # same weights, recalibrated on this site's data
        result = publish(
            candidate, repo, SPEC, site_data["validation"], site_data["holdout"], triton=control
        )
        assert result.version == 2 and result.manifest["parent_version"] == 1
        assert result.manifest["gate"]["gate"] == "holdout_auroc"
        time.sleep(1.0)
        assert served_version(repo) == 2 and control.probe_version() == 2
        start = time.monotonic()
        assert rollback(repo, triton=control) == 1
        assert time.monotonic() - start < 15
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
        server.stop()
    assert not failures, failures[:3]
    assert seen[0] == 1 and 2 in seen and seen[-1] == 1
    switch = seen.index(2)
    assert all(v == 1 for v in seen[:switch])  # records switch from n to n+1 once


def test_rollback_on_a_polling_triton_agrees_with_the_repository_or_restores_it(
    repo: Path, site_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    """Poll mode: the default control mode notices the server polls and waits for the poll;
    a control mode that cannot work leaves the repository as it was, not half-switched."""
    th = triton_harness()
    server = th.TritonServer(repo, tmp_path / "triton", model_control_mode="poll", poll_secs=1)
    server.start(timeout=120)
    try:
        control = TritonControl(server.http_address, sync=server.derive)
        assert control.mode == "auto"
        publish(served_checkpoint(repo), repo, SPEC, site_data["validation"], triton=control)
        assert control.mode == "poll"  # it found out from the server's answer
        assert served_version(repo) == 2 and control.probe_version() == 2
        assert rollback(repo, triton=control) == 1
        assert served_version(repo) == 1 and control.probe_version() == 1

        forced = TritonControl(server.http_address, "explicit", sync=server.derive)
        with pytest.raises(PublishRefused, match=r"config\.pbtxt restored") as refused:
            rollback(repo, 2, triton=forced)
        assert "use --control-mode poll" in str(refused.value)
        assert served_version(repo) == 1
        time.sleep(3)  # two poll periods: the server has seen the restored config
        assert control.probe_version() == 1
    finally:
        server.stop()


def test_inprocess_engine_follows_publish_rollback_and_pin_under_a_steady_stream(
    repo: Path, site_data: dict[str, pd.DataFrame]
) -> None:
    """The in-process engine switches at a batch boundary: every batch of a steady stream is
    scored, in full, by exactly one version, and the versions follow the repository."""
    from morpheus_ext.pipeline import ScoringPipeline
    from morpheus_ext.stages.inference.inprocess import InProcessEngine
    from morpheus_ext.stages.input.sources import Origin, RawBatch

    engine = InProcessEngine(repo, SPEC.spec_hash, follow=True, follow_interval_s=0.05)
    pipeline = ScoringPipeline(Featurizer(SPEC), engine)
    lines = site_data["holdout"].iloc[:64].to_json(orient="records", lines=True).splitlines()
    events = RawBatch([line.encode() for line in lines], [Origin("t", 0, i) for i in range(64)])
    stop = threading.Event()
    batches: list[list[int]] = []
    failures: list[str] = []

    def steady_stream() -> None:
        while not stop.is_set():
            try:
                result = pipeline.process(events)
                batches.append([int(r["model"]["version"]) for r in result.records])
            except Exception as exc:  # every failed batch is a test failure
                failures.append(repr(exc))
            time.sleep(0.005)

    worker = threading.Thread(target=steady_stream)
    worker.start()
    try:
        time.sleep(0.5)
        publish(served_checkpoint(repo), repo, SPEC, site_data["validation"])
        time.sleep(0.5)
        assert rollback(repo) == 1  # pins version 1
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not failures, failures[:3]
    assert all(len(b) == 64 and len(set(b)) == 1 for b in batches)  # whole batches, all scored
    versions = [b[0] for b in batches]
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [1, 2, 1]  # switched once to the new version, once back
    assert engine.version == 1


def test_verify_reports_an_unreadable_model_file_instead_of_crashing(tmp_path: Path) -> None:
    """A model.onnx overwritten with garbage is two findings (hash, unreadable), not a crash."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "triton_model_repository", repo)
    assert verify(repo) == []
    (repo / AUTOENCODER / "1" / "model.onnx").write_bytes(b"\x08\x07 not a protobuf \xff" * 50)
    problems = verify(repo)
    assert any("sha256 differs" in p for p in problems), problems
    assert any("not a readable ONNX model" in p for p in problems), problems
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "model", "verify", "--repository", str(repo)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "internal error" not in out.stderr and "not a readable ONNX model" in out.stdout


@pytest.mark.parametrize(
    ("damage", "finding"),
    [
        ("truncate", "not a readable ONNX model"),
        ("delete", "model.onnx: missing"),
        ("flip", "sha256 differs from the manifest"),
    ],
)
def test_verify_finds_truncated_missing_and_altered_files_with_a_nonzero_exit(
    tmp_path: Path, damage: str, finding: str
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "triton_model_repository", repo)
    target = repo / "dfp_encoder" / "1" / "model.onnx"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "model", "verify", "--repository", str(repo)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert finding in out.stdout and "Traceback" not in out.stderr + out.stdout
    assert out.stderr.strip().splitlines()[-1].startswith("secureai: error: ")
