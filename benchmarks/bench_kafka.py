"""Kafka end to end: sustained events/s and produce -> score latency, in-process and Triton.

    python benchmarks/bench_kafka.py --out docs/benchmarks.md

Starts a fresh Tansu broker per run (scripts/kafka/), runs the pipeline as its own OS process
exactly as ``secureai run`` does (``python -m pipelines.cli_kafka run --config ...``) and
measures from outside, by reading the scores topic:

* **throughput** — N events are produced first (not timed); the pipeline then drains the backlog;
  events/s = N / (arrival of the last score record - arrival of the first), for 1 process
  at-least-once, 1 process exactly-once and 2 processes in one group;
* **latency** — events are offered at a fixed rate (default 20k/s) while the pipeline runs; per
  event, the time from the ``produce()`` call to the arrival of its score record (read back
  from the broker, so the broker has acknowledged it) — p50/p99/max after a warm-up.

``--engines inprocess,triton`` (default) repeats the 1-process throughput and the latency runs
with the pipeline scoring through a real CPU Triton server (scripts/triton harness, gRPC) on the
same committed repository.

Broker, pipeline and this harness share the machine's cores (2 here), as in the tests. Writes a
Markdown section (between markers) with machine info and the exact command.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from report import ROOT, git_commit, machine_info, update_section

sys.path.insert(0, str(ROOT))  # scripts.kafka (a folder, not an installed package)
sys.path.insert(0, str(ROOT / "scripts" / "triton"))

import triton_harness
from kafka_harness import (
    IN_PROCESS,
    INPUT_COMPRESSION,
    PARTITIONS,
    PIPELINE_PRODUCER,
    Pipelines,
    committed_events,
    cpu_seconds,
    event_values,
    kafka_info,
    pipeline_config,
    produce_all,
    read_all_keys,
    score_reader,
)

from morpheus_ext.stages.input.kafka_source import ensure_topics
from scripts.kafka.broker import KafkaBroker

SECTION = "bench_kafka"
READ_WAIT_S = 0.005
"""The score reader's consume() timeout: consume() returns only when it has the asked-for count
or the timeout passed, so a record's measured arrival is late by up to this much."""
WATCH_S = 0.01
"""Throughput runs, at-least-once: how often the pipeline group's committed offsets are read."""


def measure_throughput(
    broker: KafkaBroker,
    workdir: Path,
    events: list[tuple[bytes, bytes]],
    processes: int,
    eos: bool,
    inference: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    training_window: dict[str, Any] | None = None,
    stages: dict[str, Any] | None = None,
) -> tuple[float, float, float]:
    """events/s, pipeline CPU µs/event (all processes), broker CPU µs/event.

    At-least-once the harness only watches the pipeline group's committed offsets while it
    drains (one OffsetFetch every ``WATCH_S``; an offset is committed once the broker has
    acknowledged the batch's score records), so its own CPU stays off the two cores the
    pipeline and broker share: events/s = events committed after the first commit seen /
    time from it to the last. It checks afterwards (untimed) that every event has its score
    record. Exactly-once it reads the records (``read_committed``) as they arrive, the
    earlier protocol (a reader decompressing and parsing every record costs ~3 µs/event)."""
    bootstrap = broker.bootstrap
    assert broker.pid is not None
    topic = f"tput-{uuid.uuid4().hex[:8]}"
    scores = f"{topic}-scores"
    topics = {topic: PARTITIONS, scores: PARTITIONS, f"{topic}-dlq": 1}
    if stages and "incidents" in stages:
        topics[f"{topic}-incidents"] = 1
    ensure_topics(bootstrap, topics)
    produce_all(bootstrap, topic, events)
    config = pipeline_config(
        bootstrap, topic, eos, inference, fingerprint, training_window, stages, batch_size=8192
    )
    # exactly-once: a reader of the records; at-least-once: a client of the pipeline's group
    # that never joins it (no assignment, so it fetches nothing), for the committed offsets
    group = config["kafka"]["group_id"]
    reader = (
        score_reader(bootstrap, scores)
        if eos
        else Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    )
    pipes = Pipelines(config, workdir, processes)
    n = len(events)
    try:
        seen: set[bytes] = set()
        first = last = 0.0
        cpu0: tuple[float, float] = (0.0, 0.0)
        deadline = time.monotonic() + 600
        done = before = 0  # events with a score in Kafka: now, and at the first sign of one
        while (len(seen) if eos else done) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {max(len(seen), done)} of {n} scores after 600 s")
            if eos:
                batch = reader.consume(10_000, READ_WAIT_S)
                arrived = bool(batch)
                seen.update(m.key() or b"" for m in batch if m.error() is None)
            else:
                time.sleep(WATCH_S)
                count = committed_events(reader, topic)
                arrived, done = count > done, count
            if arrived:
                now = time.monotonic()
                if not first:
                    first, before = now, done  # at-least-once: from the first commit on
                    cpu0 = (sum(cpu_seconds(p.pid) for p in pipes.procs), cpu_seconds(broker.pid))
                last = now
        pipe_cpu = sum(cpu_seconds(p.pid) for p in pipes.procs) - cpu0[0]
        broker_cpu = cpu_seconds(broker.pid) - cpu0[1]
    finally:
        pipes.stop()
        reader.close()
    if not eos:
        missing = n - len(read_all_keys(bootstrap, scores, n) & {key for key, _ in events})
        if missing:
            raise RuntimeError(f"{missing} of {n} events have no score record")
    timed = n - before
    return timed / (last - first), pipe_cpu / timed * 1e6, broker_cpu / timed * 1e6


