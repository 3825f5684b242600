"""benchmarks/bench_peers.py end to end on a small slice (issue #20's side-by-side): one run
gives SecureAI, IsolationForest and River HalfSpaceTrees on the same events, with events/s and
AUROC in one table. Speed is not asserted (benchmarks measure it); the table's shape and the
detection ranking are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow


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
