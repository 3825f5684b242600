"""The report's analyst section: what each count means, the top alerts and incidents in words.

Why: the rest of the report answers "how good is the model?" (AUROC, PR curves, baselines).
An analyst opening it after ``secureai demo`` asks other questions: why are there 1,000
labelled anomalies but 1,400 events flagged by the model and 2,318 on the combined score,
which events should I look at first and why, and how many incidents is that? This module
builds that section's data from the labels, the scores and (when given) the score records and
incident dicts, and renders it as HTML fragments that :mod:`modelling.evaluation.report`
places at the top of the page. It computes nothing the pipeline does not already say: the
flags, ranks and reasons are the records' own (read with
:mod:`morpheus_ext.stages.postprocess.alert_text`, as ``secureai tail`` reads them).

Example (two events, one flagged by the model, no incidents):

>>> import numpy as np
>>> records = [
...     {"event_id": "e1", "entity": "alice", "anomaly_score": 0.2, "threshold": 1.0,
...      "is_anomaly": False, "reasons": []},
...     {"event_id": "e2", "entity": "bob", "anomaly_score": 3.0, "threshold": 1.0,
...      "is_anomaly": True, "reasons": [{"field": "country", "value": "BR", "z": 4.2}]},
... ]
>>> section = build_section(np.array([0, 1]), np.array([0.2, 3.0]), 1.0, records)
>>> [row.count for row in section.counts][:3]  # scored, labelled, flagged by the model
[2, 1, 1]
>>> section.top_alerts[0]["event_id"]
'e2'
>>> [heading for heading, _ in section.html_sections()]
['For analysts: what the counts mean', 'Top alerts', 'Top incidents']
>>> "no incidents given" in section.html_sections()[2][1].lower()
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelling.evaluation.metrics import compute_metrics
from morpheus_ext.stages.postprocess.alert_text import flagged, rank, reason_words
from morpheus_ext.stages.postprocess.incidents import SEVERITIES, incident_order

__all__ = ["TOP_N", "AnalystSection", "CountRow", "build_section", "top_incidents"]

TOP_N = 10
"""Alerts and incidents listed (as many as ``secureai demo`` prints)."""

COMBINED_NAME = "combined (model + entity)"
"""The combined score's name in tables and on the ROC/PR plots."""


@dataclass(frozen=True)
class CountRow:
    """One row of the counts table: what is counted, how many, and in one sentence what."""

    label: str
    count: int | float | None
    labelled: int | None
    """How many of the counted events are labelled anomalies (None: not known)."""
    meaning: str


@dataclass(frozen=True)
class AnalystSection:
    """The section's data; :meth:`html_sections` renders it."""

    counts: list[CountRow]
    top_alerts: list[dict[str, Any]]
    """Flagged records, highest rank first (combined score with fingerprinting)."""
    alert_labels: list[int | None]
    """Per top alert, its ground-truth label where records line up with the labels."""
    incidents: list[dict[str, Any]] | None
    """Top incidents, most severe first; None when no incidents were given."""
    fingerprint: bool
    """Whether the records carry per-entity baseline scores (``combined_score``)."""
    combined_scores: np.ndarray | None
    """Per event, aligned with the labels, when every record has a combined score."""
    score_metrics: dict[str, dict[str, Any]] | None
    """``{"model": ..., "combined": ...}`` AUROC/AUPRC/TPR@FPR, with combined scores."""
    records_given: bool

    def html_sections(self) -> list[tuple[str, str]]:
        """``(heading, escaped HTML body)`` per sub-section, in display order."""
        sections = [("For analysts: what the counts mean", _counts_html(self))]
        if self.score_metrics is not None:
            sections.append(("Model score and combined score", _score_metrics_html(self)))
        sections.append(("Top alerts", _alerts_html(self)))
        sections.append(("Top incidents", _incidents_html(self.incidents)))
        return sections