def measure_latency(
    bootstrap: str,
    workdir: Path,
    events: list[tuple[bytes, bytes]],
    rate: float,
    warmup_s: float,
    batch_timeout_ms: int,
    inference: dict[str, Any] | None = None,
) -> tuple[dict[str, float], list[str]]:
    topic = f"lat-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: PARTITIONS, f"{topic}-scores": PARTITIONS, f"{topic}-dlq": 1})
    reader = score_reader(bootstrap, f"{topic}-scores")
    config = pipeline_config(bootstrap, topic, False, inference, batch_timeout_ms=batch_timeout_ms)
    pipes = Pipelines(config, workdir)
    pipes.wait_assigned()
    sent_at: dict[bytes, float] = {}
    arrived_at: dict[bytes, float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set() or len(arrived_at) < len(sent_at):
            for m in reader.consume(5000, READ_WAIT_S):
                if m.error() is None:
                    arrived_at.setdefault(m.key() or b"", time.time())
            if stop.is_set() and time.time() > stop_deadline:
                break

    stop_deadline = float("inf")
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    producer = Producer(
        {
            **INPUT_COMPRESSION,
            "bootstrap.servers": bootstrap,
            "linger.ms": 1,
            "enable.idempotence": True,
        }
    )
    started = time.monotonic()
    tick = 0.005
    chunk = max(1, int(rate * tick))
    try:
        for i in range(0, len(events), chunk):
            for key, value in events[i : i + chunk]:
                sent_at[key] = time.time()
                producer.produce(topic, value, key)
            producer.poll(0)
            ahead = (i + chunk) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush(60)
        offered = len(events) / (time.monotonic() - started)
        stop_deadline = time.time() + 60
        stop.set()
        thread.join(90)
    finally:
        summaries = pipes.stop()
        reader.close()
    warm = min(sent_at.values()) + warmup_s
    lat = sorted(
        (arrived_at[k] - t) * 1000 for k, t in sent_at.items() if t >= warm and k in arrived_at
    )
    missing = sum(1 for k in sent_at if k not in arrived_at)
    q = statistics.quantiles(lat, n=100)
    return {
        "offered": offered,
        "p50": q[49],
        "p99": q[98],
        "max": lat[-1],
        "n": len(lat),
        "missing": missing,
    }, summaries


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="throughput backlog")
    parser.add_argument(
        "--rates", default="5000,10000,20000", help="latency: offered events/s (comma list)"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="latency: run length")
    parser.add_argument("--warmup", type=float, default=3.0, help="latency: seconds ignored")
    parser.add_argument("--batch-timeout-ms", type=int, default=50, help="latency runs")
    parser.add_argument(
        "--skip", default="", help="comma list of: eos,scaleout,fingerprint,latency"
    )
    parser.add_argument(
        "--engines", default="inprocess,triton", help="comma list of: inprocess,triton"
    )
    parser.add_argument(
        "--input-compression",
        default="lz4",
        choices=["none", "lz4", "zstd", "snappy", "gzip"],
        help="how the harness compresses the events it produces (the upstream's choice)",
    )
    parser.add_argument(
        "--scores-compression",
        default=None,
        help="kafka.producer compression.type of the pipeline (default: the pipeline's own)",
    )
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    INPUT_COMPRESSION["compression.type"] = args.input_compression
    if args.scores_compression:
        PIPELINE_PRODUCER["compression.type"] = args.scores_compression

    events = event_values(args.events, seed=5)
    rates = [float(r) for r in args.rates.split(",")] if "latency" not in skip else []
    n_lat = int(max(rates, default=0) * args.seconds)
    lat_events = event_values(n_lat, seed=6) if rates else []
    # The harness keeps ~1M objects (events, send/arrival stamps): without this, full GC passes
    # pause its reader thread and late arrival stamps inflate the measured latency.
    gc.collect()
    gc.freeze()
    workdir = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, float, float, float]] = []
    latencies: list[tuple[str, dict[str, float]]] = []
    engines = [e for e in ("inprocess", "triton") if e in args.engines.split(",")]
    for engine in engines:
        with contextlib.ExitStack() as stack:
            inference, label_suffix = IN_PROCESS, "in-process"
            runs: list[tuple[str, int, bool, dict[str, Any] | None]] = [
                ("1 process, at-least-once", 1, False, None)
            ]
            if engine == "triton":
                server = stack.enter_context(
                    triton_harness.TritonServer(
                        ROOT / "triton_model_repository", workdir / "triton"
                    )
                )
                inference = {"engine": "triton", "url": server.grpc_url, "protocol": "grpc"}
                label_suffix = "Triton gRPC"
            else:
                if "eos" not in skip:
                    runs.append(("1 process, exactly-once", 1, True, None))
                if "scaleout" not in skip:
                    runs.append(("2 processes, one group, at-least-once", 2, False, None))
                if "fingerprint" not in skip:
                    for explain in ("alerts", "all"):
                        fp = {
                            "enabled": True,
                            "explain": explain,
                            "checkpoint_path": str(workdir / f"baselines-{explain}.npz"),
                        }
                        label = f"1 process, at-least-once, baselines (explain: {explain})"
                        runs.append((label, 1, False, fp))
            # A fresh broker per run: Tansu's memory storage keeps every record, and with the
            # ~2M records of earlier runs it gets slower (a later run would measure leftovers).
            for label, procs, eos, fingerprint in runs:
                with KafkaBroker(workdir) as broker:
                    rate, pipe_us, broker_us = measure_throughput(
                        broker, workdir, events, procs, eos, inference, fingerprint
                    )
                label = f"{label_suffix}: {label}"
                print(
                    f"{label}: {rate:,.0f} events/s; CPU per event: pipeline {pipe_us:.1f} µs, "
                    f"broker {broker_us:.1f} µs",
                    flush=True,
                )
                rows.append((label, rate, pipe_us, broker_us))
            for rate in rates:
                with KafkaBroker(workdir) as lat_broker:
                    latency, _ = measure_latency(
                        lat_broker.bootstrap,
                        workdir,
                        lat_events[: int(rate * args.seconds)],
                        rate,
                        args.warmup,
                        args.batch_timeout_ms,
                        inference,
                    )
                    latencies.append((label_suffix, latency))
                print(
                    f"{label_suffix} latency at {latency['offered']:,.0f} events/s offered: p50 "
                    f"{latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max "
                    f"{latency['max']:.1f} ms ({latency['n']} events, {latency['missing']} "
                    "missing)",
                    flush=True,
                )
    shutil.rmtree(workdir, ignore_errors=True)
    load = f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"

    command = "python benchmarks/bench_kafka.py " + " ".join(sys.argv[1:])
    lines = [
        "## Kafka end to end (in-process and Triton engines)",
        "",
        f"- Machine: {machine_info()}, {kafka_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        "- Broker, pipeline process(es) and this harness share the machine's cores. Pipeline: "
        "`python -m pipelines.cli_kafka run` (= `secureai run`), 4 partitions, committed model "
        "repository, security_events spec; in-process: ORT 1 thread; Triton: the CPU harness "
        "(python-backend ONNX Runtime, scripts/triton/) over gRPC on the same machine; a fresh "
        "broker for every run below. "
        f"Machine: {load} (other work on the machine shows up here).",
        "",
        f"Sustained throughput: {args.events:,} events produced first, then drained "
        "(batch_size 8192); at-least-once: events/s from the group's first to its last "
        "committed offset (an offset is committed only once the broker acknowledged the "
        "batch's score records; every score record is checked afterwards, untimed); "
        "exactly-once: between the first and the last score record read back.",
        "",
        "CPU per event is the pipeline process(es)' (all threads: Python, librdkafka, ONNX "
        "Runtime) and the broker's, over the same interval: it varies far less with other load "
        "than events/s. 2e6 / (pipeline + broker µs) bounds what two fully used cores could do "
        "(several pipeline processes, broker on the same machine). Triton rows: the server's "
        "own processes (gRPC front end, python-backend stubs) are in neither column.",
        "",
        "| pipeline | events/s | pipeline CPU µs/event | broker CPU µs/event |",
        "|---|---:|---:|---:|",
        *[f"| {lb} | {r:,.0f} | {p:.1f} | {b:.1f} |" for lb, r, p, b in rows],
    ]
    plain = next((r for r in rows if r[0] == "in-process: 1 process, at-least-once"), None)
    with_fp = [r for r in rows if "baselines" in r[0]]
    if plain and with_fp:
        lines += [
            "",
            "Fingerprinting cost (per-entity baselines: score against them, learn the batch, "
            "checkpoint every 10 s, records with the fingerprint fields; reasons in words for "
            "the flagged records or for all): 1 - events/s with / without, and the extra CPU "
            "per event (pipeline + broker: records with words are longer). Baselines start "
            "empty, so the first ~50 events of each entity use the population baseline.",
            "",
            "| baselines | events/s | cost (events/s) | extra CPU µs/event |",
            "|---|---:|---:|---:|",
            *[
                f"| {lb.split('(')[-1].rstrip(')')} | {r:,.0f} | {1 - r / plain[1]:.1%} "
                f"| {p + b - plain[2] - plain[3]:+.1f} |"
                for lb, r, p, b in with_fp
            ],
        ]
    if latencies:
        lines += [
            "",
            f"Latency: events offered at a fixed rate for {args.seconds:.0f} s (1 process, "
            f"at-least-once, batch_timeout_ms {args.batch_timeout_ms}); per event, from the "
            "`produce()` call to its score record being read back from the broker (the reader "
            f"polls every {READ_WAIT_S * 1000:.0f} ms); the first {args.warmup:.0f} s are "
            "warm-up. A rate above what the pipeline sustains on the cores left to it shows as "
            "queueing (seconds).",
            "",
            "| engine | offered events/s | p50 | p99 | max | events measured | without a score |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *[
                f"| {e} | {x['offered']:,.0f} | {x['p50']:.1f} ms | {x['p99']:.1f} ms "
                f"| {x['max']:.1f} ms | {int(x['n']):,} | {int(x['missing'])} |"
                for e, x in latencies
            ],
        ]
    if args.out:
        update_section(Path(args.out), SECTION, lines)
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
