"""Benchmark scripts of issue #20 end to end on small slices: bench_peers (SecureAI,
IsolationForest and River HalfSpaceTrees on the same events, events/s and AUROC in one table),
bench_stages (CPU per event by stage) and bench_incident_cost (the incidents stage in one
process). Speed is never asserted (benchmarks measure it); the tables' shape, the detection
ranking and the stage accounting are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow

STAGES = ("decode", "featurize", "infer", "baselines", "records", "json lines")
"""bench_stages.py's columns (a script beside benchmarks/report.py, not an importable module)."""


def test_bench_peers_puts_secureai_and_both_peers_in_one_table(tmp_path: Path) -> None:
    out, doc = tmp_path / "peers.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_peers.py"), "--limit", "4000",
         "--repeats", "1", "--json", str(out), "--out", str(doc)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    names = [r["detector"].split(" (")[0] for r in rows]
    assert names == ["SecureAI", "scikit-learn IsolationForest", "River HalfSpaceTrees"]
    ours, *peers = rows
    assert ours["scored"] == 4000 and all(r["events_per_s"] > 0 for r in rows)
    assert all(ours["auroc"] > p["auroc"] + 0.1 for p in peers), rows  # detection, not speed
    assert rows[2]["x_river"] == pytest.approx(1.0)
    table = doc.read_text()
    assert "<!-- bench_peers:begin -->" in table and "| x River |" in table


def test_bench_stages_charges_every_stage_and_baselines_only_when_on(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_stages.py"), "--events", "4096",
         "--batch", "1024", "--repeats", "1", "--out", str(doc)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln for ln in doc.read_text().splitlines() if ln.startswith(("| spine", "| with"))]
    assert len(rows) == 2
    spine, with_baselines = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    assert len(spine) == len(STAGES) + 3
    assert spine[1 + STAGES.index("baselines")] == "-"  # off: charged nothing
    assert float(with_baselines[1 + STAGES.index("baselines")]) > 0
    for row in (spine, with_baselines):
        stages = [float(c) for c in row[1 : 1 + len(STAGES)] if c != "-"]
        assert float(row[-2]) == pytest.approx(sum(stages), abs=0.02)


def test_bench_incident_cost_times_both_variants_and_the_collector(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_incident_cost.py"), "--events",
         "8192", "--pairs", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    runs = {ln.split(":")[0]: ln for ln in lines if ln.startswith(("off:", "incidents:"))}
    assert set(runs) == {"off", "incidents"}
    for line in runs.values():  # "<variant>: <cpu> µs/event CPU, of it <gc> in cyclic GC"
        cpu, gc_us = float(line.split()[1]), float(line.split()[-4])
        assert cpu > 0 and 0 <= gc_us < cpu
    assert lines[-1].startswith("median: off ")
