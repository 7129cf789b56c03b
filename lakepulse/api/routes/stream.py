"""Live push: `POST /v1/stream/token` and `GET /v1/stream`, a tenant's updates as server-sent events.

A browser's `EventSource` cannot send an Authorization header, so it opens the stream in one of two ways:
with a short-lived stream token in the URL (`?token=`, from `POST /v1/stream/token`; a bearer token there is
refused, the long-lived one never belongs in a URL) or with the dashboard's HttpOnly session cookie
(lakepulse/api/web/session.py). Other clients send their bearer token in the Authorization header as anywhere else.
The tenant comes from the credential; analyst and admin credentials name one (`tenant`).

The events, their shapes, resume and the drop policy: lakepulse/api/push/.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
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
    end_streams_on_exit(hub)
    return ViewerStream(hub, viewer, first, settings.sse_heartbeat_s)


HEARTBEAT: Final = b": hb\n\n"  # a comment: keeps proxies from closing an idle stream, shows the client we are here
SSE_HEADERS: Final = {"cache-control": "no-store", "connection": "keep-alive", "x-accel-buffering": "no"}
# Open streams would hold a shutting-down uvicorn forever (it waits for every response before the app's shutdown):
# one task per hub ends them all when sse-starlette's shutdown watcher sees the exit signal.
_exit_watches: weakref.WeakKeyDictionary[PushHub, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def end_streams_on_exit(hub: PushHub) -> None:
    """Ends every viewer's stream of `hub` when the server starts to shut down (one watching task per hub)."""
    watch = _exit_watches.get(hub)
    if watch is None or watch.done():
        _exit_watches[hub] = asyncio.get_running_loop().create_task(_close_on_exit(hub))


async def _close_on_exit(hub: PushHub) -> None:
    await EventSourceResponse._listen_for_exit_signal()
    hub.fanout.close_all()


