"""``secureai produce`` and ``secureai tail`` against the real broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipelines.cli_kafka import main as kafka_cli
from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import kafka_broker, read_until, synthetic_values, unique

pytestmark = pytest.mark.integration
__all__ = ["kafka_broker"]  # fixture used by name


def test_produce_streams_a_file_undecoded_keyed_by_event_id(
    kafka_broker: KafkaBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = unique("produce-file")
    lines = [*synthetic_values(300)[:200], b"{broken json"]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    argv = ["produce", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", topic]
    assert kafka_cli([*argv, "--file", str(path), "--partitions", "2", "--no-progress"]) == 0

    assert f"produced 201 events to {topic}" in capsys.readouterr().out
    messages = read_until(kafka_broker, [topic], lambda m: len(m) >= 201)
    assert sorted(m.value for m in messages) == sorted(lines)  # bad lines go as they are
    keyed = {m.value: m.key for m in messages}
    assert keyed[b"{broken json"] is None
    assert keyed[lines[0]] == orjson.loads(lines[0])["event_id"].encode()


def test_produce_synthetic_at_a_target_rate(
    kafka_broker: KafkaBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = unique("produce-synthetic")
    argv = ["produce", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", topic]
    assert kafka_cli([*argv, "--events", "3000", "--rate", "20000", "--no-progress"]) == 0
    assert f"produced 3000 events to {topic}" in capsys.readouterr().out
    messages = read_until(kafka_broker, [topic], lambda m: len(m) >= 3000)
    assert len({orjson.loads(m.value)["event_id"] for m in messages}) == 3000


def test_tail_shows_the_highest_scores_with_reasons(
    kafka_broker: KafkaBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    from confluent_kafka import Producer

    topic = unique("tail")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i, score in enumerate([0.1, 7.5, 0.3, 42.0, 1.0]):
        record = {
            "event_id": f"evt-{i}",
            "entity": f"user{i}",
            "anomaly_score": score,
            "threshold": 2.0,
            "is_anomaly": score > 2.0,
            "reasons": [{"field": "country", "value": f"C{i}", "z": score}],
        }
        producer.produce(topic, orjson.dumps(record), f"evt-{i}".encode())
    producer.produce(topic, b"not a record")
    assert producer.flush(10) == 0

    argv = ["tail", "--events", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", topic]
    assert kafka_cli([*argv, "--from-beginning", "--once", "--idle-exit", "1", "--top", "2"]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("5 score records, 2 anomalous; top 2")
    assert "evt-3" in lines[2] and "country=C3 (z 42.0)" in lines[2]
    assert "evt-1" in lines[3] and len(lines) == 4


def test_produce_to_an_unreachable_broker_fails_in_one_line_after_its_timeout() -> None:
    """Nothing listens on the port: one error line naming the broker and the flag, exit 1
    (a runtime failure), instead of retrying for ever with ERROR lines several times a second."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [
            sys.executable, "-m", "pipelines.cli", "produce",
            "--bootstrap-servers", f"127.0.0.1:{port}", "--events", "10",
            "--connect-timeout", "2", "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and f"no Kafka broker at 127.0.0.1:{port}" in lines[0], lines
    assert "--connect-timeout" in lines[0]
