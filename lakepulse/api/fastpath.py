"""Answers a repeated read straight from the answer cache, before FastAPI routes it.

A dashboard's reads are mostly repeats: every viewer of a restaurant asks for the same series and live state
within the cache's second. Routing, dependency injection, parameter validation and the thread pool cost
~1 ms of CPU per request; a cached answer needs none of them, because an identical request (same path,
parameters and authorised tenant) was validated and answered a moment ago. So this middleware only:
verifies the bearer token (cached by the verifier), works out the tenant exactly as the routes do, charges
the caller's rate budget, and sends the cached bytes. Anything else — a miss, no or a bad token, a refused
tenant, a cookie session, a non-GET — goes on to FastAPI unchanged, which answers it with its usual errors.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from lakepulse.api.cache import AnswerCache, request_key
from lakepulse.api.ratelimit import RateLimited, RateLimiter, caller_key
from lakepulse.auth.tokens import AccessError, AuthError, TokenVerifier

# The reads whose answers the routes keep in the answer cache (series, top-N, live state).
CACHED_PREFIXES: Final = ("/v1/live", "/v1/metrics/")
MAX_REMEMBERED_ROUTES: Final = 1_000
JSON_HEADERS: Final = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def query_items(query_string: bytes) -> list[tuple[str, str]]:
    """The query's (name, value) pairs as Starlette's QueryParams reads them (blank values kept)."""
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


class CachedAnswerMiddleware:
    """Pure ASGI middleware: a GET whose answer is in the app's answer cache is sent from there; everything else
passes on. It uses the app's own cache, verifier and rate limiter (`app.state`), as the routes do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Path → the route that matched it and its path parameters: matching every route's pattern took about
        # half of a cached answer's time in the app. Only paths answered from the cache get here (a few per
        # metric and endpoint), and the dict is bounded anyway.
        self._routes: dict[str, tuple[Any, Scope]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._cached_body(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        self._mark_route(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _cached_body(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if not path.startswith(CACHED_PREFIXES):
            return None
        state = scope["app"].state
        answers: AnswerCache = state.answers
        verifier: TokenVerifier = state.verifier
        limiter: RateLimiter | None = state.limiter
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if authorization is None:
            return None
        params = query_items(scope.get("query_string", b""))
        try:
            principal = verifier.authenticate(authorization.decode("latin-1"))
            # The route reads the first `tenant` (FastAPI takes the last of a repeated scalar: leave those to it).
            named = [value for name, value in params if name == "tenant"]
            if len(named) > 1:
                return None
            tenant_id = principal.tenant_for(named[0] if named else None)
        except (AuthError, AccessError, ValueError):
            return None  # the route gives the refusal, in its words
        body = answers.peek(request_key(path, tenant_id, params))
        if not isinstance(body, bytes):
            return None
        if limiter is not None:
            try:
                limiter.charge(caller_key(principal))
            except RateLimited:
                return None  # the route charges again and answers 429 with Retry-After
        return body

    def _mark_route(self, scope: Scope) -> None:
        """Name the route in the scope, as the router would, so request metrics count it by its template."""
        found = self._routes.get(scope["path"])
        if found is None:
            for route in scope["app"].router.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    found = (route, child)
                    if len(self._routes) < MAX_REMEMBERED_ROUTES:
                        self._routes[scope["path"]] = found
                    break
            else:
                return
        route, child = found
        scope.update(child)
        scope["route"] = route
