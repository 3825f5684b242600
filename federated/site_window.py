"""What a site trains on: its own training window, read as of the run's start, minus what must
not be learned as normal.

The pipeline keeps *every* scored event (:mod:`morpheus_ext.stages.output.training_window`);
this module decides, when a run reads the window, which of them enter training. The decision
(docs/loop.md, "What enters training"):

1. **the run's snapshot**: rows that arrived in the ``hours`` before the run started (every
   message of a run reads the same rows: DP accounting assumes a fixed dataset), newest
   ``max_rows`` at most, each event id once;
2. **analyst-confirmed incidents are excluded**: a file of event ids (one per line, ``#``
   comments) that the SOC maintains;
3. **the highest-scoring tail is trimmed**: the top ``trim_fraction`` of rows by the score the
   served model gave them. A rare attack burst sits in that tail and is not learned as normal.
   An organisation-wide change of behaviour (a new app or egress country adopted by a third of
   users) is far larger than the tail: most of it stays, so the next model learns it. The trim
   is a quantile, not a threshold, so it cannot remove more than ``trim_fraction`` even when
   the served model flags a quarter of the stream after such a change. An attack share larger
   than ``trim_fraction`` can enter training; the gate's canaries then stand between it and
   serving (:mod:`federated.gate`).

The rows that remain are split, seeded, into the site's training rows and held-out rows; the
held-out rows are never trained on and are what the site's gate calibrates and gates on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.output.training_window import read_window
from morpheus_ext.stages.preprocess.decode import decode_batch


class WindowTooSmall(SecureAIError, RuntimeError):
    """The site's window has too few usable rows for a run (message: how many, from where)."""


class WindowSelection(StrictModel):
    """``window:`` of a federated config whose sites train on their training windows."""

    hours: float = Field(default=24.0, gt=0)
    """Arrivals this many hours before the run's start."""
    max_rows: int = Field(default=50_000, ge=100)
    """The newest rows at most (bounds a round's DP-SGD time)."""
    trim_fraction: float = Field(default=0.02, ge=0, lt=0.5)
    """Share of the highest-scoring rows left out of training."""
    exclude_event_ids: Path | None = None
    """Analyst-confirmed incidents: a file of event ids, one per line."""
    holdout_fraction: float = Field(default=0.3, gt=0, lt=0.9)
    """Rows never trained on: the site's validation loss and its gate (calibration + gate)."""
    min_rows: int = Field(default=500, ge=10)


@dataclass
class SiteRows:
    """A site's events for one run: what it trains on and what it holds out (raw frames)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    info: dict[str, Any]


def read_excluded_ids(path: Path | None) -> set[str]:
    """Event ids in ``path`` (blank lines and ``#`` comments ignored); empty without a file."""
    if path is None:
        return set()
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return {line for line in lines if line}


def select_rows(
    window: pd.DataFrame, selection: WindowSelection, excluded: set[str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Steps 1-3 of the module doc on a window frame (``read_window``'s columns).

    >>> frame = pd.DataFrame({"event_id": [f"e{i}" for i in range(100)],
    ...                       "score": np.arange(100, dtype=np.float32)})
    >>> kept, info = select_rows(frame, WindowSelection(trim_fraction=0.05), {"e3"})
    >>> len(kept), float(kept["score"].max()), info["excluded"], info["trimmed"]
    (94, 94.0, 1, 5)
    """
    n_window = len(window)
    if len(window) > selection.max_rows:
        window = window.iloc[-selection.max_rows :]
    confirmed = window["event_id"].isin(excluded) if excluded else np.zeros(len(window), bool)
    rows = window[~np.asarray(confirmed)]
    cutoff = float("inf")
    if selection.trim_fraction > 0 and len(rows):
        cutoff = float(np.quantile(rows["score"], 1.0 - selection.trim_fraction))
        rows_kept = rows[rows["score"] < cutoff]
        # ties at the cutoff: keep them rather than trimming more than asked
        if len(rows_kept) < len(rows) * (1 - selection.trim_fraction) - 1:
            rows_kept = rows[rows["score"] <= cutoff]
    else:
        rows_kept = rows
    info = {
        "window_rows": n_window,
        "considered": len(window),
        "excluded": int(np.asarray(confirmed).sum()),
        "trimmed": len(rows) - len(rows_kept),
        "trim_score_cutoff": cutoff if np.isfinite(cutoff) else None,
        "kept": len(rows_kept),
    }
    return rows_kept.reset_index(drop=True), info


def decode_events(values: list[bytes], spec: FeatureSpec) -> pd.DataFrame:
    """The window's event bytes as the pipeline decodes them (same stage, same columns)."""
    raw = RawBatch(list(values), [Origin("window", 0, i) for i in range(len(values))])
    string_columns = (spec.timestamp,) if spec.timestamp else ()
    decoded = decode_batch(raw, string_columns=string_columns)
    return decoded.frame.reset_index(drop=True)


def load_site_rows(
    window_dir: Path,
    spec: FeatureSpec,
    selection: WindowSelection,
    until: datetime | None,
    seed: int,
) -> SiteRows:
    """The site's rows for a run that started at ``until`` (default: now)."""
    until = until or datetime.now(UTC)
    window = read_window(window_dir, hours=selection.hours, now=until, until=until)
    kept, info = select_rows(window, selection, read_excluded_ids(selection.exclude_event_ids))
    if len(kept) < selection.min_rows:
        raise WindowTooSmall(
            f"the training window {window_dir} has {len(kept)} usable rows in the "
            f"{selection.hours:g} h before {until:%Y-%m-%dT%H:%M:%SZ} (need "
            f"{selection.min_rows}; {info['excluded']} excluded, {info['trimmed']} trimmed)"
        )
    frame = decode_events(kept["event"].tolist(), spec)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = round(len(frame) * (1 - selection.holdout_fraction))
    info.update(
        {"until": until.isoformat(timespec="seconds"), "train": cut, "holdout": len(frame) - cut}
    )
    return SiteRows(
        frame.iloc[np.sort(order[:cut])].reset_index(drop=True),
        frame.iloc[np.sort(order[cut:])].reset_index(drop=True),
        info,
    )
