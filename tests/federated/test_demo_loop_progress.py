"""The loop demo's view of a finished run: a site whose gate refused the candidate is settled
(the demo stops waiting for it to switch; ``tests/federated/test_loop_e2e.py`` then checks
the refusal is the gate's)."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.loop.demo_loop import RunProgress


def test_a_site_whose_gate_refused_is_known_once_the_run_ended(tmp_path: Path) -> None:
    (tmp_path / "runs" / "loop_fed-1").mkdir(parents=True)
    (tmp_path / "runs" / "loop_fed-1" / "config.yaml").write_text("name: loop_fed\n")
    lines: list[str] = []
    progress = RunProgress(tmp_path, rounds=5, log=lines.append)
    progress.poll()
    assert progress.refused == set() and not progress.ended  # running: nothing known yet
    outcomes = {
        "site-0": {"outcome": "refused: candidate refused by the unlabelled gate: canary ..."},
        "site-1": {"outcome": "published version 2 (unlabelled)"},
    }
    run = {"status": "completed", "seconds": 88.0, "site_publish": outcomes}
    (tmp_path / "coordinator.json").write_text(json.dumps({"runs": [run]}))
    progress.next_at = 0.0  # (polls at most once a second)
    progress.poll()
    assert progress.ended and progress.refused == {"site-0"}
    assert "site-1: published version 2 (unlabelled)" in lines
