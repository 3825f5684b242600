"""The REST evaluator: other services ask for scores over HTTP.

``create_app(config)`` returns a FastAPI app:

* ``POST /v1/score`` — a batch of raw events -> score records (the pipeline's own
  :class:`~pipelines.runner.ScoringPipeline` with the configured engine); events that cannot
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
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.featurizer import Featurizer
from morpheus_ext.inference.base import InferenceEngine
from morpheus_ext.model_repository import AUTOENCODER, ModelRepositoryError
from morpheus_ext.stages.input import Origin, RawBatch
from pipelines.rest.catalog import list_versions, served_version
from pipelines.rest.config import ApiConfig
from pipelines.rest.metrics import api_metrics
from pipelines.rest.schemas import (
    ErrorResponse,
    Health,
    ModelsResponse,
    Readiness,
    ScoreResponse,
    score_request_schema,
)
from pipelines.runner import BatchResult, ScoringPipeline

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
SOURCE = "rest"
ROUTES = frozenset(
    {"/v1/score", "/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "details"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


# --------------------------------------------------------------------------- ASGI middleware
async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length at once, else while streaming in.

    The body is buffered (at most ``max_bytes``) and replayed to the app, so chunked uploads
    are bounded too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body exceeds the {self.max_bytes}-byte limit"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_request", "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _send_error(send, 413, "payload_too_large", too_large)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Counts every answered request (including 413s from the body limit), its duration and
    the requests in progress."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = api_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status = [500]
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        inflight = self.metrics.inflight.labels(route)
        inflight.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            inflight.dec()
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


# --------------------------------------------------------------------------- engine
class EngineHolder:
    """Builds the inference engine in the background; ``/readyz`` says 503 until it exists.

    With ``engine: triton`` the API may start before Triton: it keeps retrying every
    ``engine_retry_s`` and reports the last reason. The in-process engine loads the version
    the repository serves (the pinned one after a rollback).
    """

    def __init__(self, config: ApiConfig, spec: FeatureSpec) -> None:
        self.config, self.spec = config, spec
        self.pipeline: ScoringPipeline | None = None
        self.engine: InferenceEngine | None = None
        self.reason: str | None = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-builder", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.02)
        return self.ready

    def _build(self) -> InferenceEngine:
        inference = self.config.inference
        if inference.engine == "inprocess":
            from morpheus_ext.inference.inprocess import InProcessEngine

            try:
                version: int | None = served_version(inference.repository)
            except (ModelRepositoryError, OSError):
                version = None
            return InProcessEngine(
                inference.repository,
                self.spec.spec_hash,
                autoencoder_version=version,
                threads=inference.threads,
            )
        from pipelines.engines import build_engine

        return build_engine(inference, self.spec)

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                engine = self._build()
            except Exception as exc:
                text = str(exc).strip()
                reason = text.splitlines()[0] if text else type(exc).__name__
                self.reason = reason
                if reason != last:
                    log.warning("inference engine not ready (retrying): %s", reason)
                    last = reason
                self._stop.wait(self.config.engine_retry_s)
                continue
            self.engine = engine
            self.pipeline = ScoringPipeline(
                Featurizer(self.spec), engine, self.config.limits.max_event_bytes
            )
            self.reason = None
            log.info("inference engine ready (%s)", self.config.inference.engine)
            return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.engine is not None:
            self.engine.close()


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
    rows = _record_indices(len(events), result)
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


def _record_indices(n: int, result: BatchResult) -> np.ndarray:
    """Request index of each score record: featurizer positions index the decoded rows."""
    if result.featurized is None or not result.records:
        return np.zeros(0, dtype=np.int64)
    dropped = [int(d["offset"]) for d in result.dead_letters if d["stage"] == "decode"]
    decoded = np.delete(np.arange(n), dropped) if dropped else np.arange(n)
    return np.asarray(decoded[result.featurized.positions])


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
            from morpheus_ext.inference.triton import TritonEngineError

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
