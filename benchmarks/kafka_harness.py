"""The Kafka benchmark's harness: events to produce, pipeline processes that score them, and
readers of what they wrote (``bench_kafka.py`` measures with these)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import confluent_kafka
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from report import ROOT

from morpheus_ext.stages.input.sources import frame_source
from synthetic import SyntheticConfig, generate

PARTITIONS = 4
"""Partitions of the benchmark's events topic (one pipeline process reads them all)."""


def kafka_info() -> str:
    return (
        f"confluent-kafka {confluent_kafka.__version__} (librdkafka "
        f"{confluent_kafka.libversion()[0]}), Tansu 0.6.0 (memory storage)"
    )


def event_values(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(event id, JSON bytes) for n synthetic events."""
    frame = generate(SyntheticConfig(n_events=n, seed=seed))
    ids = frame["event_id"].astype(str).tolist()
    values = [v for raw in frame_source(frame, 8192) for v in raw.values]
    return [(i.encode(), v) for i, v in zip(ids, values, strict=True)]


class Pipelines:
    """``n`` pipeline processes on one config; stopped with SIGTERM (drain)."""

    def __init__(self, config: dict[str, Any], workdir: Path, n: int = 1) -> None:
        path = workdir / f"pipeline-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.logs = [workdir / f"{path.stem}-{i}.log" for i in range(n)]
        # Profiling hook: BENCH_PIPELINE_PREFIX="py-spy record -f raw -o /tmp/p{i}.txt --"
        # runs each pipeline under that command ({i}: the process number).
        prefix = os.environ.get("BENCH_PIPELINE_PREFIX", "")
        self.procs = [
            subprocess.Popen(
                [
                    *shlex.split(prefix.replace("{i}", str(i))),
                    sys.executable,
                    *("-m", "pipelines.cli_kafka", "run", "--config", str(path), "-v"),
                ],
                cwd=ROOT,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            for i, log in enumerate(self.logs)
        ]

    def wait_assigned(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not all("assigned" in log.read_text(errors="replace") for log in self.logs):
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"pipeline exited: {log.read_text()[-1500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("pipeline never got partitions")
            time.sleep(0.05)
        time.sleep(1.0)  # let a second member's rebalance settle

    def stop(self) -> list[str]:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(120)
        return [log.read_text(errors="replace").strip().splitlines()[-1] for log in self.logs]


IN_PROCESS: dict[str, Any] = {
    "engine": "inprocess",
    "repository": str(ROOT / "triton_model_repository"),
    "threads": 1,  # one ORT thread: the other core runs librdkafka's threads and the broker
}


PIPELINE_PRODUCER: dict[str, Any] = {}
"""``kafka.producer`` options of the pipeline under test (``--scores-compression``)."""


def pipeline_config(
    bootstrap: str,
    topic: str,
    exactly_once: bool,
    inference: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    training_window: dict[str, Any] | None = None,
    stages: dict[str, Any] | None = None,
    **kafka: Any,
) -> dict[str, Any]:
    """``stages``: more top-level sections (``incidents``, ``leakage``); with ``incidents``,
    its topic is ``<topic>-incidents``."""
    name = uuid.uuid4().hex[:8]
    extra: dict[str, Any] = {"fingerprint": fingerprint} if fingerprint else {}
    if training_window:
        extra["training_window"] = training_window
    extra.update(stages or {})
    if "incidents" in extra:
        kafka.setdefault("incidents_topic", f"{topic}-incidents")
    return {
        **extra,
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": f"bench-{name}",
            "scores_topic": f"{topic}-scores",
            "dead_letter_topic": f"{topic}-dlq",
            "exactly_once": exactly_once,
            "consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000},
            "producer": dict(PIPELINE_PRODUCER),
            **kafka,
        },
        "inference": inference or IN_PROCESS,
        "metrics_port": 0,
    }


INPUT_COMPRESSION = {"compression.type": "lz4"}
"""How the harness (the upstream producer of the events) compresses; ``--input-compression``."""


def produce_all(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {
            **INPUT_COMPRESSION,
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
        }
    )
    for i, (key, value) in enumerate(events):
        producer.produce(topic, value, key)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("events not acknowledged")


def score_reader(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    return consumer


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def committed_events(watcher: Consumer, topic: str) -> int:
    """Events whose score records the broker has acknowledged: the pipeline commits an input
    offset only then (at-least-once), so the sum of the group's committed offsets counts them.
    (Tansu's ListOffsets reports the end of a partition as 1, so the scores topic's end offsets
    cannot count records.)"""
    parts = watcher.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
    return sum(max(tp.offset, 0) for tp in parts)


def read_all_keys(bootstrap: str, topic: str, n: int) -> set[bytes]:
    """The keys of the scores topic, read until ``n`` distinct ones (or 120 s of nothing)."""
    reader = score_reader(bootstrap, topic)
    seen: set[bytes] = set()
    idle = time.monotonic()
    try:
        while len(seen) < n and time.monotonic() - idle < 120:
            batch = reader.consume(10_000, 0.5)
            if batch:
                idle = time.monotonic()
                seen.update(m.key() or b"" for m in batch if m.error() is None)
    finally:
        reader.close()
    return seen
