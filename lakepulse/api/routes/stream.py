"""Live push: `POST /v1/stream/token` and `GET /v1/stream`, a tenant's updates as server-sent events.

A browser's `EventSource` cannot send an Authorization header, so it opens the stream in one of two ways:
with a short-lived stream token in the URL (`?token=`, from `POST /v1/stream/token`; a bearer token there is
refused, the long-lived one never belongs in a URL) or with the dashboard's HttpOnly session cookie
(lakepulse/api/web/session.py). Other clients send their bearer token in the Authorization header as anywhere else.
The tenant comes from the credential; analyst and admin credentials name one (`tenant`).

The events, their shapes, resume and the drop policy: lakepulse/api/push/.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from lakepulse.api.deps import ANONYMOUS, PrincipalDep, SettingsDep, VerifierDep
from lakepulse.api.push import PushHub, Viewer, ViewerCapReached
from lakepulse.api.ratelimit import RateLimiter, caller_key
from lakepulse.api.responses import error_response, json_response
from lakepulse.api.schemas import error_responses
from lakepulse.api.web.session import authenticate as bearer_or_session
from lakepulse.auth.tokens import Forbidden, Principal, mint_stream_token, verify_stream_token
from lakepulse.events import TENANT_ID_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["stream"])

# A refused viewer retries after this; clients add jitter so that a full process is not hit by all at once.
VIEWER_CAP_RETRY_AFTER_S: Final = 10
# A viewer whose socket has taken no write for this long (and two heartbeats) is gone: its mailbox may not fill
# while its tenant is quiet, so the mailbox alone would not notice.
MIN_SEND_TIMEOUT_S: Final = 30.0
TENANT_QUERY: Final = Query(description="Analyst/admin credentials: the tenant to stream (required). Tenant "
                                        "credentials stream their own; naming another is 403.",
                            json_schema_extra={"pattern": TENANT_ID_PATTERN})


def get_hub(request: Request) -> PushHub:
    """Dependency: the process's live push hub."""
    hub: PushHub = request.app.state.hub
    return hub


HubDep = Annotated[PushHub, Depends(get_hub)]


class StreamTokenBody(BaseModel):
    """A stream token: put it in the stream's URL (`GET /v1/stream?token=...`) before it expires."""

    token: str = Field(description="Opens this tenant's stream only; refused as a bearer token")
    tenant: str
    expires_at: datetime
    expires_in: int = Field(description="Seconds until the token expires (a stream opened before stays open)")
    url: str = Field(description="The stream's path with the token, for `new EventSource(url)`")


@router.post(
    "/stream/token",
    response_model=None,
    responses={200: {"model": StreamTokenBody, "description": "A stream token"},
               **error_responses(400, 401, 403, 429)},
)
def stream_token(
    principal: PrincipalDep,
    settings: SettingsDep,
    tenant: Annotated[str | None, TENANT_QUERY] = None,
) -> Response:
    """A short-lived token (`stream_token_ttl_s`, a minute by default) that opens one tenant's live stream from a
    browser's `EventSource`, which cannot send an Authorization header: `GET /v1/stream?token=<token>` streams
    the tenant's updates as server-sent events (`metric`, `live_order`, `courier`, `alert`, `reset`; see
    lakepulse/api/push). Mint a new token for each (re)connection; resume with `last_event_id` (or the
    `Last-Event-ID` header). A bearer token is never accepted in the URL.
    """
    tenant_id = principal.tenant_for(tenant)
    token, expires = mint_stream_token(settings, principal, tenant_id)
    return json_response({"token": token, "tenant": tenant_id, "expires_at": expires.isoformat(),
                          "expires_in": settings.stream_token_ttl_s, "url": f"/v1/stream?token={token}"})


@dataclass(frozen=True)
class StreamAccess:
    """Who opens a stream and whose updates it carries."""

    principal: Principal
    tenant_id: str


def stream_access(
    request: Request,
    settings: SettingsDep,
    verifier: VerifierDep,
    token: Annotated[str | None, Query(description="A stream token from POST /v1/stream/token")] = None,
    tenant: Annotated[str | None, TENANT_QUERY] = None,
) -> StreamAccess:
    """Dependency: the stream's reader from a stream token (`token`), else the Authorization bearer token, else
    the session cookie (AuthError → 401 when none verifies), charged one request of its budget (429)."""
    if not settings.auth_enabled:
        principal, tenant_id = ANONYMOUS, ANONYMOUS.tenant_for(tenant)
    elif token is not None:
        grant = verify_stream_token(settings, token)
        if tenant is not None and tenant != grant.tenant_id:
            raise Forbidden("this stream token opens another tenant's stream")
        principal, tenant_id = grant.principal, grant.tenant_id
    else:
        # The session-cookie hook: the header wins, the dashboard's HttpOnly cookie serves a browser.
        principal = bearer_or_session(request, verifier)
        tenant_id = principal.tenant_for(tenant)
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is not None:
        limiter.charge(caller_key(principal))
    return StreamAccess(principal, tenant_id)


StreamAccessDep = Annotated[StreamAccess, Depends(stream_access)]


# Not in the OpenAPI document: an endless response, which a schema-driven client (docs, fuzzers) would wait on
# forever; POST /v1/stream/token documents it.
@router.get("/stream", include_in_schema=False)
async def stream(
    request: Request,
    access: StreamAccessDep,
    hub: HubDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Query(max_length=64, description="Resume after this event (a new "
                                                "EventSource cannot send the Last-Event-ID header)")] = None,
) -> Response:
    """The tenant's updates as server-sent events, from now on (or after `Last-Event-ID`); 503 with Retry-After
    when this process serves as many viewers as it may."""
    resume = request.headers.get("last-event-id") or last_event_id
    try:
        viewer, first = hub.subscribe(access.tenant_id, resume)
    except ViewerCapReached as exc:
        return error_response(503, str(exc), {"Retry-After": str(VIEWER_CAP_RETRY_AFTER_S)})
    return ViewerStream(hub, viewer, first, settings.sse_heartbeat_s)


def heartbeat() -> ServerSentEvent:
    """A comment line: keeps proxies from closing an idle stream and shows the client the server is there."""
    return ServerSentEvent(comment="hb", sep="\n")


async def viewer_chunks(viewer: Viewer, first: bytes) -> AsyncIterator[bytes]:
    """The viewer's first bytes, then its mailbox's chunks until it is closed."""
    yield first
    while (chunk := await viewer.next_chunk()) is not None:
        yield chunk


class ViewerStream(EventSourceResponse):
    """One viewer's SSE response: pre-framed chunks, heartbeats, ended at once when the hub drops the viewer,
    and the viewer forgotten however the response ends (a HEAD request never iterates the body)."""

    def __init__(self, hub: PushHub, viewer: Viewer, first: bytes, heartbeat_s: float) -> None:
        super().__init__(viewer_chunks(viewer, first), ping=heartbeat_s, ping_message_factory=heartbeat, sep="\n",
                         send_timeout=max(MIN_SEND_TIMEOUT_S, 2 * heartbeat_s))
        self._hub = hub
        self._viewer = viewer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.CancelScope() as dropped:
                # Cancels a send that waits on a client not reading, which nothing else would end.
                self._viewer.on_drop = dropped.cancel
                await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("a live viewer of %s took no data for %.0f s; disconnected", self._viewer.tenant_id,
                     self.send_timeout or 0)
        finally:
            self._viewer.on_drop = None
            self._hub.unsubscribe(self._viewer)
