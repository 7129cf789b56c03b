"""Live push on the real stack: the metrics app under a real uvicorn server (in a thread of this process, on a
free loopback port: SSE needs real streaming), its hub reading the stack's Kafka topics.

Two viewers of a fresh tenant A and one of a fresh tenant B (each opened with another credential: a stream
token in the URL, the Authorization header, the session cookie) see the events posted through the running
ingest API for their own tenant, after the streaming job has aggregated them, and never the other's. A viewer
that stops reading (a raw socket with a tiny receive buffer that never reads past the headers) is dropped when
its mailbox is full, while the others keep receiving every update; a new viewer resumes from `Last-Event-ID`.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from lakepulse.api.app import create_app
from lakepulse.api.push import PushHub
from lakepulse.auth.tokens import Principal, mint_stream_token, mint_token
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import free_port
from tests.stack_events import order, post

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "ingest", "streaming")]

# Bounds, not timing assertions: an event goes ingest → events.raw → the streaming job's minute query →
# metrics.minute → the hub; the live tables come from the job's slower queries (as tests/integration/test_api_live).
METRIC_WAIT_S = 120
LIVE_WAIT_S = 300
READ_WAIT_S = 60
QUEUE_SIZE = 4
FLOOD_PAD = 32 * 1024
# The slow viewer's socket buffers hold a few MB at most (tcp_wmem's maximum is 4 MB here): ~130 rounds of
# 32 kB fill them, QUEUE_SIZE more fill its mailbox. Far more rounds than that means no viewer is ever dropped.
MAX_FLOOD_ROUNDS = 3000


@dataclass
class Served:
    url: str
    port: int
    app: FastAPI
    settings: Settings

    @property
    def hub(self) -> PushHub:
        hub: PushHub = self.app.state.hub
        return hub


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll until `condition()` holds (a bound: fail naming `what` after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(interval_s)


@pytest.fixture
def served(stack: Context) -> Iterator[Served]:
    """The app (small mailboxes, 1 s heartbeats, no rate limit) under uvicorn in a thread."""
    settings = stack.settings.model_copy(update={"sse_queue_size": QUEUE_SIZE, "sse_heartbeat_s": 1.0,
                                                 "api_rate_limit_per_s": 0.0})
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, name="sse-test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the in-process API server started")
    try:
        yield Served(f"http://127.0.0.1:{port}", port, app, settings)
    finally:
        server.should_exit = True
        thread.join(30)


class Viewer:
    """An SSE client in a thread: every event's id and JSON, and the heartbeats, as they arrive."""

    def __init__(self, url: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                 cookies: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.heartbeats = 0
        self.status: int | None = None
        self.error: Exception | None = None
        self.opened = threading.Event()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, params, headers, cookies), daemon=True)
        self._thread.start()
        assert self.opened.wait(READ_WAIT_S) and self.status == 200, (self.status, self.error)

    def _read(self, url: str, params: dict[str, str] | None, headers: dict[str, str] | None,
              cookies: dict[str, str] | None) -> None:
        event_id: str | None = None
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=READ_WAIT_S), cookies=cookies) as client, \
                    client.stream("GET", f"{url}/v1/stream", params=params, headers=headers) as response:
                self.status = response.status_code
                self.opened.set()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        break
                    if line.startswith(": hb"):
                        self.heartbeats += 1
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        self.events.append((event_id, orjson.loads(line[6:])))
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.opened.set()
            self.ended.set()

    def received(self, kind: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The events so far of `type` kind (any without), with these field values."""
        return [event for _, event in list(self.events) if (kind is None or event["type"] == kind)
                and all(event.get(k) == v for k, v in fields.items())]

    def flood_seqs(self) -> list[int]:
        return [event["seq"] for event in self.received("metric", metric="flood")]

    def close(self) -> None:
        self._stop.set()


def open_slow_viewer(port: int, token: str) -> socket.socket:
    """A viewer that reads the response headers and then nothing: a 4 kB receive buffer that fills at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(READ_WAIT_S)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"the server closed the slow viewer's connection: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def stream_token(settings: Settings, tenant: str, now: datetime | None = None) -> str:
    principal = Principal(subject="sse-test", tenant_id=tenant, role="tenant")
    return mint_stream_token(settings, principal, tenant, now=now)[0]


def bearer_token(settings: Settings, tenant: str) -> str:
    return mint_token(settings, tenant=tenant, ttl=timedelta(minutes=30), subject="sse-test")


def flood(hub: PushHub, tenant: str, seq: int) -> None:
    """One large update of `tenant` handed to the hub as its Kafka feed hands them (from another thread)."""
    hub.publish([(tenant, orjson.dumps({"type": "metric", "tenant": tenant, "metric": "flood", "seq": seq,
                                        "pad": "x" * FLOOD_PAD}))])


def have_read(count: int, *viewers: Viewer) -> Callable[[], bool]:
    """Whether each of `viewers` has read `count` flood updates."""
    return lambda: all(len(viewer.flood_seqs()) == count for viewer in viewers)


def test_viewers_get_their_tenants_updates_only_and_a_viewer_that_stops_reading_is_dropped(served: Served) -> None:
    run = uuid.uuid4().hex[:10]
    tenant_a, tenant_b = f"sse-a-{run}", f"sse-b-{run}"
    settings, hub = served.settings, served.hub
    a_token = Viewer(served.url, params={"token": stream_token(settings, tenant_a)})
    a_header = Viewer(served.url, headers={"Authorization": f"Bearer {bearer_token(settings, tenant_a)}"})
    b_cookie = Viewer(served.url, cookies={"lakepulse_session": bearer_token(settings, tenant_b)})
    viewers = [a_token, a_header, b_cookie]
    try:
        assert hub.wait_ready(60), "the hub's Kafka feed was not assigned its topics"
        assert (hub.fanout.viewers_of(tenant_a), hub.fanout.viewers_of(tenant_b)) == (2, 1)

        # Events for A and for B through the real ingest API; each tenant's viewers see its own minute.
        at = datetime.now(UTC)  # one minute for all three
        placed = order(tenant_a, at, 12.5, source="sse-test")
        post(settings, [placed, order(tenant_b, at, 7.0, source="sse-test"),
                        order(tenant_b, at, 8.0, source="sse-test")])
        wait_until(lambda: all(v.received("metric", metric="orders_placed", value=1) for v in (a_token, a_header)),
                   METRIC_WAIT_S, "A's viewers got A's orders_placed minute")
        wait_until(lambda: bool(b_cookie.received("metric", metric="orders_placed", value=2)), METRIC_WAIT_S,
                   "B's viewer got B's orders_placed minute")
        wait_until(lambda: bool(a_token.received("metric", metric="gross_sales", value=12.5, unit="currency")),
                   METRIC_WAIT_S, "A's viewer got A's gross_sales minute")
        wait_until(lambda: b_cookie.heartbeats > 0, READ_WAIT_S, "B's viewer got a heartbeat")

        # A viewer that stops reading: flood A in rounds, each read by both fast viewers before the next, until
        # the slow one's socket buffers and then its mailbox are full.
        slow = open_slow_viewer(served.port, stream_token(settings, tenant_a))
        wait_until(lambda: hub.fanout.viewers_of(tenant_a) == 3, READ_WAIT_S, "the slow viewer subscribed")
        sent = 0
        while hub.stats().dropped == 0:
            assert sent < MAX_FLOOD_ROUNDS, "no viewer was dropped"
            flood(hub, tenant_a, sent)
            sent += 1
            wait_until(have_read(sent, a_token, a_header), READ_WAIT_S, f"the fast viewers read flood update {sent}",
                       interval_s=0.002)
        assert hub.stats().dropped == 1 and hub.fanout.viewers_of(tenant_a) == 2
        flood(hub, tenant_a, sent)
        sent += 1
        wait_until(have_read(sent, a_token, a_header), READ_WAIT_S, "the fast viewers read the update after the drop")
        for viewer in (a_token, a_header):  # every update, in order, none lost
            assert viewer.flood_seqs() == list(range(sent))
            assert not viewer.ended.is_set()

        # The dropped connection is closed by the server: what was in flight, then end of stream.
        received = bytearray()
        while chunk := slow.recv(1 << 16):
            received += chunk
        slow.close()
        slow_seqs = [int(n) for n in re.findall(rb'"metric":"flood","seq":(\d+)', received)]
        assert slow_seqs == list(range(len(slow_seqs))) and len(slow_seqs) < sent - QUEUE_SIZE
        print(f"flood: {sent} updates of {FLOOD_PAD // 1024} kB; the slow viewer received {len(slow_seqs)} "
              f"({len(received)} bytes) before it was dropped")

        # A new viewer resuming from an event A's viewers saw gets the events after it, then carries on.
        resume_id, _ = next((event_id, event) for event_id, event in a_token.events
                            if event.get("seq") == sent - 3)
        resumed = Viewer(served.url, params={"token": stream_token(settings, tenant_a)},
                         headers={"Last-Event-ID": str(resume_id)})
        viewers.append(resumed)
        wait_until(lambda: resumed.flood_seqs() == [sent - 2, sent - 1], READ_WAIT_S, "the resumed viewer's backlog")
        assert not resumed.received("reset")

        # The order's live state, from the streaming job's slower query.
        order_id = placed["properties"]["order_id"]
        wait_until(lambda: bool(a_header.received("live_order", order_id=order_id)), LIVE_WAIT_S,
                   "A's viewer got the order's live state")
        (live,) = a_header.received("live_order", order_id=order_id)[:1]
        assert (live["status"], live["amount"], live["currency"]) == ("placed", 12.5, "EUR")

        # Isolation: nothing of B reached A's viewers, nothing of A reached B's (flood included).
        assert {event["tenant"] for _, event in a_token.events + a_header.events + resumed.events} == {tenant_a}
        assert {event["tenant"] for _, event in b_cookie.events} == {tenant_b}
        assert not b_cookie.received("metric", metric="flood")
    finally:
        for viewer in viewers:
            viewer.close()


def test_the_stream_url_takes_only_unexpired_stream_tokens(served: Served) -> None:
    settings = served.settings
    tenant = f"sse-t-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=served.url, timeout=30) as client:
        normal = client.get("/v1/stream", params={"token": bearer_token(settings, tenant)})
        assert normal.status_code == 401 and "stream token" in normal.json()["detail"]
        expired = stream_token(settings, tenant, now=datetime.now(UTC) - timedelta(minutes=5))
        refused = client.get("/v1/stream", params={"token": expired})
        assert refused.status_code == 401 and "expired" in refused.json()["detail"]
        minted = client.post("/v1/stream/token", headers={"Authorization": f"Bearer {bearer_token(settings, tenant)}"})
        assert minted.status_code == 200
        # The minted token opens the stream (a HEAD-less check: open, see the opening, close).
        with client.stream("GET", minted.json()["url"]) as response:
            assert response.status_code == 200
            assert next(response.iter_lines()) == "retry: 3000"
    wait_until(lambda: served.hub.stats().viewers == 0, READ_WAIT_S, "the closed stream's viewer was forgotten")
