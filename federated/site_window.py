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
3. **what the served model flags is left out, unless it is organisation-wide**: a row the
   served version flagged (score above its threshold) is trimmed, except when its *pattern* is
   widespread. A pattern is the field that contributed most to the row's score (stored with the
   row) and, for a categorical field, the row's value of it (``dst_app=ai-assistant``); for a
   numeric or time field, just the field. A pattern carried by at least ``org_wide_fraction``
   (10%) of the window's entities *and* by at least ``org_wide_min_share`` (2%) of its rows is
   an organisation-wide change of behaviour (a new app or egress country adopted by a third of
   users is ~10% of events): kept, so the next model learns it. A rare attack campaign is
   either concentrated on few entities or a small share of the events (an exfiltration from
   dozens of hosts is well under 1% of them): trimmed, so it is not learned as normal, however
   it scores next to the change. The top field alone misses part of a change (a new app's
   login can score highest on its device when the combination is what is new), so a flagged
   row that *carries* an organisation-wide new categorical value is kept too: a value most of
   whose rows are flagged (``org_wide_flag_share``), equally widespread. ``trim: quantile``
   instead drops the top ``trim_fraction`` by score (simpler; it fails when an organisation-wide
   change outscores a campaign, as a never-seen app does). An attack spread over more entities
   than ``org_wide_fraction`` can enter training; the gate's canaries then stand between it
   and serving (:mod:`federated.gate`).

