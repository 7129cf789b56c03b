"""FastAPI ingest service: `POST /v1/events`, `/health`, `/metrics`.

Run: `uvicorn --factory lakepulse.ingest.app:create_app --host 127.0.0.1 --port 8001`.

With auth on (the default) `POST /v1/events` needs a bearer JWT, checked before the body is read; each event
whose tenant the token may not write is rejected to the dead-letter topic like an invalid one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from lakepulse.auth.tokens import AccessError, Forbidden, Principal, TokenVerifier
from lakepulse.events import event_json_schema
from lakepulse.gc_tuning import tune_gc
from lakepulse.ingest.body import BodyError, Limits, decode_content, split_body
from lakepulse.ingest.metrics import IngestMetrics
from lakepulse.ingest.processing import EventRules, process_items
from lakepulse.ingest.sink import EventSink, KafkaSink, KafkaUnavailable
from lakepulse.ingest.topics import verify_topic_limits
from lakepulse.settings import Settings, get_settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2

# Declares the scheme in OpenAPI (the docs' Authorize button, schemathesis' auth); auto_error off, because the
# verifier gives the reasons and the 401 with WWW-Authenticate.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT with the role `producer` and a `tenants` claim (the restaurants it may write events for); "
    "locally `lakepulse token --role producer --tenant T1 --tenant T2` mints one. A tenant token writes its own "
    "restaurant, an admin token any; an analyst token writes none.",
)


class EventResultModel(BaseModel):
    """Result of one event of the request, by its position in the body."""

    index: int
    status: str
    event_id: str | None = None
    reason: str | None = None


class IngestResponse(BaseModel):
    """202 body: how many events were accepted and rejected, and a result per event."""

    accepted: int
    rejected: int
    results: list[EventResultModel]


class ErrorResponse(BaseModel):
    """Body of 4xx/503 answers."""

    detail: str


class SinkHolder:
    """Creates the Kafka sink on first use, so an app that never ingests never connects."""

    def __init__(self, factory: Callable[[], EventSink]) -> None:
        self._factory = factory
        self._sink: EventSink | None = None
        self._lock = threading.Lock()

    def get(self) -> EventSink:
        """The process's sink, created once."""
        if self._sink is None:
            with self._lock:
                if self._sink is None:
                    self._sink = self._factory()
        return self._sink

    def close(self) -> None:
        """Flush and close the sink if it was ever created."""
        if self._sink is not None:
            self._sink.close()


def get_sink(request: Request) -> EventSink:
    """Dependency: the Kafka sink of this app."""
    return request.app.state.sinks.get()


def get_metrics(request: Request) -> IngestMetrics:
    """Dependency: the metrics of this app."""
    return request.app.state.metrics


def get_limits(request: Request) -> Limits:
    """Dependency: request size limits of this app."""
    return request.app.state.limits


def get_rules(request: Request) -> EventRules:
    """Dependency: the per-event rules (size, event time) of this app."""
    rules: EventRules = request.app.state.rules
    return rules


def get_verifier(request: Request) -> TokenVerifier | None:
    """Dependency: the app's token verifier; None when auth is off."""
    verifier: TokenVerifier | None = request.app.state.verifier
    return verifier


VerifierDep = Annotated[TokenVerifier | None, Depends(get_verifier)]


