"""Measure the consumer's ``fetch.wait.max.ms`` against Tansu on memory:// and on s3:// storage.

Why: with ``fetch.wait.max.ms: 5`` (the pipeline's old default, chosen for memory:// latency) a
consumer on an s3:// Tansu read nothing, with no error. This probe shows, per storage and per
wait, (1) how long a fresh group takes to read a backlog (``backlog_s``; ``read`` < ``n`` means
it starved within the guard) and (2) the latency of single messages produced one at a time to a
caught-up consumer (p50 / max, ms). It uses the pipeline's own consumer defaults
(``CONSUMER_DEFAULTS``) with only the wait changed::

    python scripts/kafka/fetch_wait_probe.py --waits 5,20,50,100,200 --events 20000
    python scripts/kafka/fetch_wait_probe.py --storage s3 --s3-delay-ms 20 --waits 5,20,30,50

``--s3-delay-ms`` puts a proxy between Tansu and SeaweedFS that delays every request, like a
remote S3 (a local SeaweedFS answers in about a millisecond).

Needs ``scripts/kafka/install.sh`` and ``scripts/kafka/install_s3.sh`` (``make kafka``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from confluent_kafka import Consumer, Producer

from morpheus_ext.stages.input.kafka_source import CONSUMER_DEFAULTS, ensure_topics
from scripts.kafka.broker import KafkaBroker
from scripts.kafka.s3 import S3Server


def _consumer(bootstrap: str, wait_ms: int) -> Consumer:
    conf: dict[str, Any] = {
        **CONSUMER_DEFAULTS,
        "fetch.wait.max.ms": wait_ms,
        "bootstrap.servers": bootstrap,
        "group.id": f"probe-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "session.timeout.ms": 3000,
        "heartbeat.interval.ms": 1000,
    }
    return Consumer(conf)


VALUE = b'{"event_id": "x", "user": "u1", "bytes_in": 123, "pad": "' + b"p" * 200 + b'"}'


def _produce(producer: Producer, topic: str, events: int) -> None:
    for i in range(events):
        producer.produce(topic, VALUE, str(i).encode())
        if i % 1000 == 999:
            producer.poll(0)
    producer.flush(30)


def _read(consumer: Consumer, events: int, guard_s: float) -> tuple[int, float]:
    """Read ``events`` messages; (read, seconds from the first message to the last)."""
    start = time.monotonic()
    first = None
    read = 0
    while read < events and time.monotonic() - start < guard_s:
        got = sum(1 for m in consumer.consume(10_000, 0.2) if m.error() is None)
        if got and first is None:
            first = time.monotonic()
        read += got
    return read, round(time.monotonic() - (first or start), 2)


def probe(
    broker: KafkaBroker, wait_ms: int, events: int, guard_s: float, restart_s: float
) -> dict[str, Any]:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, {topic: 4})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    _produce(producer, topic, events)

    consumer = _consumer(broker.bootstrap, wait_ms)
    consumer.subscribe([topic])
    read, backlog_s = _read(consumer, events, guard_s)
    out: dict[str, Any] = {"wait_ms": wait_ms, "read": f"{read}/{events}", "backlog_s": backlog_s}

    latencies = []
    if read >= events:
        for i in range(20):
            sent = time.monotonic()
            producer.produce(topic, VALUE, f"live-{i}".encode())
            producer.flush(10)
            got = False
            while not got and time.monotonic() - sent < 10:
                got = any(m.error() is None for m in consumer.consume(1, 0.01))
            latencies.append((time.monotonic() - sent) * 1000 if got else float("inf"))
            time.sleep(0.02)
        out["p50_ms"] = round(statistics.median(latencies), 1)
        out["max_ms"] = round(max(latencies), 1)
    if restart_s and broker.durable:
        broker.restart(down_s=restart_s)
        _produce(producer, topic, events)
        read, after_s = _read(consumer, events, guard_s)
        out["after_restart"] = f"{read}/{events} in {after_s} s"
    consumer.close()
    return out


def delaying_proxy(upstream_port: int, delay_s: float) -> int:
    """A TCP proxy on 127.0.0.1 (daemon thread) that holds each request chunk ``delay_s``
    before passing it on (answers pass at once); returns its port."""
    ready: list[int] = []

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await r.read(65536):
                await asyncio.sleep(delay)
                w.write(data)
                await w.drain()
        except OSError:
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(r, uw, delay_s), pipe(ur, w, 0.0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.append(int(server.sockets[0].getsockname()[1]))
        await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    while not ready:
        time.sleep(0.01)
    return ready[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--waits", default="5,20,50,100,200")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--storage", default="memory,s3")
    ap.add_argument("--guard-s", type=float, default=30.0, help="give up reading after this")
    ap.add_argument("--s3-delay-ms", type=float, default=0.0, help="delay each S3 request")
    ap.add_argument(
        "--restart-s", type=float, default=0.0, help="then restart a durable broker (down s)"
    )
    args = ap.parse_args()
    waits = [int(w) for w in args.waits.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for storage in args.storage.split(","):
            s3 = S3Server(Path(tmp) / "s3") if storage == "s3" else None
            options = s3.start().broker_options() if s3 else {}
            if s3 and args.s3_delay_ms:
                proxy = delaying_proxy(s3.port, args.s3_delay_ms / 1000)
                options["env"]["AWS_ENDPOINT"] = f"http://127.0.0.1:{proxy}"
                storage = f"s3+{args.s3_delay_ms:g}ms"
            try:
                with KafkaBroker(Path(tmp) / storage.split("+")[0], **options) as broker:
                    for wait in waits:
                        print(
                            storage,
                            probe(broker, wait, args.events, args.guard_s, args.restart_s),
                            flush=True,
                        )
            finally:
                if s3:
                    s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