def build_section(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    records: Sequence[dict[str, Any]] | None = None,
    incidents: Sequence[dict[str, Any]] | None = None,
    model_metrics: Mapping[str, Any] | None = None,
    top_n: int = TOP_N,
) -> AnalystSection:
    """The analyst section for ``scores`` (one per labelled event) and, when given, the
    score records of the same events (same order: labels and records then line up) and the
    incidents built from them. ``model_metrics`` (``compute_metrics``' output for ``scores``)
    fills the model column beside the combined score's metrics."""
    y = np.asarray(y_true).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    recs = list(records) if records is not None else []
    aligned = records is not None and len(recs) == len(y)
    fingerprint = any(r.get("combined_score") is not None for r in recs)
    if records is not None:
        model_flags = np.array([bool(r.get("is_anomaly")) for r in recs], dtype=bool)
    elif threshold is not None:
        model_flags = s > float(threshold)
    else:
        model_flags = None
    combined_flags = np.array([flagged(r) for r in recs], dtype=bool) if fingerprint else None
    counts = _counts(y, model_flags, combined_flags, aligned or records is None, incidents)

    order = sorted((i for i, r in enumerate(recs) if flagged(r)), key=lambda i: -rank(recs[i]))
    top = order[:top_n]
    labels: list[int | None] = [int(y[i]) if aligned else None for i in top]

    combined = None
    score_metrics = None
    if aligned and fingerprint and all(r.get("combined_score") is not None for r in recs):
        combined = np.array([float(r["combined_score"]) for r in recs], dtype=np.float64)
        if 0 < y.sum() < len(y):
            model = dict(model_metrics) if model_metrics else compute_metrics(y, s)
            score_metrics = {"model": model, "combined": compute_metrics(y, combined)}
    return AnalystSection(
        counts=counts,
        top_alerts=[recs[i] for i in top],
        alert_labels=labels,
        incidents=top_incidents(incidents, top_n) if incidents is not None else None,
        fingerprint=fingerprint,
        combined_scores=combined,
        score_metrics=score_metrics,
        records_given=records is not None,
    )


def _counts(
    y: np.ndarray,
    model_flags: np.ndarray | None,
    combined_flags: np.ndarray | None,
    aligned: bool,
    incidents: Sequence[dict[str, Any]] | None,
) -> list[CountRow]:
    """The counts table: every number the report and the demo print, each explained."""

    def labelled(flags: np.ndarray | None) -> int | None:
        return int((flags & (y == 1)).sum()) if flags is not None and aligned else None

    def total(flags: np.ndarray | None) -> int | None:
        return int(flags.sum()) if flags is not None else None

    rows = [
        CountRow(
            "Events scored",
            len(y),
            int(y.sum()),
            "Events the featurizer accepted and the model scored; everything below is a "
            "subset of these.",
        ),
        CountRow(
            "Labelled anomalies (ground truth)",
            int(y.sum()),
            int(y.sum()),
            "Events whose label marks them as attacks (known for synthetic or labelled data, "
            "never in production); the metrics below are measured against these.",
        ),
        CountRow(
            "Flagged by the model (is_anomaly)",
            total(model_flags),
            labelled(model_flags),
            "Events whose anomaly score is above the model's threshold, calibrated to a small "
            "false-positive rate on normal data: it includes false positives and misses the "
            "labelled anomalies that score below it.",
        ),
        CountRow(
            "Flagged on the combined score (combined_anomaly)",
            total(combined_flags),
            labelled(combined_flags),
            "Events flagged by the model, plus those whose combined score (model score and how "
            "new the event is for its own user or host) is above the threshold learned from "
            "the stream; never fewer than the model's."
            if combined_flags is not None
            else "Per-entity baselines (fingerprinting) were off: the records have no "
            "combined score.",
        ),
    ]
    if incidents is None:
        rows.append(CountRow("Incidents", None, None, "No incidents given."))
        return rows
    events = [int(i.get("event_count") or 0) for i in incidents]
    rows.append(
        CountRow(
            "Incidents",
            len(incidents),
            None,
            "Groups of flagged events that belong together (same entity or shared source "
            "address, close in time): one ticket each, what an analyst triages instead of "
            "single events.",
        )
    )
    mean = sum(events) / len(events) if events else None
    largest = max(events, default=0)
    rows.append(
        CountRow(
            "Flagged events per incident (mean)",
            mean,
            None,
            f"Flagged events grouped into one incident on average (largest: {largest:,}): "
            "how many single alerts one incident stands for.",
        )
    )
    return rows


