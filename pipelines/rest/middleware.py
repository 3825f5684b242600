"""ASGI middleware: body-size limits before a body is read, and request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from pipelines.rest.prometheus_metrics import api_metrics

ROUTES = frozenset(
    {"/v1/score", "/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


CLIENT_CLOSED = 499
"""Status counted for a request whose client left before any answer (nginx's convention)."""


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
        status = [0]  # set when the response starts
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        inflight = self.metrics.inflight.labels(route)
        inflight.inc()
        try:
            await self.app(scope, receive, capture)
        except Exception:
            status[0] = status[0] or 500  # the server failed before it answered
            raise
        finally:
            inflight.dec()
            # No answer started and no error: the client went away first (a timeout on its
            # side, a disconnect cancelling the request). Counted as nginx's 499 "client closed
            # request", not as a server error a dashboard would alert on.
            self.metrics.requests.labels(route, str(status[0] or CLIENT_CLOSED)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)
