"""Prometheus metrics of the exchange process and the request middleware that feeds them and the request log.

The metrics live in prometheus_client's default registry: one process is one exchange node, and the default
registry also carries the process collector (CPU, memory, open files) for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hipper import logs

HTTP_REQUESTS = Counter(
    "hipper_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "hipper_http_request_duration_seconds",
    "Time from receiving a request to sending its response headers, by method and route template",
    ["method", "route"],
    # The API's target is p99 < 10 ms (docs/performance.md): resolve the low milliseconds finely.
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SSE_STREAMS = Gauge("hipper_sse_streams_open", "Live event streams (GET /api/v1/events) currently open")
LOOP_LAG = Gauge(
    "hipper_event_loop_lag_seconds",
    "How late the event loop ran a timer in the last sample; SIP timers and RTP share this loop (DESIGN.md)",
)
LOOP_LAG_MAX = Gauge("hipper_event_loop_lag_max_seconds", "The largest event-loop lag seen since the monitor started")

# Security controls (docs/security.md): every refusal is counted by the control that made it.
AUTH_FAILURES = Counter(
    "hipper_api_auth_failures_total", "Wrong passwords and PINs presented to the API or the voicemail menu", ["secret"]
)
LOCKOUT_REFUSALS = Counter(
    "hipper_lockout_refusals_total", "Attempts refused unchecked because the account or PIN is locked", ["counter"]
)
HTTP_REFUSALS = Counter(
    "hipper_http_refusals_total",
    "HTTP requests and connections refused by a limit (body size, malformed body, per-source cap, idle, streams)",
    ["reason"],
)
STREAM_CONNECTIONS_CLOSED = Counter(
    "hipper_stream_connections_closed_total",
    "SIP (TCP/TLS) and HTTP connections closed or refused by a limit, by protocol and reason",
    ["protocol", "reason"],
)

log = structlog.get_logger("hipper.http")
request_logger = logging.getLogger("hipper.http")

# Incoming request ids are echoed only when they look like ids, so a client cannot inject into our logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The route's path template (/api/v1/users/{user_id}), never the raw path, so label values stay bounded."""
    # FastAPI ≥ 0.16x keeps included routers nested: the matched APIRoute's own `path` lacks the include
    # prefix (/api/v1); the full template is on the effective route context it records in the scope.
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path_format", None)
    if isinstance(path, str):
        return path
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    # 404s and what a mount (the app's static files) serves: one label each, whatever the path.
    return "static" if "endpoint" in scope else UNMATCHED


def _new_request_id() -> str:
    # 32 hex digits, as uuid4().hex gave: an id to find a request's log lines by, not a secret, so the
    # interpreter's generator does (no getrandom syscall and UUID object per request: ≈ 3 % of a settings PUT).
    return f"{random.getrandbits(128):032x}"


@functools.lru_cache(maxsize=4096)  # bounded: a client could send made-up methods
def _series(method: str, route: str, status: int) -> Any:
    """The counter of one (method, route template, status): prometheus_client's `labels` takes a lock, checks
    and joins the values on every call; the set is bounded (route templates, not paths), so it is kept."""
    return HTTP_REQUESTS.labels(method, route, str(status))


@functools.lru_cache(maxsize=4096)
def _latency_series(method: str, route: str) -> Any:
    return HTTP_LATENCY.labels(method, route)


class RequestMetricsMiddleware:
    """Counts, times and logs every HTTP request; gives each one a request id (X-Request-ID).

    A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: that one buffers through an extra task
    per request and interferes with streaming responses such as the live events.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else _new_request_id()
        status = 500
        duration: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
                # Latency to the response headers: for an event stream that is the time to open it.
                duration = time.perf_counter() - started
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if duration is None:
                duration = time.perf_counter() - started
            method = scope["method"]
            route = route_template(scope)
            _series(method, route, status).inc()
            _latency_series(method, route).observe(duration)
            state = scope.get("state") or {}
            # The path only: the query string may hold the event stream's ?token=.
            fields = {
                "request_id": request_id,
                "user_id": state.get("user_id"),
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 3),
            }
            if not logs.hot_line(request_logger, "request", **fields):
                log.info("request", **fields)


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def watch_loop_lag(interval: float = 0.5) -> None:
    """Sleep for `interval` and measure how much later than asked we woke: the loop's scheduling lag."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - asked)
        LOOP_LAG.set(lag)
        if lag > worst:
            worst = lag
            LOOP_LAG_MAX.set(lag)


@contextlib.asynccontextmanager
async def loop_lag_monitor(interval: float = 0.5) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(watch_loop_lag(interval), name="loop-lag-monitor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install(app: FastAPI) -> None:
    """GET /metrics (Prometheus text format) and the request middleware."""
    app.add_middleware(RequestMetricsMiddleware)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