def top_incidents(incidents: Sequence[dict[str, Any]], n: int = TOP_N) -> list[dict[str, Any]]:
    """The ``n`` incidents to read first, in the order ``secureai tail`` and the demo's
    ``top_incidents.txt`` list them (``incident_order``: most severe, then the highest
    combined score). Missing optional keys rank last rather than failing.

    >>> top_incidents([{"severity": "low", "combined_score": 9.0},
    ...                {"severity": "high", "combined_score": 2.0}], 1)[0]["severity"]
    'high'
    """

    def key(inc: dict[str, Any]) -> tuple[Any, ...]:
        severity = inc.get("severity")
        score = inc.get("combined_score")
        return incident_order(
            {
                "severity": severity if severity in SEVERITIES else SEVERITIES[0],
                "combined_score": float(score) if isinstance(score, int | float) else -math.inf,
                "incident_id": str(inc.get("incident_id") or ""),
            }
        )

    return sorted(incidents, key=key)[:n]


# --------------------------------------------------------------------------- HTML


def _counts_html(section: AnalystSection) -> str:
    head = _tr(["Count", "Events", "Of them labelled anomalies", "What it counts"], "th")
    rows = "".join(
        _tr([_esc(r.label), _fmt_count(r.count), _fmt(r.labelled), _esc(r.meaning)], num=(1, 2))
        for r in section.counts
    )
    note = (
        '<p class="note">A flagged event that is not a labelled anomaly is a false positive; '
        "a labelled anomaly that is not flagged is a miss. Alerts are ranked by the combined "
        "score when it exists, else by the model's score.</p>"
    )
    return f"<table>{head}{rows}</table>{note}"


def _score_metrics_html(section: AnalystSection) -> str:
    assert section.score_metrics is not None
    model, combined = section.score_metrics["model"], section.score_metrics["combined"]
    rows = [("AUROC", "auroc"), ("AUPRC (average precision)", "auprc")]
    body = "".join(
        _tr([_esc(label), _fmt(model.get(key)), _fmt(combined.get(key))], num=(1, 2))
        for label, key in rows
    )
    for fpr, value in (model.get("tpr_at_fpr") or {}).items():
        other = (combined.get("tpr_at_fpr") or {}).get(fpr)
        body += _tr(
            [_esc(f"TPR @ {float(fpr) * 100:g}% FPR"), _fmt(value), _fmt(other)], num=(1, 2)
        )
    head = _tr(["Metric", "Model score", _esc(COMBINED_NAME)], "th")
    note = (
        '<p class="note">The combined score adds how unusual the event is for its own entity '
        "(per-entity baselines) to the model's score; its curves are on the ROC and PR plots "
        "below.</p>"
    )
    return f"<table>{head}{body}</table>{note}"


def _alerts_html(section: AnalystSection) -> str:
    if not section.records_given:
        return '<p class="note">No score records given: the top alerts need them.</p>'
    if not section.top_alerts:
        return '<p class="note">No event was flagged.</p>'
    by = "combined score (model + entity baseline)" if section.fingerprint else "model score"
    cells = ["#", "Entity", "Event", "Event time", "Model score", "Score / threshold"]
    if section.fingerprint:
        cells += ["Combined score", "Entity score"]
    has_labels = any(label is not None for label in section.alert_labels)
    if has_labels:
        cells.append("Labelled")
    cells.append("Why (reasons in words)")
    rows = [_tr(cells, "th")]
    for i, (rec, label) in enumerate(zip(section.top_alerts, section.alert_labels, strict=True)):
        row = [
            str(i + 1),
            _esc(str(rec.get("entity"))),
            _esc(str(rec.get("event_id"))),
            _esc(str(rec.get("event_time") or "")),
            _fmt(rec.get("anomaly_score")),
            _fmt(_over_threshold(rec)),
        ]
        if section.fingerprint:
            row += [_fmt(rec.get("combined_score")), _fmt(rec.get("entity_score"))]
        if has_labels:
            row.append("&mdash;" if label is None else ("anomaly" if label else "normal"))
        row.append(_esc(reason_words(rec)))
        rows.append(_tr(row, num=(0, 4, 5, 6, 7) if section.fingerprint else (0, 4, 5)))
    note = (
        f'<p class="note">The {len(section.top_alerts)} highest-ranked flagged events, by {by}. '
        "Model score: reconstruction error; above 1 times the threshold the model flags it. "
        "Entity score: how "
        "new the event's values are for this user or host (nats; empty while the entity has "
        "too little history).</p>"
    )
    return "<table>" + "".join(rows) + "</table>" + note


