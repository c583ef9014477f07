"""Prometheus metrics of the service, and the ASGI middleware that counts every answer
and refuses an oversized body before anything parses it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ROUTES = ("/v1/reports", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


class ServiceMetrics:
    """The service's metrics, in a registry of its own (several apps in one process,
    as in tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inspection_serve_requests", "HTTP answers", ["route", "status"], registry=r
        )
        self.batch_size = Histogram(
            "inspection_serve_batch_size",
            "Parts per decode call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "inspection_serve_queue_depth", "Parts waiting for the decoder", registry=r
        )
        self.decode_seconds = Histogram(
            "inspection_serve_decode_seconds",
            "Seconds a batch took: fusion, decoding, cross-check and commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reports = Counter(
            "inspection_serve_reports", "Reports stored, by final verdict", ["verdict"], registry=r
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_of(path: str) -> str:
    """A bounded label for a request path (part ids would make one series each)."""
    if path.startswith("/v1/reports/"):
        return "/v1/reports/{part_id}"
    return path if path in _ROUTES else "other"


class BodyLimit:
    """Pure ASGI middleware: answers 413 for a body over ``max_bytes`` (by its
    ``Content-Length``, or while reading a body sent without one) before the app sees
    it, and counts every answer by route and status.

    The body is read here, at most ``max_bytes + 1`` bytes of it, and replayed to the
    app: nothing downstream ever holds more.
    """

    def __init__(self, app: Any, max_bytes: int, metrics: ServiceMetrics):
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route=route, status=str(message["status"])).inc()
            await send(message)

        if scope.get("method") in ("POST", "PUT", "PATCH"):
            body, error = await self._read(scope, receive)
            if error is not None:
                await _plain(counted, *error)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, counted)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, tuple[int, str] | None]:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return b"", (400, "Content-Length is not a number")
            if size > self.max_bytes:
                return b"", (413, f"body of {size} bytes; the service accepts {self.max_bytes}")
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", (400, "client disconnected")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return b"", (413, f"body over {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the client's disconnect, as the server sends it

    return replay


async def _plain(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
