"""Which transaction does each record of a topic belong to, and did it commit? Read off the wire.

Why this exists: in exactly-once mode a ``read_committed`` consumer of the scores topic saw an
event twice after a ``kill -9``. Either the pipeline committed the same event in two
transactions (our fault) or the broker handed out records of an aborted or never-finished
transaction (the broker's fault: a ``read_committed`` consumer must never see them). Client
libraries hide what decides it, so this module asks the broker itself with a raw ``Fetch`` (v4)
and reads the record-batch headers, which are never compressed: each batch's producer id and
epoch, whether it is transactional, and the control batches (the COMMIT/ABORT markers a
transaction coordinator writes). It also records what the broker tells ``read_committed``
clients: the last stable offset and the list of aborted transactions they must filter out.

Standard library only, like ``broker.py``::

    python scripts/kafka/txn_audit.py 127.0.0.1:9092 security-scores --partitions 4

prints one line per partition (batches, transactions committed/aborted/open, what the broker
says of them) and, with ``--keys``, each key found in more than one transaction with their fates.
"""

from __future__ import annotations

import argparse
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

FETCH = 1
FETCH_VERSION = 4
"""The oldest Fetch with ``isolation_level``, the last stable offset and aborted transactions."""
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
TRANSACTIONAL, CONTROL = 0x10, 0x20
ABORT, COMMIT = 0, 1


@dataclass(frozen=True)
class Batch:
    """One record batch's header (v2 format), as stored by the broker."""

    base_offset: int
    last_offset: int
    producer_id: int
    producer_epoch: int
    transactional: bool
    control: int | None
    """``ABORT`` or ``COMMIT`` for a control batch (a transaction marker), else None."""

    def offsets(self) -> range:
        return range(self.base_offset, self.last_offset + 1)


@dataclass
class PartitionLog:
    """Every batch of one partition, and what the broker reports to ``read_committed`` readers."""

    partition: int
    batches: list[Batch] = field(default_factory=list)
    high_watermark: int = -1
    last_stable_offset: int = -1
    aborted_reported: list[tuple[int, int]] = field(default_factory=list)
    """(producer id, first offset) pairs the broker lists for read_committed clients to skip."""

    def fates(self) -> dict[int, str]:
        """offset -> ``committed`` | ``aborted`` | ``open`` | ``plain`` for every data record.

        A transactional batch ends as the next marker of its producer (id and epoch) says; a
        transaction with no marker after it is still open (its producer died, and nothing
        fenced and aborted it yet).
        """
        pending: dict[tuple[int, int], list[Batch]] = {}
        fate: dict[int, str] = {}
        for batch in self.batches:
            producer = (batch.producer_id, batch.producer_epoch)
            if batch.control is not None:
                outcome = "committed" if batch.control == COMMIT else "aborted"
                for data in pending.pop(producer, []):
                    fate.update(dict.fromkeys(data.offsets(), outcome))
            elif batch.transactional:
                pending.setdefault(producer, []).append(batch)
            else:
                fate.update(dict.fromkeys(batch.offsets(), "plain"))
        for open_batches in pending.values():
            for data in open_batches:
                fate.update(dict.fromkeys(data.offsets(), "open"))
        return fate

    def summary(self) -> str:
        markers = Counter(
            "commit" if b.control == COMMIT else "abort"
            for b in self.batches
            if b.control is not None
        )
        fates = Counter(self.fates().values())
        return (
            f"partition {self.partition}: {len(self.batches)} batches, records "
            f"{dict(sorted(fates.items()))}, markers {dict(sorted(markers.items()))}; broker says "
            f"high watermark {self.high_watermark}, last stable offset {self.last_stable_offset}, "
            f"{len(self.aborted_reported)} aborted transactions to skip"
        )


