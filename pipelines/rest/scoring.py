"""``POST /v1/score``'s work: parse a request body, run the pipeline, index records and rejects."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.input.sources import Origin, RawBatch
from pipelines.rest.errors import ApiError

SOURCE = "rest"
"""The origin of a REST event (``source`` of its dead letter): ``rest``, 0, its index."""


# --------------------------------------------------------------------------- scoring
def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_score_request(body: bytes, media_type: str, max_events: int) -> list[Any]:
    """The request's events, or an :class:`ApiError` saying exactly what is wrong."""
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json (got {media_type or 'none'})",
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(
            422,
            "invalid_request",
            "request body must be a JSON object with an `events` array",
            [{"loc": ["body"], "msg": f"expected an object, got {type(doc).__name__}"}],
        )
    extra = sorted(k for k in doc if k != "events")
    if extra:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field(s): {', '.join(extra)[:200]}",
            [{"loc": ["body", k], "msg": "extra fields are not permitted"} for k in extra[:20]],
        )
    events = doc.get("events")
    if not isinstance(events, list):
        got = "nothing" if "events" not in doc else type(events).__name__
        raise ApiError(
            422,
            "invalid_request",
            f"`events` must be an array of events (got {got})",
            [{"loc": ["body", "events"], "msg": "expected an array"}],
        )
    if not events:
        raise ApiError(
            422,
            "invalid_request",
            "`events` is empty",
            [{"loc": ["body", "events"], "msg": "at least 1 event"}],
        )
    if len(events) > max_events:
        raise ApiError(
            422,
            "too_many_events",
            f"{len(events)} events in one request; the limit is {max_events}",
        )
    return events


def score_events(pipeline: ScoringPipeline, events: list[Any]) -> dict[str, Any]:
    """Run the pipeline on one request's events; every index ends in ``scored`` or ``rejected``."""
    raw = RawBatch(
        [orjson.dumps(e) for e in events], [Origin(SOURCE, 0, i) for i in range(len(events))]
    )
    result = pipeline.process(raw)
    rejected = [
        {"index": int(d["offset"]), "stage": d["stage"], "reason": d["reason"]}
        for d in result.dead_letters
    ]
    rows = result.record_positions()
    scored = [{"index": int(i), "record": r} for i, r in zip(rows, result.records, strict=True)]
    rejected.sort(key=lambda d: d["index"])
    return {
        "scored": scored,
        "rejected": rejected,
        "counts": {
            "events": len(events),
            "scored": len(scored),
            "rejected": len(rejected),
            "anomalies": sum(1 for r in result.records if r["is_anomaly"]),
        },
    }
