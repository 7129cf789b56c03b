"""Prometheus metrics of the metrics API: requests and latency by route and status, engine failures by layer."""

from __future__ import annotations

from time import perf_counter
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakepulse.prometheus import exposition

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Label values come from a closed set: a client choosing paths or methods must not mint new time series.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"


class ApiMetrics:
    """The API's counters and latency histogram, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lakepulse_api_requests", "Requests by route template, method and HTTP status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "lakepulse_api_request_duration_seconds", "Request to end of response, by route and status",
            ["route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.source_errors = Counter(
            "lakepulse_api_source_errors", "Engine calls that failed or timed out (answered 503), by layer",
            ["layer"], registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type (summed over workers in multiprocess mode)."""
        return exposition(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware (no per-request task like BaseHTTPMiddleware's) counting and timing each request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering (the catch-all's answer)

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            # The router stores the matched route in the (shared) scope: its template, never the raw path.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method if method in METHODS else "other", str(status)).inc()
            self.metrics.latency.labels(route, str(status)).observe(perf_counter() - started)
