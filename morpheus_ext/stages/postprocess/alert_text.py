"""Reading a score record as an alert: is it flagged, how high does it rank, why, in words.

Pure functions on score-record dicts (docs/score_record.md), no NumPy, so every reader of
records shares one meaning of "flagged" and one ranking: ``secureai tail`` and the demo's
short list (``pipelines.top_alerts``) and the HTML report's analyst section
(``modelling.evaluation.analyst``). They live in the core because records are defined here and
both of those layers may import it (pipelines -> modelling -> morpheus_ext).

>>> rec = {"anomaly_score": 3.0, "is_anomaly": True,
...        "reasons": [{"field": "country", "value": "BR", "z": 4.2}]}
>>> flagged(rec), rank(rec)
(True, 3.0)
>>> reason_text(rec)
'country=BR (z 4.2)'
>>> reason_words(rec)
'country=BR is 4.2 standard deviations from normal events'
"""

from __future__ import annotations

from typing import Any

__all__ = ["flagged", "rank", "reason_phrase", "reason_text", "reason_words"]


def flagged(record: dict[str, Any]) -> bool:
    """Flagged by the model, with fingerprinting by the combined score, or carrying a leaked
    secret (the leakage detector): what an analyst is shown and the incident stage groups."""
    return bool(record.get("is_anomaly") or record.get("combined_anomaly") or record.get("is_leak"))


def rank(record: dict[str, Any]) -> float:
    """``combined_score`` with fingerprinting (model + entity), else ``anomaly_score``."""
    combined = record.get("combined_score")
    return float(combined if combined is not None else record["anomaly_score"])


def _texts(record: dict[str, Any], limit: int) -> list[str]:
    """The reasons' own words (fingerprint, leakage detector), at most ``limit``."""
    reasons = record.get("reasons") or []
    return [r["text"] for r in reasons[:limit] if isinstance(r.get("text"), str)]


def _value(reason: dict[str, Any]) -> str:
    value = reason.get("value")
    return "?" if value is None else str(value)


def reason_phrase(reason: dict[str, Any]) -> str:
    """One reason, stable across the events of a burst (incidents group by it): its own words
    where it has them (fingerprint, leakage detector), else ``unusual field=value``."""
    text = reason.get("text")
    if isinstance(text, str) and text:
        return text
    return f"unusual {reason.get('field')}={_value(reason)}"


def reason_text(record: dict[str, Any]) -> str:
    """The fingerprint's words where the record has them (its top two reasons), else the
    model's reasons as ``field=value (z ...)``."""
    said = _texts(record, 2)
    if said:
        return " | ".join(said)
    reasons = record.get("reasons") or []
    return ", ".join(f"{r.get('field')}={_value(r)} (z {r.get('z', 0):.1f})" for r in reasons)


def reason_words(record: dict[str, Any], limit: int = 2) -> str:
    """Like :func:`reason_text`, but a model-only record's reasons are said in a sentence
    each (``country=BR is 4.2 standard deviations from normal events``), for readers who do
    not know what a z-score is."""
    said = _texts(record, limit)
    if said:
        return " | ".join(said)
    reasons = (record.get("reasons") or [])[:limit]
    return "; ".join(
        f"{r.get('field')}={_value(r)} is {float(r.get('z', 0)):.1f} standard deviations "
        "from normal events"
        for r in reasons
    )