class ViewerStream(Response):
    """One viewer's SSE response: pre-framed chunks as they come, a heartbeat after `heartbeat_s` without a write,
    ended at once when the hub drops the viewer or a write has waited `send_timeout_s`, and the viewer forgotten
    however the response ends (a HEAD request gets the headers only).

    A plain ASGI response rather than sse-starlette's EventSourceResponse, for 10,000 viewers on one process:
    - While idle it lends the viewer a `writer` (Viewer.writer): the fan-out writes each update straight to the
      socket, with no task woken per viewer. Only a write that must wait (the client reads slowly, the socket's
      buffers are full) is handed to the response's task, which finishes it and then writes what queued meanwhile.
    - One lazy timer per viewer, re-armed only when it fires, serves both the heartbeat and the send timeout (no
      cancel scope and timer per write, no ping task); one more task waits for the client to hang up."""

    media_type = "text/event-stream"

    def __init__(self, hub: PushHub, viewer: Viewer, first: bytes, heartbeat_s: float) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = max(MIN_SEND_TIMEOUT_S, 2 * heartbeat_s)
        self._hub = hub
        self._viewer = viewer
        self._first = first
        self._cut_reason: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._send: Send | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_write = 0.0
        self._sending_since: float | None = None
        self._stalled: tuple[Coroutine[Any, Any, None], Any] | None = None  # a direct write waiting for the socket
        self._direct: Callable[[bytes], None] | None = None  # `_write_now` when this server's `send` allows it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        viewer = self._viewer
        listener: asyncio.Task[None] | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            self._loop = loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._send = send
            self._last_write = loop.time()
            self._timer = loop.call_at(self._last_write + self.heartbeat_s, self._tick)
            viewer.on_drop = self._cut_dropped
            listener = loop.create_task(self._await_disconnect(receive))
            try:
                await self._write_first(send)
                await self._serve(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except asyncio.CancelledError:
                if self._cut_reason is None or self._task is None:
                    raise
                # Our own cut: uvicorn closes the connection after what it has buffered.
                self._task.uncancel()
                if self._cut_reason == "timeout":
                    log.info("a live viewer of %s took no data for %.0f s; disconnected", viewer.tenant_id,
                             self.send_timeout_s)
        finally:
            viewer.writer = None
            if self._stalled is not None:
                self._stalled[0].close()
            if self._timer is not None:
                self._timer.cancel()
            if listener is not None:
                listener.cancel()
            viewer.on_drop = None
            self._hub.unsubscribe(viewer)

    async def _serve(self, send: Send) -> None:
        """Write what the viewer is offered until it is closed."""
        viewer = self._viewer
        while True:
            if self._stalled is not None:
                sending, blocker = self._stalled
                self._stalled = None
                await _Rest(sending, blocker)
                self._wrote()
            elif (chunk := viewer.take()) is not None:
                await self._write(send, chunk)
            elif viewer.closed:
                return
            else:
                viewer.writer = self._direct  # idle: the fan-out writes from here on, until a write stalls
                try:
                    await viewer.wait()
                finally:
                    viewer.writer = None

    async def _write_first(self, send: Send) -> None:
        """Write the first bytes, driving `send` by hand as `_write_now` will: when it returns at once, the
        fan-out may write this viewer's chunks directly; when it waits (a test client's send, or a socket already
        full), every chunk is written by this task (`_direct` stays None)."""
        assert self._loop is not None
        self._sending_since = self._loop.time()
        sending = cast("Coroutine[Any, Any, None]",
                       send({"type": "http.response.body", "body": self._first, "more_body": True}))
        try:
            blocker = sending.send(None)
        except StopIteration:
            self._direct = self._write_now
        else:
            await _Rest(sending, blocker)
        self._wrote()

    async def _write(self, send: Send, chunk: bytes) -> None:
        assert self._loop is not None
        self._sending_since = self._loop.time()
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self._wrote()

    def _wrote(self) -> None:
        self._last_write, self._sending_since = self._sending_since or self._last_write, None

    def _write_now(self, chunk: bytes) -> None:
        """Viewer.writer: write `chunk` on the caller's turn of the loop. The ASGI `send` is driven by hand: it
        returns at once unless the socket's buffers are full, and then the rest of it goes to the response's task
        (nothing on the way from here to the socket keeps context across the wait)."""
        assert self._send is not None and self._loop is not None
        self._sending_since = self._loop.time()
        # uvicorn's `send` and every middleware's are coroutine functions: their result can be driven by hand
        # (`_write_first` saw that the first one completed without a task).
        sending = cast("Coroutine[Any, Any, None]",
                       self._send({"type": "http.response.body", "body": chunk, "more_body": True}))
        try:
            blocker = sending.send(None)
        except StopIteration:
            self._wrote()
            return
        except Exception:
            log.exception("a write to a live viewer of %s failed; disconnected", self._viewer.tenant_id)
            self._cut("failed")
            return
        self._viewer.writer = None
        self._stalled = (sending, blocker)
        self._viewer.wake()

    async def _await_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._viewer.close()  # the response ends; a write waiting on the socket is released by the server

    def _tick(self) -> None:
        """The viewer's timer: a heartbeat when idle for `heartbeat_s`, the cut when a write has waited too long;
        re-armed for the next moment either could be due (writes only move the moments, never the timer)."""
        assert self._loop is not None
        now = self._loop.time()
        if self._sending_since is not None:
            if now - self._sending_since >= self.send_timeout_s:
                self._cut("timeout")
                return
            due = self._sending_since + self.send_timeout_s
        elif now - self._last_write >= self.heartbeat_s:
            self._viewer.offer(HEARTBEAT)  # refused only when the mailbox is full: then it is not idle
            self._last_write = max(self._last_write, now)
            due = now + self.heartbeat_s
        else:
            due = self._last_write + self.heartbeat_s
        self._timer = self._loop.call_at(due, self._tick)

    def _cut_dropped(self) -> None:
        self._cut("dropped")

    def _cut(self, reason: str) -> None:
        """End the response now, even while it waits on a client that does not read."""
        self._viewer.writer = None
        if self._cut_reason is None and self._task is not None:
            self._cut_reason = reason
            self._task.cancel()


class _Rest:
    """Awaits the rest of a coroutine started outside any task (ViewerStream._write_now) that waits on `blocker`:
    what `await` would have done had a task started it, exceptions (a cancel) included."""

    __slots__ = ("_coroutine", "_blocker")

    def __init__(self, coroutine: Coroutine[Any, Any, None], blocker: Any) -> None:
        self._coroutine = coroutine
        self._blocker = blocker

    def __await__(self) -> Generator[Any, None, None]:
        coroutine, blocker = self._coroutine, self._blocker
        while True:
            try:
                yield blocker
            except BaseException as exc:  # noqa: BLE001 - passed on into the coroutine, as `await` does
                try:
                    blocker = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    blocker = coroutine.send(None)
                except StopIteration:
                    return