Held-out rows are drawn first (seeded, ``holdout_fraction`` of the rows that are not confirmed
incidents) and are *not* trimmed: the site's gate calibrates the candidate and judges it on
traffic as the site sees it (a threshold calibrated on trimmed rows, which lack the served
model's own false positives, would flag about twice its target once serving). What the trim
rule *would* leave out of them, beyond the served version's own false-positive rate, is taken
to be attacks (``holdout_suspect_share``): the site's publisher sets the candidate's threshold
so that they do not use up its false-positive budget (``contamination``). The training rows
are the other rows, trimmed as above; no held-out row is ever trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.output.training_window import read_window
from morpheus_ext.stages.preprocess.decode import decode_batch
from morpheus_ext.stages.preprocess.featurizer import Featurizer, canonical_str


class WindowTooSmall(SecureAIError, RuntimeError):
    """The site's window has too few usable rows for a run (message: how many, from where)."""


class WindowSelection(StrictModel):
    """``window:`` of a federated config whose sites train on their training windows."""

    hours: float = Field(default=24.0, gt=0)
    """Arrivals this many hours before the run's start."""
    max_rows: int = Field(default=50_000, ge=100)
    """The newest rows at most (bounds a round's DP-SGD time)."""
    trim: Literal["flagged", "quantile"] = "flagged"
    """``flagged``: leave out what the served model flagged unless it is organisation-wide;
    ``quantile``: leave out the top ``trim_fraction`` by score."""
    org_wide_fraction: float = Field(default=0.1, gt=0, le=1)
    """``flagged``: a pattern seen at this share of the window's entities ...``"""
    org_wide_min_share: float = Field(default=0.02, ge=0, le=1)
    """... and in at least this share of the window's rows is organisation-wide: kept."""
    org_wide_flag_share: float = Field(default=0.5, gt=0, le=1)
    """``flagged``: a categorical value is *new behaviour* when at least this share of the
    rows carrying it are flagged (and it is as widespread as above); every flagged row that
    carries it is kept, whatever field scored highest."""
    trim_fraction: float = Field(default=0.02, ge=0, lt=0.5)
    """``quantile``: share of the highest-scoring rows left out of training."""
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


def _patterns(
    window: pd.DataFrame, frame: pd.DataFrame, spec: FeatureSpec, rows: np.ndarray
) -> pd.Series:
    """``field=value`` (categorical) or ``field`` (numeric, time) of each row in ``rows``."""
    fields = spec.layout.fields
    out = []
    for i in rows:
        f = int(window["top_field"].iat[i])
        if not 0 <= f < len(fields):
            out.append("?")
            continue
        slot = fields[f]
        if slot.kind == "categorical" and slot.name in frame:
            out.append(f"{slot.name}={canonical_str(frame[slot.name].iat[i])}")
        else:
            out.append(slot.name)
    return pd.Series(out, index=rows, dtype=object)


def _new_values(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    entities: pd.Series,
    keep: np.ndarray,
    flagged: np.ndarray,
    n_entities: int,
    selection: WindowSelection,
) -> tuple[np.ndarray, dict[str, float]]:
    """Rows that carry an organisation-wide *new* categorical value, and those values.

    The top field alone misses part of a change: a new app's logins are flagged because of the
    app, but the field that contributed most to a row's error can be another one (its device,
    its result) when the combination is what is unusual. A value most of whose rows are flagged
    (``org_wide_flag_share``), carried by ``org_wide_fraction`` of the entities in
    ``org_wide_min_share`` of the rows, is new behaviour, not an attack: a campaign is
    concentrated on few entities or a small share of the rows; a common value
    (``result=success``) is not mostly flagged.
    """
    carries = np.zeros(len(frame), bool)
    found: dict[str, float] = {}
    n_rows = max(1, int(keep.sum()))
    ent = entities.to_numpy()
    for slot in spec.layout.fields:
        if slot.kind != "categorical" or slot.name not in frame or slot.name in spec.entity:
            continue
        values = frame[slot.name].map(canonical_str).to_numpy(dtype=object)
        by = pd.DataFrame({"v": values[keep], "f": flagged[keep], "e": ent[keep]})
        stats = by.groupby("v").agg(n=("f", "size"), flagged=("f", "sum"))
        stats = stats[
            (stats["flagged"] >= stats["n"] * selection.org_wide_flag_share)
            & (stats["n"] >= n_rows * selection.org_wide_min_share)
        ]
        if stats.empty:
            continue
        spread = by[by["f"] & by["v"].isin(stats.index)].groupby("v")["e"].nunique() / n_entities
        for value, frac in spread[spread >= selection.org_wide_fraction].items():
            found[f"{slot.name}={value}"] = round(float(frac), 3)
            carries |= values == value
    return carries, found


def select_rows(
    window: pd.DataFrame,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    selection: WindowSelection,
    excluded: set[str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Steps 2-3 of the module doc: a mask of the rows that enter the run, and the counts.

    ``window`` has :func:`read_window`'s columns, ``frame`` the same rows decoded.

    >>> import numpy as np, pandas as pd
    >>> from morpheus_ext.feature_spec import load_spec
    >>> spec = load_spec("security_events")
    >>> app = [f.name for f in spec.layout.fields].index("dst_app")
    >>> frame = pd.DataFrame({"user": [f"u{i}" for i in range(40)],
    ...                       "dst_app": ["new-app"] * 10 + ["evil"] * 2 + ["mail"] * 28})
    >>> window = pd.DataFrame({"event_id": [f"e{i}" for i in range(40)],
    ...                        "score": [5.0] * 12 + [0.1] * 28, "threshold": 1.0,
    ...                        "top_field": app})
    >>> keep, info = select_rows(window, frame, spec, WindowSelection(), {"e39"})
    >>> int(keep.sum()), info["trimmed"], info["org_wide_kept"], info["excluded"]
    (37, 2, 10, 1)
    """
    excluded_mask = window["event_id"].isin(excluded).to_numpy() if excluded else None
    keep = np.ones(len(window), bool) if excluded_mask is None else ~excluded_mask
    info: dict[str, Any] = {
        "window_rows": len(window),
        "excluded": int(0 if excluded_mask is None else excluded_mask.sum()),
        "trim": selection.trim,
    }
    if selection.trim == "quantile":
        scores = np.asarray(window["score"], dtype=np.float64)
        cutoff = (
            float(np.quantile(scores[keep], 1.0 - selection.trim_fraction))
            if selection.trim_fraction > 0 and keep.any()
            else float("inf")
        )
        trimmed = keep & (scores > cutoff)
        info.update({"trimmed": int(trimmed.sum()), "trim_score_cutoff": cutoff})
    else:
        scores = np.asarray(window["score"], dtype=np.float64)
        flagged = keep & (scores > np.asarray(window["threshold"], dtype=np.float64))
        entities = Featurizer(spec).entities(frame)
        n_entities = max(1, entities[keep].nunique())
        rows = np.flatnonzero(flagged)
        patterns = _patterns(window, frame, spec, rows)
        grouped = entities.iloc[rows].groupby(patterns.to_numpy())
        spread = grouped.nunique() / n_entities
        share = grouped.size() / max(1, int(keep.sum()))
        wide = (spread >= selection.org_wide_fraction) & (share >= selection.org_wide_min_share)
        org_wide = patterns.map(wide).to_numpy(dtype=bool)
        carries_new, new_values = _new_values(
            frame, spec, entities, keep, flagged, n_entities, selection
        )
        org_wide |= carries_new[rows]
        trimmed = np.zeros(len(window), bool)
        trimmed[rows[~org_wide]] = True
        top = spread[wide].sort_values(ascending=False)
        info.update(
            {
                "flagged": len(rows),
                "org_wide_kept": int(org_wide.sum()),
                "trimmed": int(trimmed.sum()),
                "org_wide_patterns": {k: round(float(v), 3) for k, v in top.head(5).items()},
                "org_wide_new_values": new_values,
            }
        )
    keep &= ~trimmed
    info["kept"] = int(keep.sum())
    return keep, info


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
    if len(window) > selection.max_rows:
        window = window.iloc[-selection.max_rows :].reset_index(drop=True)
    decoded = decode_events(window["event"].tolist(), spec)
    keep, info = select_rows(
        window, decoded, spec, selection, read_excluded_ids(selection.exclude_event_ids)
    )
    # Held-out rows are drawn before the trim, from everything but confirmed incidents: the
    # gate calibrates and judges on traffic as the site sees it (a threshold calibrated on
    # trimmed rows would flag more than its target once serving).
    holdout = np.zeros(len(window), bool)
    candidates = np.flatnonzero(
        ~window["event_id"].isin(read_excluded_ids(selection.exclude_event_ids)).to_numpy()
    )
    order = np.random.default_rng(seed).permutation(candidates)
    holdout[order[: round(len(order) * selection.holdout_fraction)]] = True
    train = keep & ~holdout
    if int(train.sum()) < selection.min_rows:
        raise WindowTooSmall(
            f"the training window {window_dir} has {int(train.sum())} usable training rows in "
            f"the {selection.hours:g} h before {until:%Y-%m-%dT%H:%M:%SZ} (need "
            f"{selection.min_rows}; {info['excluded']} excluded, {info['trimmed']} trimmed, "
            f"{int(holdout.sum())} held out)"
        )
    suspects = holdout & ~keep  # held-out rows the trim rule would have left out
    info.update(
        {
            "until": until.isoformat(timespec="seconds"),
            "train": int(train.sum()),
            "holdout": int(holdout.sum()),
            "holdout_suspect_share": float(suspects.sum() / max(1, holdout.sum())),
        }
    )
    return SiteRows(
        decoded[train].reset_index(drop=True), decoded[holdout].reset_index(drop=True), info
    )
