"""`secureai score --leakage`: the file runner with the leakage detector masks planted secrets."""

from __future__ import annotations

from pathlib import Path

from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from pipelines.cli import main
from synthetic import SyntheticConfig, generate, write_events
from synthetic.attacks_leakage import planted_secrets


def test_secureai_score_with_leakage_masks_the_file(tmp_path: Path) -> None:
    stream = generate(
        SyntheticConfig(n_events=800, anomaly_rate=0.06, seed=12, anomaly_kinds=["leakage"])
    )
    events = write_events(stream, tmp_path / "events.jsonl")
    out = tmp_path / "scores.jsonl"
    argv = ["score", "--events", str(events), "--out", str(out), "--no-progress"]
    argv += ["--model-repository", str(DEFAULT_REPOSITORY), "--leakage"]
    assert main(argv) == 0
    text = out.read_bytes()
    planted = planted_secrets(stream)
    assert planted and b'"is_leak":true' in text
    assert not any(s.encode() in text for s in planted)
