"""The analyst's short list: the highest-ranked score records of a stream, with their reasons.

One home for the table that ``secureai tail`` redraws live and ``secureai demo`` prints at the
end: records ranked by ``combined_score`` when fingerprinting is on (model + entity baseline),
else by ``anomaly_score``; reasons in words where a record has them (the fingerprint's
``text``), else the model's ``field=value (z ...)``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any


def flagged(record: dict[str, Any]) -> bool:
    """Flagged by the model or, with fingerprinting, by the combined score."""
    return bool(record.get("is_anomaly") or record.get("combined_anomaly"))


def rank(record: dict[str, Any]) -> float:
    """``combined_score`` with fingerprinting (model + entity), else ``anomaly_score``."""
    combined = record.get("combined_score")
    return float(combined if combined is not None else record["anomaly_score"])


def reason_text(record: dict[str, Any]) -> str:
    """The fingerprint's words where the record has them (its top two reasons), else the
    model's reasons as ``field=value (z ...)``."""
    reasons = record.get("reasons") or []
    said = [r["text"] for r in reasons[:2] if isinstance(r.get("text"), str)]
    if said:
        return " | ".join(said)
    parts = []
    for r in reasons:
        value = r.get("value")
        parts.append(f"{r.get('field')}={'?' if value is None else value} (z {r.get('z', 0):.1f})")
    return ", ".join(parts)


def render_top(top: list[tuple[float, int, dict[str, Any]]], seen: int, anomalies: int) -> str:
    """The table: highest first, with the reasons."""
    entity = any(rec.get("combined_score") is not None for _, _, rec in top)
    lines = [
        f"{seen} score records, {anomalies} anomalous; top {len(top)} by "
        + ("combined score (model + entity baseline)" if entity else "anomaly score"),
        f"{'score':>10} {'thresh':>8} "
        + (f"{'combined':>8} " if entity else "")
        + f"{'flag':>4}  {'entity':<18} {'event_id':<18} reasons",
    ]
    for _, _, rec in sorted(top, key=lambda t: (-t[0], t[1])):
        combined = rec.get("combined_score")
        lines.append(
            f"{rec.get('anomaly_score', 0.0):>10.4g} {rec.get('threshold', 0.0):>8.4g} "
            + (f"{'-' if combined is None else f'{combined:.2f}':>8} " if entity else "")
            + f"{'!' if flagged(rec) else '':>4}  {str(rec.get('entity'))[:18]:<18} "
            f"{str(rec.get('event_id'))[:18]:<18} {reason_text(rec)}"
        )
    return "\n".join(lines)


class TopAlerts:
    """The ``size`` highest-ranked records seen (a bounded heap; ties: the earliest first)."""

    def __init__(self, size: int, anomalies_only: bool = False) -> None:
        self.size = size
        self.anomalies_only = anomalies_only
        self.seen = 0
        self.anomalies = 0
        self._top: list[tuple[float, int, dict[str, Any]]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.seen += 1
        alert = flagged(record)
        self.anomalies += alert
        if self.anomalies_only and not alert:
            return
        item = (rank(record), -self.seen, record)
        if len(self._top) < self.size:
            heapq.heappush(self._top, item)
        elif item[:2] > self._top[0][:2]:
            heapq.heapreplace(self._top, item)

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.add(record)

    def render(self) -> str:
        top = [(score, -order, rec) for score, order, rec in self._top]
        return render_top(top, self.seen, self.anomalies)
