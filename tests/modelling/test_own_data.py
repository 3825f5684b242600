"""Bringing your own data: the traps a model engineer met with public labelled CSVs are refused
at once, in one line, before any training (issue "Bring your own data")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelling import centralized
from modelling.config import CentralizedConfig
from morpheus_ext.feature_spec import SPECS_DIR, SpecError, load_spec
from morpheus_ext.io import LabelError, read_frame

from ..conftest import SHARED_DATA

NSL = SHARED_DATA / "nsl-kdd"
SPEC = load_spec("nsl_kdd")
needs_nsl = pytest.mark.skipif(
    not NSL.is_dir(), reason="needs ../shared/data/nsl-kdd (the shared data folder)"
)


@pytest.fixture()
def header_csv(tmp_path: Path) -> Path:
    """500 NSL-KDD rows written *with* their field names as a header row."""
    frame = read_frame(NSL / "KDDTrain+_20Percent.txt", SPEC).head(500)
    path = tmp_path / "kdd_with_header.csv"
    frame.to_csv(path, index=False)
    return path


@needs_nsl
def test_a_header_row_is_not_read_as_data(header_csv: Path) -> None:
    frame = read_frame(header_csv, SPEC)  # the spec lists `columns` and uses "*"
    assert len(frame) == 500 and frame["duration"].dtype.kind in "iuf", frame.dtypes["duration"]
    assert "duration" not in set(frame["duration"].astype(str))
    headerless = read_frame(NSL / "KDDTest+.txt", SPEC)
    assert headerless["duration"].dtype.kind in "iuf" and len(headerless) == 22544


def _config(tmp_path: Path, train: Path, test: Path | None, spec: str) -> CentralizedConfig:
    data = {"spec": spec, "train": {"path": str(train)}}
    if test is not None:
        data["test"] = {"path": str(test)}
    return CentralizedConfig.model_validate(
        {
            "name": "own",
            "data": data,
            "train": {"epochs": 1},
            "runs_dir": str(tmp_path / "runs"),
        }
    )


def _spec_with_label(tmp_path: Path, column: str, normal: list[str]) -> str:
    doc = yaml.safe_load((SPECS_DIR / "nsl_kdd.yml").read_text())
    doc["label"] = {"column": column, "normal": normal}
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@needs_nsl
def test_wrong_or_constant_labels_fail_before_training(
    header_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(centralized, "fit_autoencoder", no_training)
    # a label column the file does not have
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(header_csv).rename(columns={"label": "attack"}).to_csv(renamed, index=False)
    spec = _spec_with_label(tmp_path, "class", ["normal"])
    with pytest.raises(LabelError, match="no label column 'class'"):
        centralized.train_centralized(_config(tmp_path, renamed, None, spec))
    # the right column, but `normal` names no value of it: every row would be an anomaly
    spec = _spec_with_label(tmp_path, "label", ["benign"])
    with pytest.raises(LabelError, match="no row of label column 'label' is normal"):
        centralized.train_centralized(_config(tmp_path, header_csv, None, spec))
    # a test file of one class cannot be evaluated
    normal_only = tmp_path / "normal_only.csv"
    frame = pd.read_csv(header_csv)
    frame[frame["label"] == "normal"].to_csv(normal_only, index=False)
    spec = _spec_with_label(tmp_path, "label", ["normal"])
    with pytest.raises(LabelError, match="every row of label column 'label' is normal"):
        centralized.train_centralized(_config(tmp_path, header_csv, normal_only, spec))
    assert not (tmp_path / "runs").exists()  # nothing left behind


@needs_nsl
def test_a_run_that_fails_after_it_started_says_so_in_its_directory(
    header_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_training(*args: object, **kwargs: object) -> None:  # a named fake failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(centralized, "fit_autoencoder", broken_training)
    spec = _spec_with_label(tmp_path, "label", ["normal"])
    with pytest.raises(RuntimeError, match="disk full"):
        centralized.train_centralized(_config(tmp_path, header_csv, None, spec))
    (run_dir,) = (tmp_path / "runs").iterdir()
    failed = yaml.safe_load((run_dir / "failed.json").read_text())
    assert failed["status"] == "failed" and "disk full" in failed["error"]
    assert (run_dir / "config.yaml").is_file()


def _write_spec(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "s.yml"
    path.write_text(yaml.safe_dump({"name": "s", "version": 1, **doc}))
    return path


def test_spec_mistakes_are_named_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no features"):
        load_spec(_write_spec(tmp_path, {"columns": ["a", "label"], "label": {"column": "label"}}))
    with pytest.raises(SpecError, match="set `tensor_width: 320`"):
        load_spec(_write_spec(tmp_path, {"numeric": [f"x{i}" for i in range(300)]}))
    wide = load_spec(
        _write_spec(tmp_path, {"numeric": [f"x{i}" for i in range(300)], "tensor_width": 320})
    )
    assert wide.layout.width == 320 and wide.layout.used_width == 300
    with pytest.raises(SpecError, match="'label' is the label column and cannot also be a feature"):
        load_spec(_write_spec(tmp_path, {"numeric": ["a", "label"], "label": {"column": "label"}}))
    with pytest.raises(SpecError, match="secureai spec draft"):
        load_spec(_write_spec(tmp_path, {"numeric": ["*"]}))
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\nversion: 1\nnumeric: [a, b\n")
    with pytest.raises(SpecError, match="line 4, column 1: not valid YAML"):
        load_spec(broken)


SHIPPED_NSL_KDD_AUROC = 0.9711
"""`secureai train --config configs/nsl_kdd.yml` (docs/results.md, NSL-KDD table)."""


@pytest.mark.slow
@needs_nsl
def test_a_public_csv_goes_from_draft_to_evaluation_without_a_hand_written_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NSL-KDD as a newcomer would get it: CSV files with a header and the label column named
    `class`. `spec draft` -> `train --data --spec --test` (the shipped config's network and
    patience via --set) reaches the shipped config's AUROC within 0.005."""
    import json

    from pipelines.cli import main

    for src, dst in (("KDDTrain+_20Percent.txt", "train.csv"), ("KDDTest+.txt", "test.csv")):
        frame = read_frame(NSL / src, SPEC).rename(columns={"label": "class"})
        frame.to_csv(tmp_path / dst, index=False)
    spec = tmp_path / "kdd.yml"
    assert (
        main(["spec", "draft", str(tmp_path / "train.csv"), "--exclude", "difficulty",
              "--out", str(spec)])
        == 0
    )  # fmt: skip
    drafted = load_spec(spec)
    assert drafted.label_column == "class" and "difficulty" in drafted.exclude
    assert {f.name for f in drafted.layout.fields} >= {"service", "flag", "src_bytes"}
    assert "class" not in {f.name for f in drafted.layout.fields}
    code = main(
        [
            "train", "--data", str(tmp_path / "train.csv"), "--spec", str(spec),
            "--test", str(tmp_path / "test.csv"), "--set", "model.hidden=[256,64]",
            "--set", "train.patience=6", "--set", f"runs_dir={tmp_path / 'runs'}",
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert metrics["auroc"] == pytest.approx(SHIPPED_NSL_KDD_AUROC, abs=0.005), metrics["auroc"]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["model"]["hidden"] == [256, 64] and resolved["data"]["spec"] == str(spec)
    assert "AUROC" in capsys.readouterr().out


@needs_nsl
def test_input_paths_in_a_config_are_read_beside_it(
    header_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import shutil

    from pipelines.cli import train_config

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(header_csv, project / "data.csv")
    (project / "kdd.yml").write_text((SPECS_DIR / "nsl_kdd.yml").read_text())
    (project / "train.yml").write_text(
        "name: mine\ndata: {spec: kdd.yml, train: {path: data.csv}}\n"
    )
    monkeypatch.chdir(tmp_path)  # somewhere else
    args = argparse.Namespace(
        config=str(project / "train.yml"), data=None, test=None, spec=None, name=None, set=None
    )
    config = train_config(args)
    assert config.data.train.path == project / "data.csv"
    assert config.data.spec == str(project / "kdd.yml")
    args.set = ["train.epochs=3", "model.hidden=[64,16]"]
    assert train_config(args).train.epochs == 3 and train_config(args).model.hidden == [64, 16]


@needs_nsl
def test_every_long_step_of_train_and_evaluate_says_when_it_finished(
    header_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Epochs, calibration, export, the parity check, scoring, baselines and the report each
    print a line on stderr (not a TTY here: one line each); `--no-progress` prints none."""
    from pipelines.cli import main

    spec = _spec_with_label(tmp_path, "label", ["normal"])
    args = ["train", "--data", str(header_csv), "--spec", spec, "--test", str(header_csv),
            "--set", "train.epochs=2", "--set", "train.patience=2",
            "--set", f"runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    for line in (
        "train: epoch 1/2",
        "train: epoch 2/2",
        "train: 2 epochs in",
        "train: calibrated the threshold",
        "train: exported version 1 to ONNX",
        "train: checked ONNX Runtime against PyTorch",
        "evaluate: scored 500 test rows",
        "evaluate: fitted and scored the baselines",
        "evaluate: wrote the report",
    ):
        assert line in err, f"{line!r} missing from:\n{err}"
    assert main([*args, "--no-progress"]) == 0
    quiet = capsys.readouterr().err
    assert "train:" not in quiet and "evaluate:" not in quiet, quiet
