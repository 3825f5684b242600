"""The short list shared by ``secureai tail`` and ``secureai demo``."""

from __future__ import annotations

from typing import Any

from pipelines.top_alerts import TopAlerts


def _record(i: int, score: float, combined: float | None = None, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": f"evt-{i}",
        "entity": "alice",
        "anomaly_score": score,
        "threshold": 1.0,
        "is_anomaly": score > 1.0,
        "reasons": [{"field": "country", "value": "BR", "z": score}],
        **extra,
    }
    if combined is not None:
        rec["combined_score"] = combined
    return rec


def test_keeps_the_highest_and_the_earliest_of_ties() -> None:
    top = TopAlerts(3)
    top.extend(_record(i, s) for i, s in enumerate([0.5, 2.0, 0.1, 2.0, 3.0, 2.0, 0.7]))
    lines = top.render().splitlines()
    assert lines[0].startswith("7 score records, 4 anomalous; top 3 by anomaly score")
    assert [line.split()[4] for line in lines[2:]] == ["evt-4", "evt-1", "evt-3"]


def test_anomalies_only_and_combined_ranking() -> None:
    top = TopAlerts(5, anomalies_only=True)
    top.add(_record(0, 0.2, combined=4.0, combined_anomaly=True))  # new for the entity
    top.add(_record(1, 5.0, combined=2.0))  # the model flags it
    top.add(_record(2, 0.9, combined=0.5))  # neither: left out
    lines = top.render().splitlines()
    assert "2 anomalous; top 2 by combined score" in lines[0]
    assert [line.split()[5] for line in lines[2:]] == ["evt-0", "evt-1"]
