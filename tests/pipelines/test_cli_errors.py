"""Every ``secureai`` subcommand given a bad argument: one line on stderr naming what is wrong,
no traceback, exit 2 (a usage mistake), and the answer comes before the heavy stacks load
(torch, Flower: seconds of imports for a typo). Import laziness is checked in the process
itself rather than by timing it (speed is measured in benchmarks/, not asserted in tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys
from pipelines.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "flwr", "opacus") if m in sys.modules)
print(f"@@ {code} {','.join(heavy) or '-'}")
"""

CASES: list[tuple[str, str]] = [
    ("demo --config missing.yml", "config file not found: missing.yml"),
    ("train --config missing.yml", "config file not found: missing.yml"),
    ("train --data nope.csv --spec nsl_kdd", "data.train.path: no such file nope.csv"),
    ("train --data x.csv", "give --config FILE, or --data FILE with --spec SPEC"),
    ("train --config missing.yml --set oops", "config file not found"),
    ("evaluate", "give --run-dir DIR, or --data PATH with --spec SPEC"),
    ("evaluate --run-dir nope", "run directory not found: nope"),
    ("score --events nope.jsonl", "events file not found: nope.jsonl"),
    ("score --events x --batch-size 0", "--batch-size: must be at least 1 (got 0)"),
    ("generate --out x.jsonl --events -5", "--events: must be at least 1 (got -5)"),
    ("run --config missing.yml", "config file not found: missing.yml"),
    ("produce --file nope.jsonl --bootstrap-servers x:1", "events file not found: nope.jsonl"),
    ("tail --config missing.yml", "config file not found: missing.yml"),
    ("correlate --config missing.yml", "config file not found: missing.yml"),
    ("fl simulate --config missing.yml", "config file not found: missing.yml"),
    ("fl deploy --config missing.yml", "config file not found: missing.yml"),
    ("fl compare --config missing.yml", "config file not found: missing.yml"),
    ("fl ledger nope", "no ledger at nope"),
    ("fl audit --run-dir nope", "run directory not found: nope"),
    ("fl audit --run-dir .", ". is not a finished federated run (no config.yaml)"),
    ("fl audit --run-dir . --reference-models -1", "--reference-models: must be at least 0"),
    ("model list --repository nope", "no dfp_autoencoder/config.pbtxt in nope"),
    ("model publish nope --validation x.csv", "run directory not found: nope"),
    ("model rollback --repository nope", "--repository nope: not a model repository"),
    ("model verify --repository nope", "--repository nope: not a model repository"),
    ("serve-api --config missing.yml", "config file not found: missing.yml"),
    ("sidecar --config missing.yml", "config file not found: missing.yml"),
    ("coordinator --config missing.yml", "config file not found: missing.yml"),
    ("spec nope", "feature spec not found: nope"),
    ("spec draft nope.csv", "data file not found: nope.csv"),
    ("nope", "invalid choice: 'nope'"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_exit_2_before_heavy_imports(
    argv: str, message: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv.split()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # nothing of the repository's own files by accident
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    code, heavy = proc.stdout.strip().splitlines()[-1].split()[1:]
    lines = proc.stderr.strip().splitlines()
    assert code == "2", (argv, proc.stderr)
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert heavy == "-", f"{argv}: imported {heavy} before answering"
