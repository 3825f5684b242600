"""Sources: where raw event bytes come from, in batches, each value with its origin.

Every value keeps ``(source, partition, offset)`` so a rejected event can be traced back (for a
file: the path, partition 0 and the 1-based line number; for Kafka: topic, partition, offset).

Example:

>>> import pandas as pd
>>> batches = list(frame_source(pd.DataFrame({"user": ["alice", "bob", "carol"]}), 2))
>>> [len(b) for b in batches], batches[0].values[0], batches[1].origins[0]
([2, 1], b'{"user":"alice"}', Origin(source='memory', partition=0, offset=2))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pandas as pd


@dataclass(frozen=True)
class Origin:
    source: str
    partition: int
    offset: int


@dataclass
class RawBatch:
    """Undecoded event values (bytes, possibly invalid) and where each came from."""

    values: list[bytes] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


def jsonl_file_source(path: str | Path, batch_size: int = 4096) -> Iterator[RawBatch]:
    """Read a JSONL file as raw bytes (no decoding here: bad lines must reach the decoder)."""
    path = Path(path)
    batch = RawBatch()
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue  # blank lines are layout, not events
            batch.values.append(value)
            batch.origins.append(Origin(str(path), 0, lineno))
            if len(batch) >= batch_size:
                yield batch
                batch = RawBatch()
    if batch.values:
        yield batch


def parquet_file_source(path: str | Path, batch_size: int = 4096) -> Iterator[RawBatch]:
    """A Parquet file's rows as JSON event bytes, read a row group slice at a time (what
    ``secureai generate --out x.parquet`` writes); origins are 1-based row numbers."""
    import pyarrow.parquet as pq

    path = Path(path)
    row = 0
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        frame = record_batch.to_pandas()
        for raw in frame_source(frame, batch_size, str(path)):
            yield RawBatch(
                raw.values, [Origin(str(path), 0, row + o.offset + 1) for o in raw.origins]
            )
        row += len(frame)


def file_source(path: str | Path, batch_size: int = 4096) -> Iterator[RawBatch]:
    """Events from a file by its suffix: ``.parquet`` (rows) or JSON Lines (anything else)."""
    if Path(path).suffix.lower() in {".parquet", ".pq"}:
        return parquet_file_source(path, batch_size)
    return jsonl_file_source(path, batch_size)


def frame_source(
    frame: pd.DataFrame, batch_size: int = 4096, name: str = "memory"
) -> Iterator[RawBatch]:
    """The embedded default: events already in memory, serialised as they would arrive."""
    records = frame.to_dict(orient="records")
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        values = [orjson.dumps({k: v for k, v in r.items() if not _is_null(v)}) for r in chunk]
        origins = [Origin(name, 0, start + i) for i in range(len(chunk))]
        yield RawBatch(values, origins)


def _is_null(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)
