"""`secureai score --leakage | --incidents`: the file runner with the triage stages."""

from __future__ import annotations

from pathlib import Path

import orjson

from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.stages.postprocess.incidents import latest_revisions
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


def test_secureai_score_with_incidents_writes_their_revisions(tmp_path: Path) -> None:
    stream = generate(SyntheticConfig(n_events=3000, anomaly_rate=0.05, seed=13))
    events = write_events(stream, tmp_path / "events.jsonl")
    out = tmp_path / "scores.jsonl"
    argv = ["score", "--events", str(events), "--out", str(out), "--no-progress"]
    argv += ["--model-repository", str(DEFAULT_REPOSITORY), "--incidents", "--site", "hq"]
    assert main(argv) == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    flagged = {r["event_id"] for r in records if r["is_anomaly"]}
    log = [orjson.loads(x) for x in (tmp_path / "scores.incidents.jsonl").open("rb")]
    latest = latest_revisions(log)
    assert {e for r in latest.values() for e in r["event_ids"]} == flagged
    assert 0 < len(latest) < len(flagged) and {r["site"] for r in latest.values()} == {"hq"}
