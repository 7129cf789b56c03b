"""The metrics API's dependencies: settings, the token verifier, who is asking, the engine readers.

Each is an `Annotated[..., Depends(...)]` alias reading the app's state, so a test swaps one with
`app.dependency_overrides[get_x] = ...` and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from lakepulse.api.cache import AnswerCache, request_key
from lakepulse.api.ratelimit import RateLimiter, caller_key
from lakepulse.api.responses import json_bytes_response
from lakepulse.api.sources import MinuteSource, SeamReader
from lakepulse.api.telemetry import ApiMetrics
from lakepulse.api.web import session
from lakepulse.auth.tokens import Principal, TokenVerifier
from lakepulse.catalog import Catalog, get_catalog
from lakepulse.config.db import ConfigDatabase
from lakepulse.settings import Settings

# With auth switched off (LAKEPULSE_AUTH_ENABLED=false, for local experiments only) a request reads as an
# analyst: it sees every tenant but must still name one, so the same queries run.
ANONYMOUS: Final = Principal(subject="anonymous", tenant_id=None, role="analyst")

# Declares the scheme in OpenAPI (the docs' Authorize button, schemathesis' auth); auto_error off, because the
# verifier gives the reasons and the 401 with WWW-Authenticate.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT with a `tenant_id` claim (one restaurant) or a `role` of analyst or admin; "
                "locally `lakepulse token --tenant T` mints one.",
)


@dataclass(frozen=True)
class EngineSources:
    """The readers of one app: the batch and speed layers' minute rows and the seam between them."""

    batch: MinuteSource
    speed: MinuteSource
    seam: SeamReader


def get_app_settings(request: Request) -> Settings:
    """Dependency: the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_verifier(request: Request) -> TokenVerifier:
    """Dependency: the app's token verifier (one per process: it caches the identity provider's keys)."""
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def get_api_metrics(request: Request) -> ApiMetrics:
    """Dependency: the app's Prometheus metrics."""
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def get_catalog_dep() -> Catalog:
    """Dependency: the metric catalog (the allow-list of metric and dimension names)."""
    return get_catalog()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]
ApiMetricsDep = Annotated[ApiMetrics, Depends(get_api_metrics)]
CatalogDep = Annotated[Catalog, Depends(get_catalog_dep)]


def current_principal(
    request: Request,
    settings: SettingsDep,
    verifier: VerifierDep,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Dependency: who is asking, from the Authorization bearer token or, without one, the dashboard's session
    cookie (AuthError → 401 when missing or bad; a cookie-only request that is not a read must come from our own
    pages, else Forbidden → 403), charged one request of its budget (RateLimited → 429)."""
    # The raw header, not HTTPBearer's parse: the verifier's own checks and wording apply to every shape.
    principal = session.authenticate(request, verifier) if settings.auth_enabled else ANONYMOUS
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is not None:
        limiter.charge(caller_key(principal))
    return principal


def get_batch_source(request: Request) -> MinuteSource:
    """Dependency: the batch layer's minute rows (Trino over Delta)."""
    sources: EngineSources = request.app.state.sources
    return sources.batch


def get_speed_source(request: Request) -> MinuteSource:
    """Dependency: the speed layer's minute rows (Pinot's broker)."""
    sources: EngineSources = request.app.state.sources
    return sources.speed


def get_seam_source(request: Request) -> SeamReader:
    """Dependency: the seam between the layers (cached)."""
    sources: EngineSources = request.app.state.sources
    return sources.seam


def get_config_db(request: Request) -> ConfigDatabase:
    """Dependency: the configuration database (PostgreSQL; its engine connects on first use)."""
    db: ConfigDatabase = request.app.state.config_db
    return db


def get_db_session(db: Annotated[ConfigDatabase, Depends(get_config_db)]) -> Iterator[Session]:
    """Dependency: one session of the configuration database per request; rolled back unless the route commits."""
    with db.session() as db_session:
        yield db_session


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ConfigDbDep = Annotated[ConfigDatabase, Depends(get_config_db)]
DbSessionDep = Annotated[Session, Depends(get_db_session)]
BatchSourceDep = Annotated[MinuteSource, Depends(get_batch_source)]
SpeedSourceDep = Annotated[MinuteSource, Depends(get_speed_source)]
SeamSourceDep = Annotated[SeamReader, Depends(get_seam_source)]


class CachedReads:
    """One request's access to the app's answer cache, keyed by its path, tenant and parameters."""

    def __init__(self, cache: AnswerCache, request: Request) -> None:
        self._cache = cache
        self._request = request

    def answer(self, tenant_id: str, compute: Callable[[], Any]) -> Response:
        """The JSON answer for this request's path and parameters as read for `tenant_id`, cached for a moment
        as bytes (so a repeat is sent as is, see lakepulse/api/fastpath.py)."""
        key = request_key(self._request.url.path, tenant_id, self._request.query_params.multi_items())
        return json_bytes_response(self._cache.get(key, lambda: orjson.dumps(compute())))


def get_cached_reads(request: Request) -> CachedReads:
    """Dependency: the answer cache, for this request."""
    return CachedReads(request.app.state.answers, request)


CachedReadsDep = Annotated[CachedReads, Depends(get_cached_reads)]
