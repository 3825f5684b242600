"""``secureai run | produce | tail``: the Kafka commands.

:func:`register` adds them to the ``secureai`` parser (pipelines/cli.py); ``python -m
pipelines.cli_kafka`` runs them on their own. Errors are one line (``secureai: error: ...``).

* ``run --config configs/pipeline.yml`` — the streaming pipeline (pipelines/kafka/runner.py);
  SIGTERM/Ctrl-C drains and commits, a second signal stops at once.
* ``produce --topic T [--events N | --file F.jsonl] [--rate R]`` — stream synthetic or file
  events into a topic at a target rate, with a progress bar.
* ``tail`` — a live view of the top incidents in words (``--events``: the highest-scored
  records with their reasons).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from morpheus_ext.errors import SecureAIError
from pipelines.cli_base import EXIT_FAILURE, CLIError, at_least, run_cli, standalone_parser
from pipelines.top_alerts import IncidentView, TopAlerts

DEFAULT_CONFIG = "configs/pipeline.yml"


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from morpheus_ext.stages.postprocess.fingerprint import CheckpointError
    from pipelines.kafka import KafkaPipelineError, run_pipeline
    from pipelines.kafka.config import load_pipeline_config

    config = load_pipeline_config(args.config)
    updates: dict[str, Any] = {}
    if args.bootstrap_servers:
        updates["bootstrap_servers"] = args.bootstrap_servers
    if args.group_id:
        updates["group_id"] = args.group_id
    if args.exactly_once:
        updates["exactly_once"] = True
    if updates:
        config = config.model_copy(update={"kafka": config.kafka.model_copy(update=updates)})
    if args.metrics_port is not None:
        config = config.model_copy(update={"metrics_port": args.metrics_port})
    fp = config.fingerprint
    if args.instance_id:
        if fp is None or not fp.enabled:
            raise CLIError("--instance-id names a fingerprint checkpoint: enable fingerprint")
        fp = type(fp).model_validate({**fp.model_dump(), "instance_id": args.instance_id})
        config = config.model_copy(update={"fingerprint": fp})
    fingerprinting = fp is not None and fp.enabled
    if args.verbose:
        for name in ("pipelines", "morpheus_ext"):
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger().setLevel(logging.INFO)
    engine = args.engine or config.inference.engine
    if engine == "morpheus" and fingerprinting:
        raise CLIError("fingerprinting runs in the built-in runner; drop --engine morpheus")
    if engine == "morpheus":
        from pipelines.morpheus_pipeline import MorpheusUnavailable, run_morpheus

        try:
            run_morpheus(config)
        except MorpheusUnavailable as exc:
            raise CLIError(str(exc)) from None
        return 0
    if engine != config.inference.engine:
        config = config.model_copy(
            update={"inference": config.inference.model_copy(update={"engine": engine})}
        )
    k = config.kafka
    mode = "exactly-once" if k.exactly_once else "at-least-once"
    print(
        f"secureai run: {','.join(k.topics)} -> {k.scores_topic} (dead letters: "
        f"{k.dead_letter_topic}), group {k.group_id}, {mode}, engine {engine}; "
        "SIGTERM/Ctrl-C drains",
        flush=True,
    )
    if fp is not None and fingerprinting:
        where = fp.checkpoint_file(k.group_id) or "nowhere (in memory only)"
        print(
            f"secureai run: fingerprinting, instance {fp.instance_id}, checkpoint {where} "
            f"every {fp.checkpoint_interval_s:g} s",
            flush=True,
        )
    try:
        summary = run_pipeline(config, max_events=args.max_events)
    except KafkaPipelineError as exc:
        raise CLIError(str(exc)) from None
    except CheckpointError as exc:
        raise CLIError(
            f"fingerprint checkpoint refused: {exc} (move it away to start new baselines, "
            "or run with the spec and fingerprint settings it was written with)"
        ) from None
    except KafkaException as exc:
        raise CLIError(f"Kafka: {exc.args[0].str() if exc.args else exc}") from None
    except Exception as exc:
        from morpheus_ext.stages.inference.triton import TritonEngineError

        if isinstance(exc, TritonEngineError):
            raise CLIError(str(exc)) from None
        raise
    state = "drained" if summary.drained else "stopped"
    print(f"secureai run: {state}: {summary.line()}", flush=True)
    return 0


# --------------------------------------------------------------------------- produce
def _synthetic_values(args: argparse.Namespace) -> Iterator[tuple[bytes | None, bytes]]:
    from morpheus_ext.stages.input.sources import frame_source
    from synthetic import SyntheticConfig, generate

    frame = generate(
        SyntheticConfig(n_events=args.events, anomaly_rate=args.anomaly_rate, seed=args.seed)
    )
    for raw in frame_source(frame, batch_size=8192, name="synthetic"):
        for value in raw.values:
            yield _key_of(value, args.key), value


def _file_values(path: Path, key: str) -> Iterator[tuple[bytes | None, bytes]]:
    """Lines as raw bytes, undecoded (a bad line is produced as is: the pipeline rejects it)."""
    with path.open("rb") as fh:
        for line in fh:
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield _key_of(value, key), value


@functools.cache
def _entity_fields() -> tuple[str, ...]:
    """``--key entity``: the security_events spec's entity columns, first non-null wins."""
    from morpheus_ext.feature_spec import load_spec

    return tuple(load_spec("security_events").entity)


