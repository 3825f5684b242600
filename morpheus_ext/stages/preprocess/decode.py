"""Decoding raw bytes into a DataFrame, rejecting what cannot be an event.

The common case (every value one JSON object per line, flat scalar fields) is decoded column-wise
by Arrow's JSON reader in one call; anything it cannot vouch for sends the whole batch down the
per-value ``orjson`` path, which finds and names the bad values (same frame, same rejects).

Featurization (the second half of preprocessing) is
:class:`morpheus_ext.stages.preprocess.featurizer.Featurizer`.

Example:

>>> from morpheus_ext.stages.input.sources import Origin, RawBatch
>>> raw = RawBatch([b'{"user": "alice"}', b"not json"], [Origin("t", 0, 0), Origin("t", 0, 1)])
>>> decoded = decode_batch(raw)
>>> decoded.frame["user"].tolist(), [(r.position, r.reason[:12]) for r in decoded.rejects]
(['alice'], [(1, 'invalid JSON')])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from morpheus_ext.stages.input.sources import RawBatch
from morpheus_ext.stages.preprocess.featurizer import Reject

DEFAULT_MAX_EVENT_BYTES = 256 * 1024


@dataclass
class DecodedBatch:
    """Rows that decoded to JSON objects; ``positions`` index into the raw batch."""

    frame: pd.DataFrame
    positions: np.ndarray
    rejects: list[Reject] = field(default_factory=list)


def decode_batch(
    raw: RawBatch,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    string_columns: tuple[str, ...] = (),
) -> DecodedBatch:
    """Decode each value; empty, oversized, non-UTF-8, non-JSON or non-object -> reject.

    ``string_columns`` (e.g. the spec's timestamp) are read as text by the columnar path, which
    would otherwise turn ISO-looking strings into Arrow timestamps (and fall back).
    """
    frame = _decode_columnar(raw.values, max_event_bytes, string_columns)
    if frame is not None:
        return DecodedBatch(frame, np.arange(len(raw.values), dtype=np.int64))
    return decode_values(raw, max_event_bytes)


def decode_values(raw: RawBatch, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> DecodedBatch:
    """The per-value path: orjson-decode each value, reject (with a reason) what fails."""
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    rejects: list[Reject] = []
    for i, value in enumerate(raw.values):
        reason = None
        if not value:
            reason = "empty message"
        elif len(value) > max_event_bytes:
            reason = f"event of {len(value)} bytes exceeds the {max_event_bytes}-byte limit"
        else:
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                reason = _json_reason(value, exc)
            else:
                if isinstance(doc, dict):
                    rows.append(doc)
                    positions.append(i)
                    continue
                reason = f"expected a JSON object, got {type(doc).__name__}"
        rejects.append(Reject(i, reason))
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    return DecodedBatch(frame, np.asarray(positions, dtype=np.int64), rejects)


def _json_reason(value: bytes, exc: Exception) -> str:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"invalid UTF-8 at byte {err.start}"
    return f"invalid JSON: {str(exc).splitlines()[0][:120]}"


_PLAIN_TYPES = (pa.types.is_string, pa.types.is_int64, pa.types.is_float64, pa.types.is_boolean)
_READ_OPTIONS = pa_json.ReadOptions(use_threads=False, block_size=1 << 26)
_INT64_LIMIT = 2.0**63


def _decode_columnar(
    values: list[bytes], max_event_bytes: int, string_columns: tuple[str, ...]
) -> pd.DataFrame | None:
    """All values as one newline-delimited Arrow JSON read, or None where it cannot vouch.

    None (-> the per-value path) unless: every value is non-empty, within the size limit, starts
    with ``{`` and ends with ``}`` and holds no line break (so one value is exactly one line and
    one row); Arrow parses all of it into exactly ``len(values)`` rows; every column is a plain
    string/int64/float64/bool/null (nested values, inferred timestamps -> fallback); no float
    is NaN/Infinity (literals orjson refuses) or an integer beyond int64 (orjson keeps those as
    Python ints); strings are valid UTF-8 (checked when they become Python strings). Arrow
    refuses duplicate keys and raw control characters itself.
    """
    n = len(values)
    if n == 0:
        return None
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    if lengths.min() < 2 or lengths.max() > max_event_bytes:
        return None
    joined = b"\n".join(values)
    if joined.count(b"\n") != n - 1 or b"\r" in joined:
        return None
    buf = np.frombuffer(joined, dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    if not (np.all(buf[starts] == 0x7B) and np.all(buf[starts + lengths - 1] == 0x7D)):
        return None
    parse = pa_json.ParseOptions(
        explicit_schema=pa.schema([(c, pa.string()) for c in string_columns])
        if string_columns
        else None,
        unexpected_field_behavior="infer",
    )
    try:
        table = pa_json.read_json(pa.py_buffer(joined), _READ_OPTIONS, parse)
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != n:
        return None
    keep = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_null(kind):
            keep.append(name)
            continue
        if not any(check(kind) for check in _PLAIN_TYPES):
            return None
        if name in string_columns and column.null_count == n:
            continue  # given in no row: absent, as the per-value path has it
        if pa.types.is_float64(kind) and not _json_floats(column):
            return None
        keep.append(name)
    if string_columns:  # Arrow puts given columns first; pandas orders by first appearance
        try:
            first_row = list(orjson.loads(values[0]))
        except orjson.JSONDecodeError:
            return None
        seen = set(first_row)
        if any(c in keep and c not in seen for c in string_columns):
            return None
        keep = [c for c in first_row if c in keep] + [c for c in keep if c not in seen]
    if keep != table.column_names:
        table = table.select(keep)
    try:  # the reader does not check UTF-8 inside strings; making Python strings does
        return table.to_pandas()
    except (pa.ArrowException, UnicodeDecodeError):
        return None


def _json_floats(column: pa.ChunkedArray) -> bool:
    """No NaN/Infinity literal (Arrow reads them, orjson refuses) and no |value| >= 2**63."""
    with np.errstate(invalid="ignore"):
        size = np.abs(column.to_numpy(zero_copy_only=False))  # nulls -> NaN
        return bool(
            np.count_nonzero(np.isnan(size)) == column.null_count
            and not np.any(size >= _INT64_LIMIT)
        )
