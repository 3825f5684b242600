"""The in-process pipeline on files: bad input never crashes it and never disappears."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest

from modelling.centralized import TrainResult
from morpheus_ext.stages.postprocess.records import score_record_schema
from pipelines.cli import main
from synthetic import SyntheticConfig, generate

BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"event_id": "bad-1", "event_type": "auth"', "invalid JSON"),
    (b'["not", "an", "object"]', "expected a JSON object"),
    (
        b'{"event_id": "bad-3", "event_type": "netflow", "bytes_out": "huge", '
        b'"timestamp": "2026-11-08T01:00:00Z"}',
        "field 'bytes_out': expected a number",
    ),
    (
        b'{"event_id": "bad-4", "timestamp": "2026-11-08T01:00:00Z"}',
        "missing required field 'event_type'",
    ),
    (b'{"event_id": "bad-5", "event_type": "auth", "timestamp": "\xff\xfe"}', "invalid UTF-8"),
    (b'{"event_id": "bad-6", "event_type": "auth", "timestamp": "soon"}', "cannot parse"),
    (
        b'{"event_id": "bad-7", "event_type": "auth", "timestamp": "2026-11-08T01:00:00Z", '
        b'"country": ["US", "FR"]}',
        "expected a scalar",
    ),
    (b"null", "expected a JSON object"),
]


@pytest.fixture()
def mixed_file(tmp_path: Path) -> tuple[Path, int]:
    good = generate(SyntheticConfig(n_events=3000, seed=5))
    lines = [
        orjson.dumps({k: v for k, v in r.items() if v == v and v is not None})
        for r in good.to_dict(orient="records")
    ]
    for i, (bad, _) in enumerate(BAD_LINES):
        lines.insert(100 + i * 300, bad)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(good)


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_lines_go_to_rejects_and_every_good_line_is_scored(
    tiny_run: TrainResult,
    mixed_file: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events, n_good = mixed_file
    out = tmp_path / "scores.jsonl"
    code = main(
        [
            "score",
            "--events",
            str(events),
            "--model-repository",
            str(tiny_run.repository),
            "--out",
            str(out),
            "--batch-size",
            "512",
            "--no-progress",
        ]
    )
    assert code == 0
    scores = _read(out)
    rejects = _read(tmp_path / "scores.rejects.jsonl")
    assert len(scores) == n_good and len(rejects) == len(BAD_LINES)
    assert len(scores) + len(rejects) == n_good + len(BAD_LINES)
    assert len({s["event_id"] for s in scores}) == n_good
    for reject, (raw, reason) in zip(
        sorted(rejects, key=lambda r: r["offset"]), BAD_LINES, strict=True
    ):
        assert reason in reject["reason"]
        assert reject["source"] == str(events) and reject["offset"] >= 1
        kept = reject.get("raw", "").encode() if "raw" in reject else None
        assert kept == raw or "raw_b64" in reject
    assert "scored" in capsys.readouterr().out


def test_score_records_follow_the_schema(
    tiny_run: TrainResult, mixed_file: tuple[Path, int], tmp_path: Path
) -> None:
    events, _ = mixed_file
    out = tmp_path / "s.jsonl"
    assert (
        main(
            [
                "score",
                "--events",
                str(events),
                "--model-repository",
                str(tiny_run.repository),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    validator = jsonschema.Draft202012Validator(score_record_schema())  # checked once
    records = _read(out)
    for record in records[:500]:
        validator.validate(record)
    top = records[0]["reasons"]
    assert isinstance(top, list) and len(top) == 5 and all(r["field"] != "" for r in top)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "--events", "nope.jsonl"], "events file not found: nope.jsonl"),
        (["score", "--events", "README.md", "--spec", "nope"], "feature spec not found"),
        (["train", "--config", "missing.yml"], "config file not found"),
        (["evaluate"], "give --run-dir DIR, or --data PATH with --spec SPEC"),
        (["generate", "--out", "x.jsonl", "--events", "-5"], "--events: must be at least 1"),
        (["score", "--events", "x", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["score", "--events", "x", "--batch-size", "many"], "expected an integer, got 'many'"),
        (["train"], "give --config FILE, or --data FILE with --spec SPEC"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, lines


def test_cli_version_yaml_position_and_broken_pipe(tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("secureai "), version
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nseed: [1, 2\n")
    proc = cli("train", "--config", str(bad))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{bad}: line 3, column 1: not valid YAML" in proc.stderr, proc.stderr
    # a reader that went away (`| head`): our end of the pipe is closed before the command
    # writes, so every write fails; no traceback, no error line, SIGPIPE's exit code
    piped = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "spec", "security_events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert piped.stdout is not None and piped.stderr is not None
    piped.stdout.close()
    stderr = piped.stderr.read().decode()
    assert piped.wait(timeout=120) == 141 and stderr == "", stderr


def test_pydantic_errors_from_arguments_name_the_field() -> None:
    """A model built from a command's arguments and refused by pydantic is the user's mistake:
    one line naming the field and the value, exit 2 (not an internal error)."""
    import argparse
    import contextlib
    import io

    from pipelines.cli_base import run_cli
    from synthetic import SyntheticConfig

    parser = argparse.ArgumentParser(prog="secureai")
    parser.add_argument("--debug", action="store_true")
    parser.set_defaults(func=lambda args: SyntheticConfig(n_events=-5) and 0)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = run_cli(parser, [])
    line = err.getvalue().strip()
    assert code == 2 and "\n" not in line, line
    assert "SyntheticConfig: n_events: Input should be greater than" in line and "-5" in line


def test_wrong_model_repository_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "score",
            "--events",
            "README.md",
            "--model-repository",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"secureai: error: no versions of dfp_encoder in {tmp_path}"
    ]


def test_evaluate_on_a_labelled_file_and_on_a_run(
    tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from synthetic import write_events

    data = write_events(generate(SyntheticConfig(n_events=4000, seed=8)), tmp_path / "t.parquet")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--spec",
                "security_events",
                "--model-repository",
                str(tiny_run.repository),
                "--out",
                str(out),
                "--no-baselines",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["auroc"] <= 1.0 and set(metrics["tpr_at_fpr"]) == {"0.01", "0.001"}
    assert set(metrics["per_kind_recall"]) <= {
        "brute_force",
        "impossible_travel",
        "unusual_hour",
        "new_device",
        "exfiltration",
        "port_scan",
    }
    for name in ("report.html", "roc.png", "pr.png", "score_hist.png"):
        assert (out / name).stat().st_size > 0
    assert main(["evaluate", "--run-dir", str(tiny_run.run_dir), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "baseline isolation_forest" in text and "AUROC" in text


def test_a_training_run_records_what_reproduces_it(tiny_run: TrainResult) -> None:
    run = json.loads((tiny_run.run_dir / "run.json").read_text())
    assert run["seeds"] == {"global": 0, "train": 0}
    assert {"torch", "onnxruntime", "numpy"} <= set(run["environment"]["packages"])
    assert run["data"]["train"]["synthetic"]["n_events"] == 6000
    assert run["feature_spec"]["hash"] == tiny_run.spec.spec_hash
    assert run["metrics"]["onnx_parity_max_abs_diff"] <= 1e-5 and run["history"]
    assert (tiny_run.run_dir / "config.yaml").read_text().startswith("name: tiny-mlp")


def test_parquet_from_generate_scores_like_its_jsonl(tiny_run: TrainResult, tmp_path: Path) -> None:
    """`secureai generate --out x.parquet` then `secureai score --events x.parquet`: every row
    scored, the same records as the same events in JSON Lines (once every row was rejected
    as "invalid UTF-8")."""
    for suffix in ("parquet", "jsonl"):
        assert main(["generate", "--out", str(tmp_path / f"e.{suffix}"), "--events", "1500"]) == 0
        code = main(
            [
                "score",
                "--events",
                str(tmp_path / f"e.{suffix}"),
                "--model-repository",
                str(tiny_run.repository),
                "--out",
                str(tmp_path / f"s-{suffix}.jsonl"),
                "--batch-size",
                "400",
                "--no-progress",
            ]
        )
        assert code == 0
        assert (tmp_path / f"s-{suffix}.rejects.jsonl").read_text() == ""
    from_parquet = {r["event_id"]: r for r in _read(tmp_path / "s-parquet.jsonl")}
    from_jsonl = {r["event_id"]: r for r in _read(tmp_path / "s-jsonl.jsonl")}
    assert len(from_parquet) == 1500 and from_parquet.keys() == from_jsonl.keys()
    for event_id, record in from_jsonl.items():
        assert from_parquet[event_id]["anomaly_score"] == pytest.approx(record["anomaly_score"])


def test_a_demo_directory_composes_and_baselines_match_training(
    tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`secureai demo` keeps its training run under train/: evaluate and model publish take the
    demo's directory itself. The IsolationForest baseline that `evaluate --run-dir` reports is
    the one training reported (fitted on the same rows), not a refit on other rows."""
    import shutil

    from modelling.evaluation.evaluate import evaluate, score_frame
    from morpheus_ext.stages.inference.inprocess import InProcessEngine
    from morpheus_ext.stages.preprocess.featurizer import Featurizer
    from synthetic import write_events

    demo = tmp_path / "demo-20261205-120000"
    shutil.copytree(tiny_run.run_dir, demo / "train")
    data = write_events(generate(SyntheticConfig(n_events=3000, seed=9)), tmp_path / "t.parquet")
    # what training's own evaluation reports (cmd_train: the run's training rows)
    from morpheus_ext.io import read_frame

    engine = InProcessEngine(tiny_run.repository, tiny_run.spec.spec_hash)
    scored = score_frame(engine, Featurizer(tiny_run.spec), read_frame(data, tiny_run.spec))
    at_train = evaluate(scored, tmp_path / "at-train", "t", tiny_run.train_normalized, True, 0)
    assert main(["evaluate", "--run-dir", str(demo), "--data", str(data)]) == 0
    at_eval = json.loads((demo / "train" / "evaluation" / "metrics.json").read_text())
    forest = {b["name"]: b["auroc"] for b in at_train["baselines"]}["isolation_forest"]
    again = {b["name"]: b["auroc"] for b in at_eval["baselines"]}["isolation_forest"]
    assert again == pytest.approx(forest, abs=1e-9), (forest, again)

    repository = tmp_path / "repository"
    shutil.copytree(tiny_run.repository, repository)
    code = main(
        [
            "model", "publish", str(demo), "--validation", str(data),
            "--repository", str(repository),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (repository / "dfp_autoencoder" / "2").is_dir()