def _key_of(value: bytes, key: str = "event_id") -> bytes | None:
    """Message key: the event id (spreads load evenly), or the entity (``--key entity``) so
    that all of one user's/host's events land on one partition, hence in one pipeline
    process's baselines when several processes share the topic."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    fields = _entity_fields() if key == "entity" else ("event_id",)
    found = next((doc[f] for f in fields if doc.get(f) not in (None, "")), None)
    return None if found is None else str(found).encode()


def cmd_produce(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException, Producer
    from tqdm import tqdm

    from morpheus_ext.stages.input.kafka_source import ensure_topics
    from morpheus_ext.stages.output.kafka_sink import producer_config

    bootstrap, options = _connection(args)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise CLIError(f"events file not found: {path}")
        values: Iterator[tuple[bytes | None, bytes]] = _file_values(path, args.key)
        with path.open("rb") as fh:
            total: int | None = sum(1 for line in fh if line.strip())
    else:
        values = _synthetic_values(args)
        total = args.events
    try:
        producer = Producer(
            producer_config(
                bootstrap,
                {
                    **options,
                    "linger.ms": 20,
                    "message.timeout.ms": int(args.delivery_timeout * 1000),
                },
            )
        )
        try:  # a broker that never answers: one line after --connect-timeout, not a hang
            producer.list_topics(timeout=args.connect_timeout)
        except KafkaException as exc:
            raise KafkaUnreachable(
                f"no Kafka broker at {bootstrap} answered within {args.connect_timeout:g} s "
                f"(--connect-timeout): {exc.args[0].str()}"
            ) from None
        if args.partitions:
            ensure_topics(bootstrap, {args.topic: args.partitions}, options)
    except KafkaException as exc:
        raise CLIError(f"Kafka: {exc.args[0].str()}") from None
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None and len(failures) < 5:
            failures.append(err.str())

    sent = 0
    started = time.monotonic()
    with tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        disable=args.no_progress,
        desc="produce",
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # a log (CI) gets a line per 10 s
    ) as bar:
        for key, value in values:
            while True:
                try:
                    producer.produce(args.topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
                bar.update(1000)
                if args.rate > 0:  # pace: never ahead of rate * elapsed
                    ahead = sent / args.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        bar.update(sent % 1000)
        left = producer.flush(60)
    seconds = time.monotonic() - started
    if left or failures:
        raise CLIError(
            f"{left} events unacknowledged, delivery errors: {'; '.join(failures) or 'none'}"
        )
    print(f"produced {sent} events to {args.topic} in {seconds:.1f} s ({sent / seconds:,.0f}/s)")
    return 0


class KafkaUnreachable(SecureAIError, ConnectionError):
    """No broker answered in time (a runtime failure: exit 1)."""

    exit_code = EXIT_FAILURE


def _connection(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """bootstrap + librdkafka options (``kafka.common``) from --config / --bootstrap-servers."""
    options: dict[str, Any] = {}
    bootstrap = args.bootstrap_servers
    if args.config and Path(args.config).is_file():
        from pipelines.kafka.config import load_pipeline_config

        config = load_pipeline_config(args.config)
        options = dict(config.kafka.common)
        bootstrap = bootstrap or config.kafka.bootstrap_servers
    elif args.config and args.config != DEFAULT_CONFIG:
        raise CLIError(f"config file not found: {args.config}")
    if not bootstrap:
        raise CLIError(
            "give --bootstrap-servers HOST:PORT (or --config with kafka.bootstrap_servers)"
        )
    return bootstrap, options


# --------------------------------------------------------------------------- tail
def cmd_tail(args: argparse.Namespace) -> int:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        OFFSET_END,
        Consumer,
        KafkaException,
        TopicPartition,
    )

    bootstrap, options = _connection(args)
    topic_name = args.topic or ("security-scores" if args.events else "security-incidents")
    view: TopAlerts | IncidentView = (
        TopAlerts(args.top, args.anomalies_only) if args.events else IncidentView(args.top)
    )
    consumer = Consumer(
        {
            **options,
            "bootstrap.servers": bootstrap,
            "group.id": f"secureai-tail-{uuid.uuid4().hex[:8]}",  # never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        meta = consumer.list_topics(topic_name, timeout=10)
        topic = meta.topics.get(topic_name)
        if topic is None or topic.error is not None or not topic.partitions:
            hint = (
                ""
                if args.events or args.topic
                else " (the pipeline writes incidents with incidents.enabled; --events shows "
                "the score records)"
            )
            raise CLIError(f"topic not found: {topic_name}{hint}")
        start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic_name, p, start) for p in topic.partitions])
        top = view
        interactive = sys.stdout.isatty() and not args.once
        next_draw = time.monotonic() + args.interval
        idle_since = time.monotonic()
        while True:
            messages = consumer.consume(1000, 0.2)
            for m in messages:
                if m.error() is not None or not m.value():
                    continue
                try:
                    rec = orjson.loads(m.value() or b"")
                except orjson.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    top.add(rec)
            now = time.monotonic()
            if messages:
                idle_since = now
            done = (args.max_records and top.seen >= args.max_records) or (
                args.once and now - idle_since >= args.idle_exit
            )
            if done:
                break
            if interactive and now >= next_draw:
                next_draw = now + args.interval
                sys.stdout.write("\x1b[H\x1b[2J" + top.render() + "\n")
                sys.stdout.flush()
    except KafkaException as exc:
        raise CLIError(f"Kafka: {exc.args[0].str()}") from None
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(top.render())
    return 0


# --------------------------------------------------------------------------- parser
def register(sub: Any) -> None:
    """Add ``run``, ``produce`` and ``tail`` to the ``secureai`` subparsers."""
    r = sub.add_parser("run", help="the streaming pipeline: Kafka in, scores + dead letters out")
    r.add_argument("--config", default=DEFAULT_CONFIG)
    r.add_argument("--engine", choices=["inprocess", "triton", "morpheus"])
    r.add_argument("--bootstrap-servers", help="override kafka.bootstrap_servers")
    r.add_argument("--group-id", help="override kafka.group_id")
    r.add_argument("--exactly-once", action="store_true", help="Kafka transactions")
    r.add_argument("--metrics-port", type=int, help="Prometheus metrics port (0: off)")
    r.add_argument("--max-events", type=int, help="stop (drained) after this many events")
    r.add_argument(
        "--instance-id", help="override fingerprint.instance_id (names this process's checkpoint)"
    )
    r.add_argument("-v", "--verbose", action="store_true", help="log assignments and outages")
    r.set_defaults(func=cmd_run)

    p = sub.add_parser("produce", help="stream synthetic or file events into a topic")
    _connection_args(p)
    p.add_argument("--topic", default="security-events")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--events", type=int, default=100_000, help="synthetic events (default)")
    src.add_argument("--file", help="a JSONL file, one event per line (sent undecoded)")
    p.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    p.add_argument("--partitions", type=int, default=0, help="create the topic if missing")
    p.add_argument(
        "--key",
        choices=("event_id", "entity"),
        default="event_id",
        help="message key: event id (even spread) or entity (one partition per user/host, "
        "for per-entity baselines with several pipeline processes)",
    )
    p.add_argument("--anomaly-rate", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--connect-timeout",
        type=at_least(0.1, float),
        default=15.0,
        help="seconds to wait for a broker to answer before giving up (default 15)",
    )
    p.add_argument(
        "--delivery-timeout",
        type=at_least(1.0, float),
        default=60.0,
        help="seconds an event may wait for its acknowledgement (librdkafka message.timeout.ms)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_produce)

    t = sub.add_parser(
        "tail", help="live view of the top incidents in words (--events: scored events)"
    )
    _connection_args(t)
    t.add_argument("--topic", help="default security-incidents (with --events: security-scores)")
    t.add_argument(
        "--events", action="store_true", help="score records (the raw view), not incidents"
    )
    t.add_argument("--top", type=int, default=15)
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--anomalies-only", action="store_true", help="with --events: flagged only")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    t.add_argument("--once", action="store_true", help="print once when the topic goes idle")
    t.add_argument("--idle-exit", type=float, default=2.0, help="with --once: idle seconds")
    t.add_argument("--max-records", type=int, default=0, help="stop after this many records")
    t.set_defaults(func=cmd_tail)


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-servers", help="HOST:PORT[,HOST:PORT]")
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help="take bootstrap + client options from it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m pipelines.cli_kafka``), with secureai's error handling."""
    return run_cli(standalone_parser(register), argv)


if __name__ == "__main__":
    if os.environ.get("SECUREAI_KAFKA_LOG"):
        logging.basicConfig(level=os.environ["SECUREAI_KAFKA_LOG"])
    sys.exit(main())