def read_partition(
    bootstrap: str, topic: str, partition: int, max_bytes: int = 4 << 20
) -> PartitionLog:
    """All batches of ``topic``/``partition`` (read_uncommitted), plus the read_committed view's
    last stable offset and aborted-transaction list (asked from offset 0)."""
    host, port = bootstrap.rsplit(":", 1)
    log = PartitionLog(partition)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        committed = _fetch(s, topic, partition, 0, READ_COMMITTED, max_bytes)
        log.last_stable_offset, log.aborted_reported = committed[1], committed[2]
        offset = 0
        while True:
            hw, _, _, records = _fetch(s, topic, partition, offset, READ_UNCOMMITTED, max_bytes)
            log.high_watermark = hw
            batches = [b for b in _batches(records) if b.last_offset >= offset]
            if not batches:
                return log
            log.batches.extend(batches)
            offset = batches[-1].last_offset + 1


def _fetch(
    s: socket.socket, topic: str, partition: int, offset: int, isolation: int, max_bytes: int
) -> tuple[int, int, list[tuple[int, int]], bytes]:
    client = b"secureai-txn-audit"
    name = topic.encode()
    body = (
        struct.pack(">hhih", FETCH, FETCH_VERSION, 1, len(client))
        + client
        + struct.pack(">iiiib", -1, 100, 1, max_bytes, isolation)
        + struct.pack(">ih", 1, len(name))
        + name
        + struct.pack(">iiqi", 1, partition, offset, max_bytes)
    )
    s.sendall(struct.pack(">i", len(body)) + body)
    (size,) = struct.unpack(">i", _recv(s, 4))
    r = _Reader(_recv(s, size))
    r.i32()  # correlation id
    r.i32()  # throttle time
    for _ in range(r.i32()):  # topics
        r.string()
        for _ in range(r.i32()):  # partitions
            r.i32()
            error = r.i16()
            if error:
                raise RuntimeError(f"fetch {topic}/{partition} at {offset}: Kafka error {error}")
            hw, lso = r.i64(), r.i64()
            n_aborted = r.i32()
            aborted = [(r.i64(), r.i64()) for _ in range(max(n_aborted, 0))]
            n = r.i32()
            return hw, lso, aborted, r.take(max(n, 0))
    raise RuntimeError(f"fetch {topic}/{partition}: no partition in the answer")


def _batches(records: bytes) -> Iterator[Batch]:
    """Whole v2 batches in a Fetch answer (a trailing partial batch is dropped, as clients do)."""
    pos = 0
    while pos + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):
            return
        magic = records[pos + 16]
        if magic != 2:
            raise RuntimeError(f"record batch at offset {base} has magic {magic}, not 2")
        attributes, last_delta = struct.unpack_from(">hi", records, pos + 21)
        producer_id, epoch = struct.unpack_from(">qh", records, pos + 43)
        control = None
        if attributes & CONTROL:  # control records are never compressed
            control = _control_type(records[pos + 61 : end])
        yield Batch(
            base,
            base + last_delta,
            producer_id,
            epoch,
            bool(attributes & TRANSACTIONAL),
            control,
        )
        pos = end


def _control_type(payload: bytes) -> int:
    """The marker type of a control batch's first record: its key is (version int16, type int16)."""
    r = _Reader(payload)
    r.varint()  # record length
    r.take(1)  # attributes
    r.varint()  # timestamp delta
    r.varint()  # offset delta
    key = r.take(r.varint())
    return int(struct.unpack(">hh", key)[1])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def i16(self) -> int:
        return self._unpack(">h")

    def i32(self) -> int:
        return self._unpack(">i")

    def i64(self) -> int:
        return self._unpack(">q")

    def string(self) -> str:
        return self.take(self.i16()).decode()

    def varint(self) -> int:
        shift = raw = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            raw |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (raw >> 1) ^ -(raw & 1)  # zigzag
            shift += 7


def _recv(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", help="host:port of the broker")
    parser.add_argument("topic")
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    for p in range(args.partitions):
        print(read_partition(args.bootstrap, args.topic, p).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