def current_writer(
    request: Request,
    verifier: VerifierDep,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | None:
    """Dependency: who is writing, from the bearer token (AuthError → 401, a token that writes nothing → 403),
    resolved before the body is read; None when auth is off (every tenant may be written)."""
    if verifier is None:
        return None
    # The raw header, not HTTPBearer's parse: the verifier's own checks and wording apply to every shape. Each
    # request verifies its token (signature and expiry): nothing is cached that could outlive a token.
    principal = verifier.authenticate(request.headers.get("authorization"))
    if not principal.writes_events:
        raise Forbidden(f"an {principal.role} token reads metrics; it may not write events")
    return principal


SinkDep = Annotated[EventSink, Depends(get_sink)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
RulesDep = Annotated[EventRules, Depends(get_rules)]
WriterDep = Annotated[Principal | None, Depends(current_writer)]

router = APIRouter()


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused with 413 as soon as it grows past the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BodyError(413, f"body exceeds {limits.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise BodyError(413, f"body exceeds {limits.max_body_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (fast for large per-event result lists)."""
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error body with `detail`."""
    return json_response({"detail": detail}, status, headers)


async def refused(request: Request, exc: Exception) -> Response:
    """AccessError (no or bad token 401, a token that writes nothing 403, identity provider down 503) → its
    status and message, counted like every other answer."""
    status = int(getattr(exc, "status_code", 401))
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 §3
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    request.app.state.metrics.requests.labels(str(status)).inc()
    return error_response(status, str(exc), headers)


INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": IngestResponse,
        "description": "Every event has a result; rejected ones went to the DLQ with their reason: the contract's, "
        "a tenant the token may not write (tenant_not_allowed), occurred_at too far ahead of the server clock "
        "(occurred_at_in_future) or older than the horizon (occurred_at_too_old), or an event larger than the "
        "limit (event_too_large)",
    },
    400: {"model": ErrorResponse, "description": "Body is not JSON, NDJSON or gzip, or holds no events"},
    401: {
        "model": ErrorResponse,
        "description": "No bearer token, or one that does not verify (signature, expiry, audience, issuer)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    },
    403: {"model": ErrorResponse, "description": "The token may write no events (an analyst token)"},
    413: {"model": ErrorResponse, "description": "Body or event count over the limit"},
    415: {"model": ErrorResponse, "description": "Unsupported Content-Type or Content-Encoding"},
    503: {
        "model": ErrorResponse,
        "description": "Kafka did not acknowledge the events (or, in cluster mode, the identity provider's keys "
        "could not be fetched); nothing was accepted, retry after Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    },
}


@router.post("/v1/events", status_code=202, responses=INGEST_RESPONSES)
async def ingest_events(
    request: Request, writer: WriterDep, sink: SinkDep, metrics: MetricsDep, limits: LimitsDep, rules: RulesDep
) -> Response:
    """Validate events, write accepted ones to the raw topic and rejected ones to the DLQ, then answer."""
    try:
        body = await read_body(request, limits)
        data = decode_content(body, request.headers.get("content-encoding"), limits)
        items = split_body(data, request.headers.get("content-type"), limits)
    except BodyError as error:
        metrics.requests.labels(str(error.status)).inc()
        return error_response(error.status, error.message)
    batch = process_items(
        items,
        datetime.now(UTC),
        request.headers.get("user-agent"),
        may_write=writer.may_write if writer is not None else None,
        rules=rules,
    )
    started = perf_counter()
    try:
        await sink.write(batch.raw_records, batch.dlq_records)
    except KafkaUnavailable as error:
        metrics.requests.labels("503").inc()
        return error_response(503, str(error), {"Retry-After": str(RETRY_AFTER_S)})
    metrics.produce_latency.observe(perf_counter() - started)
    metrics.accepted.inc(batch.accepted)
    metrics.rejected.inc(batch.rejected)
    metrics.dead_lettered.inc(batch.rejected)
    metrics.requests.labels("202").inc()
    return json_response({"accepted": batch.accepted, "rejected": batch.rejected, "results": batch.results}, 202)


@router.get(
    "/health",
    responses={
        200: {"description": "Kafka answers"},
        503: {"model": ErrorResponse, "description": "Kafka does not answer"},
    },
)
async def health(sink: SinkDep) -> Response:
    """200 when Kafka answers a metadata request, 503 otherwise."""
    if await sink.healthy():
        return json_response({"status": "ok", "kafka": "up"})
    return json_response({"status": "unavailable", "kafka": "down"}, 503)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition of the ingest counters and latency histogram."""
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)


def _openapi_with_event_body(app: FastAPI) -> dict[str, Any]:
    """OpenAPI document whose `POST /v1/events` body is described by the event contract, and which asks for
    the bearer token only when auth is on."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        event_schema = event_json_schema()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event_schema.pop("$defs", {}))
        components["Event"] = event_schema
        event_ref = {"$ref": "#/components/schemas/Event"}
        limits: Limits = app.state.limits
        schema["paths"]["/v1/events"]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            event_ref,
                            {
                                "type": "array",
                                "items": event_ref,
                                "minItems": 1,
                                "maxItems": limits.max_events,
                            },
                        ]
                    }
                },
                "application/x-ndjson": {"schema": {"type": "string", "description": "One event per line"}},
            },
        }
        if app.state.verifier is None:  # auth off: no token is asked for
            schema["paths"]["/v1/events"]["post"].pop("security", None)
            schema["components"].pop("securitySchemes", None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(
    settings: Settings | None = None,
    limits: Limits | None = None,
    delivery_timeout_s: float | None = None,
) -> FastAPI:
    """The ingest app, writing to the topics and bootstrap servers of `settings` (limits from settings too)."""
    settings = settings or get_settings()
    limits = limits or Limits(max_body_bytes=settings.ingest_max_body_bytes, max_events=settings.ingest_max_events)
    timeout_s = delivery_timeout_s if delivery_timeout_s is not None else settings.ingest_delivery_timeout_s

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The size check belongs to the Kafka sink: an app whose sink a test swapped writes to no topic. A
        # limit the topics cannot hold ends the start-up here (uvicorn exits), with the reason in the log.
        if get_sink not in app.dependency_overrides:
            await asyncio.to_thread(verify_topic_limits, settings)
        tune_gc()
        yield
        app.state.sinks.close()

    app = FastAPI(
        title="lakepulse ingest",
        version="1.0",
        description="Accepts marketplace events; accepted means durable in Kafka, rejected means told why.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limits = limits
    app.state.rules = EventRules.from_settings(settings)
    app.state.verifier = TokenVerifier(settings) if settings.auth_enabled else None
    if not settings.auth_enabled:
        log.warning("LAKEPULSE_AUTH_ENABLED is false: the ingest API takes events for every tenant, with no token")
    app.state.metrics = IngestMetrics()
    app.state.sinks = SinkHolder(
        lambda: KafkaSink(
            settings.kafka_bootstrap,
            settings.topic_events_raw,
            settings.topic_events_dlq,
            timeout_s,
            max_event_bytes=settings.ingest_max_event_bytes,
        )
    )
    app.add_exception_handler(AccessError, refused)
    app.include_router(router)
    app.openapi = lambda: _openapi_with_event_body(app)  # type: ignore[method-assign]
    return app