def _over_threshold(rec: dict[str, Any]) -> float | None:
    """``anomaly_score / threshold`` (as an incident's ``max_score``): 1 is the threshold."""
    score, threshold = rec.get("anomaly_score"), rec.get("threshold")
    if not isinstance(score, int | float) or not isinstance(threshold, int | float):
        return None
    return float(score) / float(threshold) if threshold > 0 else None


def _incidents_html(incidents: Sequence[dict[str, Any]] | None) -> str:
    if incidents is None:
        return '<p class="note">No incidents given.</p>'
    if not incidents:
        return '<p class="note">No incidents: no flagged events were grouped.</p>'
    cells = ["Severity", "Entities", "Site", "First seen", "Last seen", "Events"]
    rows = [_tr([*cells, "Top reasons", "Max score", "Combined", "Leakage"], "th")]
    for inc in incidents:
        rows.append(
            _tr(
                [
                    _esc(f"{inc.get('severity') or '?'} ({inc.get('status') or '?'})"),
                    _esc(", ".join(str(e) for e in inc.get("entities") or [])),
                    _site(inc),
                    _esc(str(inc.get("first_seen") or "")),
                    _esc(str(inc.get("last_seen") or "")),
                    _fmt(inc.get("event_count")),
                    _incident_reasons(inc),
                    _fmt(inc.get("max_score")),
                    _fmt(inc.get("combined_score")),
                    _esc(", ".join(sorted({str(x.get("type")) for x in inc.get("leakage") or []}))),
                ],
                num=(5, 7, 8),
            )
        )
    note = (
        '<p class="note">Most severe first, then by combined score (the worst '
        "event's rank plus the log of the event count). Max score: the worst event's "
        "anomaly score divided by the threshold (1 is the threshold).</p>"
    )
    return "<table>" + "".join(rows) + "</table>" + note


def _site(inc: dict[str, Any]) -> str:
    site = _esc(str(inc.get("site") or "")) or "&mdash;"
    campaign = inc.get("campaign")
    if isinstance(campaign, dict):
        site += _esc(f" (campaign across {campaign.get('sites', '?')} sites)")
    return site


def _incident_reasons(inc: dict[str, Any], limit: int = 3) -> str:
    parts = []
    for reason in (inc.get("reasons") or [])[:limit]:
        text = reason.get("text") or reason.get("field") or "?"
        events = reason.get("events")
        parts.append(_esc(str(text)) + (f" ({_fmt(events)} events)" if events else ""))
    return "<br>".join(parts) or "&mdash;"


def _tr(cells: Sequence[str], tag: str = "td", num: Sequence[int] = ()) -> str:
    """One row of already-escaped cells; the ``num`` columns right-aligned (numbers)."""
    parts = [
        f'<{tag} class="num">{c}</{tag}>' if tag == "td" and i in num else f"<{tag}>{c}</{tag}>"
        for i, c in enumerate(cells)
    ]
    return f"<tr>{''.join(parts)}</tr>"


def _fmt(value: Any) -> str:
    """Escaped cell text: thousands separators, 4 significant decimals, None as a dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 else f"{v:.4g}"
    return _esc(str(value))


def _fmt_count(value: int | float | None) -> str:
    """A count, or a mean of counts to one decimal."""
    return f"{value:,.1f}" if isinstance(value, float) else _fmt(value)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
