"""Decoding raw bytes into a DataFrame, rejecting what cannot be an event.

Featurization (the second half of preprocessing) is :class:`morpheus_ext.featurizer.Featurizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from morpheus_ext.featurizer import Reject
from morpheus_ext.stages.input import RawBatch

DEFAULT_MAX_EVENT_BYTES = 256 * 1024


@dataclass
class DecodedBatch:
    """Rows that decoded to JSON objects; ``positions`` index into the raw batch."""

    frame: pd.DataFrame
    positions: np.ndarray
    rejects: list[Reject] = field(default_factory=list)


def decode_batch(raw: RawBatch, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> DecodedBatch:
    """orjson-decode each value; empty, oversized, non-UTF-8, non-JSON or non-object -> reject."""
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
