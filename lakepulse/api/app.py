"""FastAPI metrics service: the catalog and time series per tenant across the seam, `/health`, `/metrics`.

Run: `uvicorn --factory lakepulse.api.app:create_app --host 127.0.0.1 --port 8000` (or `python -m lakepulse.api`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lakepulse.api.cache import AnswerCache
from lakepulse.api.deps import ApiMetricsDep, EngineSources
from lakepulse.api.fastpath import CachedAnswerMiddleware
from lakepulse.api.live import LiveReader, LiveSource
from lakepulse.api.operations import Operations
from lakepulse.api.push import PushHub
from lakepulse.api.ratelimit import RateLimited, per_worker
from lakepulse.api.responses import error_response, json_response
from lakepulse.api.routes import alert_rules, catalog, dashboards, series, top
from lakepulse.api.routes import live as live_routes
from lakepulse.api.routes import operations as ops_routes
from lakepulse.api.routes import stream as stream_routes
from lakepulse.api.routes import web as web_routes
from lakepulse.api.series import SeriesRequestError
from lakepulse.api.shared_answers import SharedAnswers
from lakepulse.api.sources import (
    BatchSource,
    FinalMinuteRows,
    MinuteSource,
    SeamReader,
    SeamSource,
    SourceUnavailable,
    SpeedSource,
)
from lakepulse.api.telemetry import ApiMetrics, RequestMetricsMiddleware
from lakepulse.auth.tokens import AccessError, TokenVerifier
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.errors import ConfigError, ConfigUnavailable
from lakepulse.gc_tuning import tune_gc
from lakepulse.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION: Final = "1.0"
RETRY_AFTER_S: Final = 5
INTERNAL_ERROR: Final = "internal error; it has been logged"

service = APIRouter(tags=["service"])


@service.get("/health")
def health() -> Response:
    """200 while the process serves requests (engines are not touched: their failures answer 503 per request)."""
    return json_response({"status": "ok"})


@service.get("/metrics", response_class=Response)
def prometheus_metrics(metrics: ApiMetricsDep) -> Response:
    """Prometheus exposition of the request counters, latencies and engine failures."""
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)


async def refused(request: Request, exc: Exception) -> Response:
    """AccessError, SeriesRequestError, RateLimited and SourceUnavailable → their status and message (our
    wording only)."""
    status = int(getattr(exc, "status_code", 500))
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 §3
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = exc.retry_after_header
    if isinstance(exc, SourceUnavailable):
        request.app.state.metrics.source_errors.labels(exc.layer).inc()
    return error_response(status, str(exc), headers)


async def invalid_parameters(request: Request, exc: Exception) -> Response:
    """A parameter of the wrong type or out of its declared bounds → 400 naming it (its value is not echoed)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    reasons = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5])
    return error_response(400, reasons or "invalid request parameters")


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The configuration database refused a connection, timed out or dropped one → 503 (no engine text)."""
    log.warning("configuration database unavailable on %s %s: %s", request.method, request.url.path,
                type(exc).__name__)
    return await refused(request, ConfigUnavailable())


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected → 500 without internals (the traceback goes to the log)."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL_ERROR)


def create_app(
    settings: Settings | None = None,
    *,
    batch: MinuteSource | None = None,
    speed: MinuteSource | None = None,
    seam: SeamReader | None = None,
    live: LiveReader | None = None,
) -> FastAPI:
    """The metrics app for `settings` (default: the process's), reading the engines those settings name."""
    settings = settings or get_settings()
    # Engine clients connect lazily, on the first request that needs them: building the app touches nothing.
    sources = EngineSources(
        batch=batch or FinalMinuteRows(BatchSource(settings)),
        speed=speed or SpeedSource(settings),
        seam=seam or SeamSource(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_gc()
        yield
        for source in (sources.batch, sources.speed, app.state.live, app.state.hub, app.state.config_db,
                       app.state.ops):
            close = getattr(source, "close", None)
            if close is not None:
                close()

    app = FastAPI(
        title="lakepulse metrics",
        version=API_VERSION,
        description="Metrics of a restaurant (tenant) across the batch and speed layers, behind bearer JWTs. "
                    "The tenant always comes from the token; analyst and admin tokens name one.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.sources = sources
    app.state.live = live or LiveSource(settings)
    app.state.ops = Operations(settings, seam=sources.seam)  # the operations page's facts; connects on first use
    app.state.hub = PushHub(settings)  # live push (SSE); its Kafka feed starts with the first viewer
    app.state.metrics = ApiMetrics()
    app.state.config_db = ConfigDatabase.from_settings(settings, "lakepulse-api")  # connects on first use
    shared = (SharedAnswers(settings.api_shared_answers_dir, settings.api_cache_ttl_s)
              if settings.api_shared_answers_dir is not None and settings.api_cache_ttl_s > 0 else None)
    app.state.answers = AnswerCache(settings.api_cache_ttl_s, stale_s=settings.api_cache_stale_s,
                                     refresh_ahead_s=settings.api_cache_refresh_ahead_s, shared=shared)
    app.state.limiter = per_worker(settings.api_rate_limit_per_s, settings.api_rate_burst, settings.api_workers)
    if not settings.auth_enabled:
        log.warning("LAKEPULSE_AUTH_ENABLED is false: every request reads as an analyst, with no token")
    if settings.auth_enabled:
        # Added first, so it runs inside the metrics middleware: answers sent from the cache are counted too.
        app.add_middleware(CachedAnswerMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    for refusal in (AccessError, SeriesRequestError, RateLimited, SourceUnavailable, ConfigError):
        app.add_exception_handler(refusal, refused)
    for unavailable in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(unavailable, database_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_parameters)
    app.add_exception_handler(Exception, internal_error)
    app.include_router(service)
    app.include_router(catalog.router)
    app.include_router(series.router)
    app.include_router(top.router)
    app.include_router(live_routes.router)
    app.include_router(dashboards.router)
    app.include_router(alert_rules.router)
    app.include_router(stream_routes.router)
    app.include_router(ops_routes.router)
    web_routes.install(app)  # the dashboard's pages and static files (same origin)
    return app
