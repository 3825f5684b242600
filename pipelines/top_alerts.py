"""The analyst's short lists: the top incidents, and the highest-ranked score records.

One home for the tables that ``secureai tail`` redraws live and ``secureai demo`` prints at the
end. :class:`IncidentView` keeps each incident's latest revision and shows the most severe in
words (``tail``'s default). :class:`TopAlerts` (``tail --events``) ranks records by
``combined_score`` when fingerprinting is on (model + entity baseline), else by
``anomaly_score``; reasons in words where a record has them (the fingerprint's ``text``), else
the model's ``field=value (z ...)``. The reading of one record (flagged, rank, reason text)
is ``morpheus_ext.stages.postprocess.alert_text``, shared with the HTML report.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from morpheus_ext.stages.postprocess.alert_text import flagged, rank, reason_text
from morpheus_ext.stages.postprocess.incidents import render_incidents

__all__ = ["IncidentView", "TopAlerts", "flagged", "rank", "reason_text", "render_top"]


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
        if "anomaly_score" not in record:
            return  # not a score record
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


class IncidentView:
    """The latest revision of every incident read so far; renders the ``size`` most severe.

    >>> view = IncidentView(5)
    >>> base = {"incident_id": "inc-1", "entities": ["u1"], "event_count": 1, "max_score": 3.5,
    ...         "combined_score": 1.2, "severity": "low", "first_seen": "2026-11-01T08:00:00Z",
    ...         "reasons": [{"field": "country", "text": "unusual country=RU", "events": 1}]}
    >>> view.add({**base, "revision": 1})
    >>> view.add({**base, "revision": 2, "event_count": 4, "severity": "medium"})
    >>> view.add({**base, "revision": 1})        # a replayed copy of an older revision
    >>> print(view.render().splitlines()[0])
    1 incidents from 4 flagged events (1 medium); top 1
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.latest: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        iid = record.get("incident_id")
        if not isinstance(iid, str) or "revision" not in record:
            return  # not an incident record
        self.seen += 1
        kept = self.latest.get(iid)
        if kept is None or record["revision"] >= kept["revision"]:
            self.latest[iid] = record

    def render(self) -> str:
        return render_incidents(list(self.latest.values()), self.size)
