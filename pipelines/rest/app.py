"""The REST evaluator: other services ask for scores over HTTP.

``create_app(config)`` returns a FastAPI app:

* ``POST /v1/score`` — a batch of raw events -> score records (the pipeline's own
  :class:`~morpheus_ext.pipeline.ScoringPipeline` with the configured engine); events that cannot
  be scored come back in ``rejected`` with the same reasons the dead-letter topic carries;
* ``GET /v1/models`` — the autoencoder versions of the repository, which one is served, manifests;
* ``GET /healthz`` (process alive), ``GET /readyz`` (engine loaded / Triton reachable),
  ``GET /metrics`` (Prometheus), ``GET /openapi.json`` and ``/docs``.

``/v1/*`` needs ``Authorization: Bearer <token>`` (compared in constant time). Bodies larger than
``limits.max_body_bytes`` are refused with 413 before they are read into memory; batches with
more than ``limits.max_events`` events with 422 (``too_many_events``). Every error is JSON
(:class:`~pipelines.rest.schemas.ErrorResponse`) and documented in the OpenAPI spec. Event
contents are never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import (
    AUTOENCODER,
    ModelRepositoryError,
    list_versions,
    served_version,
)
from pipelines.rest.config import ApiConfig
from pipelines.rest.engine_holder import EngineHolder
from pipelines.rest.errors import _STATUS_CODES, ApiError, _err, error_response
from pipelines.rest.middleware import BodyLimitMiddleware, MetricsMiddleware
from pipelines.rest.schemas import (
    Health,
    ModelsResponse,
    Readiness,
    ScoreResponse,
    score_request_schema,
)
from pipelines.rest.scoring import _media_type, parse_score_request, score_events

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


# --------------------------------------------------------------------------- app
def create_app(config: ApiConfig) -> FastAPI:
    """The API for ``config`` (raises a one-line error for a missing token or unknown spec)."""
    token = config.auth.resolve_token()
    spec = load_spec(config.spec)
    holder = EngineHolder(config, spec)
    limits = config.limits

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if config.metrics_port:
            start_http_server(config.metrics_port, addr=config.metrics_host)
            log.info("metrics on %s:%d/metrics", config.metrics_host, config.metrics_port)
        holder.start()
        try:
            yield
        finally:
            await run_in_threadpool(holder.stop)

    app = FastAPI(
        title="SecureAI REST evaluator",
        version=API_VERSION,
        summary="Anomaly scores with reasons for security events (auth, netflow).",
        description=(
            "Scores raw security events with the same pipeline as the streaming path "
            "(feature spec -> `dfp_ensemble` -> score records). Authenticate with "
            "`Authorization: Bearer <token>`. Errors are JSON: "
            '`{"error": {"code", "message", "details"}}`.'
        ),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.holder = holder
    app.state.config = config

    bearer = HTTPBearer(
        auto_error=False,
        description="The token configured by `auth.token_env` / `auth.token_file`.",
    )
    expected = hashlib.sha256(token.encode()).digest() if token is not None else None

    def authenticate(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
        if expected is None or not hmac.compare_digest(digest, expected) or not given:
            raise ApiError(
                401,
                "unauthorized",
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="secureai"'},
            )

    auth = [Depends(authenticate)] if token is not None else []
    auth_errors: dict[int | str, dict[str, Any]] = (
        {401: _err("Missing or invalid bearer token.")} if token is not None else {}
    )

    # ---- errors: one JSON shape for everything
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
            }
            for e in exc.errors()[:20]
        ]
        return error_response(422, "invalid_request", "request validation failed", details)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, str(exc).splitlines()[:1])
        return error_response(500, "internal", "internal error (see the service log)")

    # ---- routes
    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        responses={503: {"model": Readiness, "description": "The engine is not loaded yet."}},
    )
    def readyz() -> Response:
        """Readiness: the inference engine is loaded (Triton reachable, spec hash matches)."""
        body = {
            "status": "ready" if holder.ready else "not ready",
            "engine": config.inference.engine,
            "reason": holder.reason,
        }
        return _json(body, 200 if holder.ready else 503)

    metrics_deps = auth if config.auth.protect_metrics else []

    @app.get(
        "/metrics",
        tags=["operations"],
        dependencies=metrics_deps,
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            },
            **(auth_errors if config.auth.protect_metrics else {}),
        },
    )
    def metrics() -> Response:
        """Prometheus metrics: the pipeline catalogue plus ``secureai_api_*``."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/score",
        tags=["scoring"],
        dependencies=auth,
        response_model=ScoreResponse,
        responses={
            400: _err("The body is not valid JSON (or Content-Length is malformed)."),
            **auth_errors,
            413: _err(f"The body is larger than {limits.max_body_bytes} bytes."),
            415: _err("Content-Type is not application/json."),
            422: _err(
                "The body is JSON but not a ScoreRequest (`details` says where), or it has more "
                f"than {limits.max_events} events (`too_many_events`)."
            ),
            503: _err("The inference engine is not ready or the backend is unavailable."),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": score_request_schema(limits.max_events, spec)}
                },
            }
        },
    )
    async def score(request: Request) -> Response:
        """Score a batch of raw events; unscorable events come back in `rejected` with reasons."""
        events = parse_score_request(await request.body(), _media_type(request), limits.max_events)
        pipeline = holder.pipeline
        if pipeline is None:
            raise ApiError(
                503,
                "not_ready",
                f"inference engine not ready: {holder.reason}",
                headers={"Retry-After": str(max(1, round(config.engine_retry_s)))},
            )
        try:
            payload = await run_in_threadpool(score_events, pipeline, events)
        except Exception as exc:
            from morpheus_ext.stages.inference.triton import TritonEngineError

            if isinstance(exc, TritonEngineError):
                raise ApiError(
                    503,
                    "inference_unavailable",
                    str(exc).splitlines()[0],
                    headers={"Retry-After": "5"},
                ) from None
            raise
        return _json(payload)

    @app.get(
        "/v1/models",
        tags=["models"],
        dependencies=auth,
        response_model=ModelsResponse,
        responses={**auth_errors, 503: _err("The model repository cannot be read.")},
    )
    async def models() -> Response:
        """Autoencoder versions in the model repository, which one is served, and manifests."""
        repository = Path(config.repository_for_models)
        try:
            rows = await run_in_threadpool(list_versions, repository)
            served = await run_in_threadpool(served_version, repository)
        except (ModelRepositoryError, OSError, ValueError) as exc:
            raise ApiError(
                503, "models_unavailable", f"cannot read the model repository: {exc}"
            ) from None
        return _json(
            {
                "model": AUTOENCODER,
                "served_version": served,
                "versions": rows,
                "engine": config.inference.engine,
                "spec_hash": spec.spec_hash,
            }
        )

    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
