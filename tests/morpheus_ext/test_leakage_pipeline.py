"""A stream with planted secrets through the file pipeline: every planted event is reported
with its type and field, records validate, and no secret appears in any output: score
records, dead letters, or log lines at DEBUG."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import jsonschema
import orjson
import pandas as pd
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.pipeline import ScoringPipeline, run_batches
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import Origin, RawBatch, file_source
from morpheus_ext.stages.output.files import JsonlSink
from morpheus_ext.stages.postprocess.incidents import (
    IncidentConfig,
    IncidentTracker,
    latest_revisions,
)
from morpheus_ext.stages.postprocess.leakage import LeakageConfig, LeakageDetector
from morpheus_ext.stages.postprocess.records import ScoreRecords, score_record_schema
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate, write_events
from synthetic.attacks_leakage import LEAK_TYPES, planted_secrets

SPEC = load_spec("security_events")
ENGINE = InProcessEngine(DEFAULT_REPOSITORY, SPEC.spec_hash)
PEM = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
BAD_SECRETS = ["AKIAJ7Q3EXAMPLEKEY12", PEM, "Bad7PassWord!", "4539 1488 0343 6467"]
BAD_LINES = [
    # not JSON: a decode dead letter
    b'{"event_id": "bad-1", "event_type": "auth", "message": "key AKIAJ7Q3EXAMPLEKEY12"',
    # a featurize dead letter (timestamp) with a JSON-escaped PEM block and a URL password
    b'{"event_id": "bad-2", "event_type": "auth", "timestamp": "soon", "message": '
    b'"-----BEGIN RSA PRIVATE KEY-----\\n' + PEM.encode() + b'\\n-----END RSA PRIVATE KEY-----",'
    b' "url": "/login?password=Bad7PassWord!"}',
    # not UTF-8, a card inside
    b'{"event_id": "bad-3", "message": "\xff card 4539 1488 0343 6467"}',
]


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    return generate(
        SyntheticConfig(n_events=3000, anomaly_rate=0.06, seed=11, anomaly_kinds=["leakage"])
    )


def _run(stream: pd.DataFrame, tmp: Path, leakage: bool) -> tuple[list[dict], list[dict]]:
    events = write_events(stream, tmp / "events.jsonl")
    with events.open("ab") as fh:
        fh.write(b"\n".join(BAD_LINES) + b"\n")
    detector = LeakageDetector(LeakageConfig(enabled=True)) if leakage else None
    tracker = IncidentTracker(IncidentConfig(enabled=True, site="s")) if leakage else None
    pipeline = ScoringPipeline(Featurizer(SPEC), ENGINE, leakage=detector, incidents=tracker)
    with (
        JsonlSink(tmp / "scores.jsonl") as scores,
        JsonlSink(tmp / "dead.jsonl") as dead,
        JsonlSink(tmp / "incidents.jsonl") as incidents,
    ):
        run_batches(
            pipeline,
            file_source(events, 512),
            scores.write,
            dead.write,
            on_result=lambda result: incidents.write(result.incidents),
            progress=False,
        )
        if tracker is not None:
            incidents.write(tracker.close_all())
    read = [orjson.loads(x) for x in (tmp / "scores.jsonl").read_bytes().splitlines()]
    return read, [orjson.loads(x) for x in (tmp / "dead.jsonl").read_bytes().splitlines()]


def test_planted_secrets_are_reported_and_appear_nowhere(
    stream: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = planted_secrets(stream)
    assert len(secrets) == 180 and all(len(s) >= 9 for s in secrets)
    with caplog.at_level(logging.DEBUG):
        records, dead = _run(stream, tmp_path, leakage=True)
    outputs = [
        (tmp_path / "scores.jsonl").read_bytes(),
        (tmp_path / "dead.jsonl").read_bytes(),
        (tmp_path / "incidents.jsonl").read_bytes(),
        caplog.text.encode(),
        json.dumps([r.getMessage() for r in caplog.records]).encode(),
    ]
    assert "leakage:" in caplog.text  # the stage logged (counts, types)
    for secret in [*secrets, *BAD_SECRETS]:
        for i, out in enumerate(outputs):
            assert secret.encode() not in out, (secret[:4], i)
            assert orjson.dumps(secret)[1:-1] not in out, (secret[:4], i)

    # every planted event reported with its type and field; no other record flagged
    truth = stream.set_index("event_id")
    validator = jsonschema.Draft202012Validator(score_record_schema())
    flagged = {}
    for r in records:
        validator.validate(r)
        if r.get("is_leak"):
            flagged[r["event_id"]] = r
    planted = truth[truth["leak_type"].notna()]
    assert set(flagged) == set(planted.index)
    for event_id, row in planted.iterrows():
        record = flagged[event_id]
        assert {"type": row["leak_type"], "field": row["leak_field"]} in record["leakage"]
        first = record["reasons"][0]
        assert first["leakage"] == row["leak_type"] and "(masked)" in first["text"]
        assert f"[REDACTED:{row['leak_type']}]" in first["value"]
    assert sorted(set(planted["leak_type"])) == sorted(LEAK_TYPES)

    # the leaks joined incidents, which name the types (never the secrets: scanned above)
    log = [orjson.loads(x) for x in (tmp_path / "incidents.jsonl").read_bytes().splitlines()]
    leaked_in = {t["type"] for r in latest_revisions(log).values() for t in r["leakage"]}
    assert leaked_in == set(LEAK_TYPES)
    members = {e for r in latest_revisions(log).values() for e in r["event_ids"]}
    assert set(planted.index) <= members

    # dead letters keep the event, masked
    by_id = {d["offset"]: d for d in dead}
    assert len(dead) == 3
    texts = " ".join(d.get("raw", "") for d in by_id.values())
    assert "[REDACTED:aws_access_key]" in texts and "[REDACTED:private_key]" in texts
    binary = base64.b64decode(by_id[max(by_id)]["raw_b64"])  # not UTF-8: kept as base64
    assert b"[REDACTED:card_number]" in binary and BAD_SECRETS[3].encode() not in binary


def test_without_the_detector_records_are_unchanged_and_secrets_pass(
    stream: pd.DataFrame, tmp_path: Path
) -> None:
    records, _ = _run(stream, tmp_path, leakage=False)
    assert not any("is_leak" in r or "leakage" in r for r in records)
    # the control: without masking, planted secrets do reach the records (via user_agent)
    assert any("[REDACTED:" not in json.dumps(r) and "deploy " in json.dumps(r) for r in records)


def test_column_wise_lines_equal_the_dicts(stream: pd.DataFrame) -> None:
    detector = LeakageDetector(LeakageConfig(enabled=True))
    pipeline = ScoringPipeline(Featurizer(SPEC), ENGINE, leakage=detector)
    rows = stream.head(600)
    values = [
        orjson.dumps({k: v for k, v in r.items() if v == v and v is not None})
        for r in rows.to_dict(orient="records")
    ]
    raw = RawBatch(values, [Origin("t", 0, i) for i in range(len(values))])
    result = pipeline.process(raw)
    assert isinstance(result.records, ScoreRecords)
    lines = result.records.json_lines()
    dicts = ScoreRecords(
        result.records.batch,
        result.records.outputs,
        result.records.featurizer,
        result.records.model,
        result.records.scored_at,
        leakage=result.records.leakage,
    ).dicts()
    assert result.records.leakage  # the head holds some planted events
    # the result's copy of the raw events (the training window keeps it) is masked too
    assert result.raw is not None and len(result.raw) == len(values)
    kept = b"\n".join(result.raw.values)
    assert not any(s.encode() in kept for s in planted_secrets(rows))
    assert b"[REDACTED:" in kept
    assert lines == [orjson.dumps(d) for d in dicts]
