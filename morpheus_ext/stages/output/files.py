"""Sinks: where score records and rejected events go.

The file sinks write JSON Lines; the dead-letter record keeps the original bytes (as text when
they are valid UTF-8, else base64), the origin and the reason, so nothing bad disappears.

Example:

>>> import json, tempfile
>>> from morpheus_ext.stages.input.sources import Origin
>>> path = Path(tempfile.mkdtemp()) / "dead.jsonl"
>>> with JsonlSink(path) as sink:
...     origin = Origin("events.jsonl", 0, 7)
...     sink.write([dead_letter_record(b"oops", origin, "not JSON", "decode")])
>>> row = json.loads(path.read_text())
>>> row["source"], row["offset"], row["stage"], row["raw"]
('events.jsonl', 7, 'decode', 'oops')
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from morpheus_ext.stages.input.sources import Origin
from morpheus_ext.stages.postprocess.records import ScoreRecords


def dead_letter_record(value: bytes, origin: Origin, reason: str, stage: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "reason": reason,
        "stage": stage,
        "source": origin.source,
        "partition": origin.partition,
        "offset": origin.offset,
        "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    try:
        record["raw"] = value.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_b64"] = base64.b64encode(value).decode("ascii")
    return record


class JsonlSink:
    """Appends dicts as JSON lines; flushes per batch so a crash loses at most the open batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("wb")
        self.count = 0

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if records:
            if isinstance(records, ScoreRecords):  # column-wise: no dict per record
                self._fh.write(records.jsonl())
            else:
                self._fh.write(
                    b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
                )
            self._fh.flush()
            self.count += len(records)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
