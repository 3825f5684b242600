"""Request and response bodies of the REST evaluator (they are the OpenAPI spec's schemas).

Score records are exactly the pipeline's (``morpheus_ext/schemas/score_record.json``, embedded
in the OpenAPI document), so a client of the API and a consumer of the scores topic parse the
same objects. Every 4xx/5xx body is an :class:`ErrorResponse`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.stages.postprocess.records import score_record_schema


def _record_schema() -> dict[str, Any]:
    schema = dict(score_record_schema())
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return schema


ScoreRecord = Annotated[dict[str, Any], WithJsonSchema(_record_schema())]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def event_schema(spec: FeatureSpec) -> dict[str, Any]:
    """What the feature spec reads from an event (other keys are allowed and ignored)."""
    props: dict[str, Any] = {}
    for name in [spec.event_id, *spec.entity]:
        if name:
            props[name] = {"type": ["string", "null"]}
    if spec.timestamp:
        props[spec.timestamp] = {
            "type": ["string", "number"],
            "description": "ISO 8601 time or epoch seconds/milliseconds.",
        }
    for f in spec.layout.fields:
        if f.kind == "numeric":
            props[f.name] = {"type": ["number", "null"]}
        elif f.kind == "categorical":
            props[f.name] = {"type": ["string", "integer", "boolean", "null"]}
    return {
        "title": f"{spec.name} event",
        "type": "object",
        "description": f"An event as the `{spec.name}` feature spec (v{spec.version}) reads it.",
        "required": list(spec.required),
        "properties": props,
        "additionalProperties": True,
    }


def score_request_schema(max_events: int, spec: FeatureSpec) -> dict[str, Any]:
    """JSON Schema of ``POST /v1/score`` (parsed by hand for exact errors: 400/413/415/422)."""
    return {
        "title": "ScoreRequest",
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_events,
                "description": (
                    "Raw events, one JSON object each, as they would arrive on the events topic. "
                    "Anything else (a string, a number, an object the feature spec cannot read) "
                    "is not an error of the request: it comes back in `rejected` with a reason."
                ),
                "items": {"anyOf": [event_schema(spec), {}]},
            }
        },
        "example": {
            "events": [
                {
                    "event_id": "evt-000000002",
                    "timestamp": "2026-11-01T08:08:30.633Z",
                    "event_type": "auth",
                    "site": "site-2",
                    "user": "u0316",
                    "src_ip": "10.2.2.34",
                    "src_host": "ws-0283",
                    "dst_app": "sharepoint",
                    "dst_host": "sharepoint.s2.corp",
                    "auth_method": "sso",
                    "result": "success",
                    "country": "IN",
                    "device": "win-desktop",
                }
            ]
        },
    }


class ScoredEvent(_Out):
    index: int = Field(ge=0, description="Position of the event in the request's `events`.")
    record: ScoreRecord


class RejectedEvent(_Out):
    index: int = Field(ge=0, description="Position of the event in the request's `events`.")
    stage: Literal["decode", "featurize"]
    reason: str


class Counts(_Out):
    events: int = Field(ge=0)
    scored: int = Field(ge=0)
    rejected: int = Field(ge=0)
    anomalies: int = Field(ge=0)


class ScoreResponse(_Out):
    """Every event of the request is in exactly one of `scored` and `rejected`."""

    scored: list[ScoredEvent]
    rejected: list[RejectedEvent]
    counts: Counts


class ModelVersion(_Out):
    version: int = Field(ge=1)
    served: bool
    created_at: str | None
    parent: int | None
    run_id: str | None
    rounds: int | None
    epsilon: float | None = Field(description="Largest DP epsilon spent by a site, if any.")
    threshold: float | None
    gate: dict[str, Any] | None
    manifest: dict[str, Any] = Field(description="The version's manifest.json as published.")


class ModelsResponse(_Out):
    model: str
    served_version: int
    versions: list[ModelVersion]
    engine: Literal["inprocess", "triton"]
    spec_hash: str


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ready", "not ready"]
    engine: Literal["inprocess", "triton"]
    reason: str | None = None


class ErrorDetail(_Out):
    loc: list[str | int]
    msg: str


class ErrorBody(_Out):
    code: str = Field(description="Stable machine-readable code, e.g. `payload_too_large`.")
    message: str = Field(description="One human-readable line.")
    details: list[ErrorDetail] | None = None


class ErrorResponse(_Out):
    error: ErrorBody
