"""Live push without Kafka: records shaped into per-tenant events, the fan-out (framing once per tenant, resume,
slow viewers dropped, the viewer cap), the hub's thread-to-loop handoff, one viewer's response (heartbeats, the
send timeout, the cut of a dropped viewer, hang-ups, shutdown), and the stream routes' auth and 503."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from datasketches import hll_sketch
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sse_starlette.sse import AppStatus

from lakepulse.api.app import create_app
from lakepulse.api.push import hub as hub_module
from lakepulse.api.push.fanout import OPENING, Fanout, ResumeBuffer, Viewer, ViewerCapReached, frame, parse_event_id
from lakepulse.api.push.hub import PushHub
from lakepulse.api.push.shapes import Shaper, encode
from lakepulse.api.routes import stream as stream_module
from lakepulse.api.routes.stream import ViewerStream
from lakepulse.auth.tokens import (
    AuthError,
    Principal,
    TokenVerifier,
    mint_stream_token,
    mint_token,
    verify_stream_token,
)
from lakepulse.catalog import get_catalog
from lakepulse.catalog.sketches import HLL_LG_CONFIG_K
from lakepulse.settings import Settings

T = TypeVar("T")

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
NOW = datetime(2026, 3, 2, 12, 30, 20, tzinfo=UTC)
MINUTE = NOW.replace(second=0)


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), sse_queue_size=2, sse_max_viewers=3,
                    api_rate_limit_per_s=0.0)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def minute_row(tenant: str, metric: str, dims: dict[str, str], count: int, updated: datetime,
               start: datetime = MINUTE, **extra: Any) -> bytes:
    """A `metrics.minute` record as the streaming job writes it (Pinot-encoded: epoch ms, JSON text, hex)."""
    dims_key = "|".join(f"{k}={v}" for k, v in sorted(dims.items()))
    row = {"tenant_id": tenant, "metric": metric, "dims_key": dims_key, "dims": orjson.dumps(dims).decode(),
           "window_start": ms(start), "window_end": ms(start + timedelta(minutes=1)), "count": count,
           "updated_at": ms(updated), **extra}
    return orjson.dumps(row)


def shaper_at(settings: Settings, now: datetime = NOW) -> Shaper:
    shaper = Shaper(settings)
    shaper.minutes.restart(now - shaper.minutes.keep)
    return shaper


def events(shaper: Shaper, now: datetime = NOW) -> list[dict[str, Any]]:
    """The flushed updates as a viewer reads them (through their JSON)."""
    return [orjson.loads(encode(update.event)) for update in shaper.flush(now)]


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: in a whole-suite run, Playwright's sync API (the browser tests) leaves
    an event loop running in the main thread, where `asyncio.run` refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# --- shaping -------------------------------------------------------------------------------------------------


def test_minute_rows_become_the_tenants_total_of_the_minute_and_a_new_version_replaces_its_row(
        settings: Settings) -> None:
    shaper = shaper_at(settings)
    topic = settings.topic_metrics_minute
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "ios"}, 2, NOW))
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "web"}, 3, NOW + timedelta(seconds=1)))
    shaper.add(topic, minute_row("B", "orders_placed", {"device": "ios"}, 7, NOW))
    first = events(shaper)
    assert first == [
        {"type": "metric", "tenant": "A", "metric": "orders_placed", "unit": "orders",
         "window_start": "2026-03-02T12:30:00Z", "window_end": "2026-03-02T12:31:00Z", "value": 5, "count": 5,
         "as_of": "2026-03-02T12:30:21Z"},
        {"type": "metric", "tenant": "B", "metric": "orders_placed", "unit": "orders",
         "window_start": "2026-03-02T12:30:00Z", "window_end": "2026-03-02T12:31:00Z", "value": 7, "count": 7,
         "as_of": "2026-03-02T12:30:20Z"},
    ]
    # The ios row grows from 2 to 4: the minute is 4 + 3, not 2 + 4 + 3; an older version changes nothing.
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "ios"}, 4, NOW + timedelta(seconds=5)))
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "web"}, 1, NOW - timedelta(seconds=5)))
    (second,) = events(shaper)
    assert (second["tenant"], second["value"], second["as_of"]) == ("A", 7, "2026-03-02T12:30:25Z")
    assert events(shaper) == []  # nothing changed since


def test_many_rows_of_one_minute_in_a_batch_are_one_event(settings: Settings) -> None:
    shaper = shaper_at(settings)
    for i in range(50):
        shaper.add(settings.topic_metrics_minute,
                   minute_row("A", "events", {"device": f"d{i % 5}"}, i + 1, NOW + timedelta(milliseconds=i)))
    (event,) = events(shaper)
    assert event["value"] == sum(range(46, 51))  # the newest row of each of the five devices


def test_sums_means_quantiles_and_distinct_counts_merge_by_kind(settings: Settings) -> None:
    shaper = shaper_at(settings)
    topic = settings.topic_metrics_minute
    shaper.add(topic, minute_row("A", "gross_sales", {"channel": "app"}, 2, NOW, sum=30.5))
    shaper.add(topic, minute_row("A", "gross_sales", {"channel": "web"}, 1, NOW, sum=9.5))
    shaper.add(topic, minute_row("A", "food_rating", {}, 4, NOW, sum=18.0))
    prep = get_catalog().metric("prep_time_seconds")
    buckets = [0] * prep.bucket_count
    buckets[3] = 10
    shaper.add(topic, minute_row("A", "prep_time_seconds", {}, 10, NOW, sum=1000.0, min=50.0, max=150.0,
                                 buckets=orjson.dumps(buckets).decode()))
    for device, users in (("ios", ["u1", "u2"]), ("web", ["u2", "u3"])):
        sketch = hll_sketch(HLL_LG_CONFIG_K)
        for user in users:
            sketch.update(user)
        shaper.add(topic, minute_row("A", "active_users", {"device": device}, len(users), NOW,
                                     hll_sketch=sketch.serialize_compact().hex()))
    by_metric = {event["metric"]: event for event in events(shaper)}
    assert by_metric["gross_sales"]["value"] == 40.0
    assert by_metric["food_rating"]["value"] == 4.5
    assert by_metric["active_users"]["value"] == 3  # u2 counted once across the two devices
    assert by_metric["prep_time_seconds"]["value"] == 100.0
    quantiles = by_metric["prep_time_seconds"]["quantiles"]
    assert set(quantiles) == {"p50", "p90", "p99"}
    assert all(50.0 <= q <= 150.0 for q in quantiles.values())
    assert "quantiles" not in by_metric["gross_sales"]


def test_replayed_rows_push_nothing_but_count_in_the_next_total(settings: Settings) -> None:
    shaper = shaper_at(settings)
    topic = settings.topic_metrics_minute
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "ios"}, 2, NOW), emit=False)
    assert events(shaper) == []
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "web"}, 1, NOW))
    assert [event["value"] for event in events(shaper)] == [3]


def test_minutes_before_the_horizon_are_not_pushed_and_old_minutes_are_forgotten(settings: Settings) -> None:
    shaper = shaper_at(settings)
    topic = settings.topic_metrics_minute
    old = MINUTE - timedelta(minutes=30)  # a late event's minute, older than the replay
    shaper.add(topic, minute_row("A", "orders_placed", {}, 1, NOW, start=old))
    assert events(shaper) == []
    shaper.add(topic, minute_row("A", "orders_placed", {}, 1, NOW))
    assert len(events(shaper)) == 1
    assert len(shaper.minutes) == 1
    later = NOW + timedelta(minutes=11)
    shaper.flush(later)
    assert len(shaper.minutes) == 0
    # Once forgotten, a late row of that minute is not taken for the minute's only row.
    shaper.add(topic, minute_row("A", "orders_placed", {"device": "ios"}, 1, later))
    assert events(shaper, later) == []


def test_records_that_are_not_rows_of_a_tenant_are_skipped(settings: Settings) -> None:
    shaper = shaper_at(settings)
    shaper.add(settings.topic_metrics_minute, b"not json")
    shaper.add(settings.topic_metrics_minute, b"[1, 2]")
    shaper.add(settings.topic_metrics_minute, minute_row("A", "no_such_metric", {}, 1, NOW))
    shaper.add(settings.topic_metrics_minute, minute_row("not a tenant!", "events", {}, 1, NOW))
    shaper.add(settings.topic_orders_live, orjson.dumps({"tenant_id": "A"}))  # no order id
    shaper.add("some.other.topic", orjson.dumps({"tenant_id": "A", "order_id": "o"}))
    shaper.add(settings.topic_orders_live, None)  # a tombstone
    assert events(shaper) == []
    assert shaper.skipped == 4  # not JSON, not an object, not a tenant, no order id


def test_live_rows_and_alerts_are_shaped_and_coalesced_per_thing(settings: Settings) -> None:
    shaper = shaper_at(settings)
    order = {"tenant_id": "A", "order_id": "o-1", "status": "placed", "status_at": ms(NOW), "amount": 12.5,
             "currency": "EUR", "placed_at": ms(NOW), "last_event_at": ms(NOW), "updated_at": ms(NOW)}
    shaper.add(settings.topic_orders_live, orjson.dumps(order))
    shaper.add(settings.topic_orders_live, orjson.dumps({**order, "status": "confirmed",
                                                         "updated_at": ms(NOW) + 1000}))
    shaper.add(settings.topic_orders_live, orjson.dumps({**order, "tenant_id": "B"}))
    shaper.add(settings.topic_couriers_live, orjson.dumps({
        "tenant_id": "A", "courier_id": "c-1", "status": "arrived_at_restaurant", "order_id": "o-1",
        "status_at": ms(NOW), "is_waiting": True, "last_event_at": ms(NOW), "updated_at": ms(NOW)}))
    alert = {"id": "r1:A:1:firing", "breach_id": "r1:A:1", "rule_id": "r1", "tenant_id": "A",
             "metric": "orders_placed", "status": "firing", "reason": "breached", "value": 12.0, "threshold": 10.0,
             "condition": "gt", "window_minutes": 5, "window_end_ms": ms(MINUTE), "anomaly": False,
             "baseline_mean": None, "baseline_std": None, "dimensions": {}, "channel": "https://hooks.example/x"}
    shaper.add(settings.topic_alerts, orjson.dumps(alert))
    shaper.add(settings.topic_alerts, orjson.dumps({**alert, "id": "r1:A:1:resolved", "status": "resolved",
                                                    "reason": "recovered"}))
    got = events(shaper)
    assert got[0] == {"type": "live_order", "tenant": "A", "order_id": "o-1", "status": "confirmed",
                      "currency": "EUR", "amount": 12.5, "status_at": "2026-03-02T12:30:20Z",
                      "as_of": "2026-03-02T12:30:21Z"}
    assert got[1]["tenant"] == "B" and got[1]["status"] == "placed"
    assert got[2] == {"type": "courier", "tenant": "A", "courier_id": "c-1", "status": "arrived_at_restaurant",
                      "order_id": "o-1", "status_at": "2026-03-02T12:30:20Z", "is_waiting": True,
                      "as_of": "2026-03-02T12:30:20Z"}
    assert [(e["type"], e["status"]) for e in got[3:]] == [("alert", "firing"), ("alert", "resolved")]
    assert got[3]["window_end"] == "2026-03-02T12:30:00Z" and got[3]["breach_id"] == "r1:A:1"
    assert "channel" not in got[3] and "tenant_id" not in got[3] and "baseline_mean" not in got[3]
    assert len(got) == 5


# --- fan-out -------------------------------------------------------------------------------------------------


def take(viewer: Viewer) -> bytes:
    """What the viewer's response would send next (something must be queued: this does not wait)."""
    assert viewer.queued
    chunk = run_in_own_loop(viewer.next_chunk())
    assert chunk is not None
    return chunk


def messages(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """(id, JSON) of each SSE message with data in `data` (comments and retry lines skipped)."""
    parsed = []
    for block in data.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if line and not line.startswith(b":")
                      and b": " in line)
        if b"data" in fields:
            parsed.append((fields[b"id"].decode() if b"id" in fields else None, orjson.loads(fields[b"data"])))
    return parsed


def body(tenant: str, n: int) -> bytes:
    return encode({"type": "metric", "tenant": tenant, "metric": "events", "value": n})


def test_an_update_is_framed_once_and_the_same_bytes_reach_every_viewer_of_its_tenant_only() -> None:
    fanout = Fanout(max_viewers=10, queue_size=4, epoch="e1")
    a1, first = fanout.subscribe("A")
    a2, _ = fanout.subscribe("A")
    b1, _ = fanout.subscribe("B")
    assert first == OPENING
    fanout.deliver([("A", body("A", 1)), ("B", body("B", 1)), ("A", body("A", 2))])
    chunk_a1, chunk_a2, chunk_b1 = take(a1), take(a2), take(b1)
    assert chunk_a1 is chunk_a2  # serialised once, shared by the tenant's viewers
    assert chunk_a1 == frame("e1", 1, body("A", 1)) + frame("e1", 2, body("A", 2))
    assert chunk_a1.startswith(b"id: e1-1\ndata: {")
    assert messages(chunk_b1) == [("e1-1", {"type": "metric", "tenant": "B", "metric": "events", "value": 1})]
    assert fanout.stats().events == 3


def test_last_event_id_replays_what_was_missed_or_sends_a_reset() -> None:
    fanout = Fanout(max_viewers=10, queue_size=4, resume_events=3, epoch="e1")
    fanout.deliver([("A", body("A", n)) for n in range(1, 6)])  # A's events 1..5; 3..5 kept
    _, current = fanout.subscribe("A", "e1-5")
    assert current == OPENING
    _, missed = fanout.subscribe("A", "e1-3")
    assert [event_id for event_id, _ in messages(missed)] == ["e1-4", "e1-5"]
    for gone in ("e1-1", "other-4", "e1-9", "garbage", "e1-"):  # evicted, another process, not reached, bad
        _, first = fanout.subscribe("B" if gone == "garbage" else "A", gone)
        ((event_id, event),) = messages(first)
        assert event["type"] == "reset"
        assert event_id == ("e1-0" if gone == "garbage" else "e1-5")  # resume from here after the reset
    assert fanout.stats().resets == 5


def test_resume_buffer_keeps_recent_frames_by_count_and_age() -> None:
    buffer = ResumeBuffer(size=3)
    for seq in range(1, 5):
        buffer.append(seq, b"f%d" % seq, at=float(seq))
    assert buffer.since(4, 4) == []
    assert buffer.since(2, 4) == [b"f3", b"f4"]
    assert buffer.since(1, 4) == [b"f2", b"f3", b"f4"]
    assert buffer.since(0, 4) is None  # f1 was evicted
    assert buffer.since(5, 4) is None
    buffer.prune(before=4.0)
    assert buffer.since(3, 4) == [b"f4"]
    assert buffer.since(2, 4) is None
    assert parse_event_id("ab-12") == ("ab", 12) and parse_event_id("12") is None and parse_event_id(None) is None


def test_a_viewer_that_stops_reading_is_dropped_and_the_others_keep_receiving() -> None:
    fanout = Fanout(max_viewers=10, queue_size=2, epoch="e1")
    fast, _ = fanout.subscribe("A")
    slow, _ = fanout.subscribe("A")
    cancelled: list[bool] = []
    slow.on_drop = lambda: cancelled.append(True)
    for n in range(1, 4):
        fanout.deliver([("A", body("A", n))])
        assert messages(take(fast))[0][1]["value"] == n  # the fast viewer reads each delivery
    assert slow.dropped and cancelled == [True]
    assert fanout.viewers_of("A") == 1 and fanout.stats().dropped == 1
    assert run_in_own_loop(slow.next_chunk()) is None  # its response ends; what was queued is not sent
    fanout.deliver([("A", body("A", 4))])
    assert messages(take(fast))[0][1]["value"] == 4
    assert not fast.dropped


def test_the_viewer_cap_refuses_more_viewers_until_one_leaves() -> None:
    fanout = Fanout(max_viewers=2, queue_size=2)
    first, _ = fanout.subscribe("A")
    fanout.subscribe("B")
    with pytest.raises(ViewerCapReached):
        fanout.subscribe("C")
    fanout.unsubscribe(first)
    fanout.unsubscribe(first)  # twice (the route's cleanup after a drop): counted once
    fanout.subscribe("C")
    assert fanout.viewer_count == 2 and fanout.stats().refused == 1


def test_a_reset_for_everyone_moves_every_tenant_past_what_was_lost() -> None:
    fanout = Fanout(max_viewers=10, queue_size=4, epoch="e1")
    viewer, _ = fanout.subscribe("A")
    fanout.deliver([("A", body("A", 1)), ("B", body("B", 1))])
    take(viewer)
    fanout.reset_all("fell behind")
    ((event_id, event),) = messages(take(viewer))
    assert (event_id, event["type"]) == ("e1-2", "reset")
    _, first = fanout.subscribe("B", "e1-1")  # B had no viewer, but its resume must not skip the gap
    assert messages(first)[0][1]["type"] == "reset"


# --- the hub: feed thread → event loop ------------------------------------------------------------------------


class FakeFeed:
    """Stands in for the Kafka feed; the test publishes through the hub as the feed would."""

    started = 0

    def __init__(self, settings: Settings, sink: Any) -> None:
        self.sink = sink
        self.ready = threading.Event()
        self.stopped = False

    def start(self) -> None:
        FakeFeed.started += 1
        self.ready.set()

    def stop(self, timeout_s: float = 0) -> None:
        self.stopped = True


def publish_from_a_thread(hub: PushHub, batches: list[list[tuple[str, bytes]]]) -> None:
    def feed() -> None:
        for batch in batches:
            hub.publish(batch)

    thread = threading.Thread(target=feed)
    thread.start()
    thread.join()


def test_batches_published_while_the_loop_is_busy_arrive_as_one_delivery(settings: Settings) -> None:
    FakeFeed.started = 0
    hub = PushHub(settings, feed_factory=FakeFeed)

    async def scenario() -> bytes | None:
        viewer, _ = hub.subscribe("A")
        hub.subscribe("B")
        assert hub.ready and FakeFeed.started == 1  # the feed starts with the first viewer, once
        # The loop is blocked here: three batches pile up and must not fill a 2-slot mailbox.
        publish_from_a_thread(hub, [[("A", body("A", n))] for n in range(1, 4)])
        return await asyncio.wait_for(viewer.next_chunk(), 10)

    chunk = run_in_own_loop(scenario())
    assert [event["value"] for _, event in messages(chunk or b"")] == [1, 2, 3]
    assert hub.stats().dropped == 0
    hub.close()
    assert hub.stats().viewers == 0


def test_a_loop_too_far_behind_discards_updates_and_resets_every_viewer(settings: Settings,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_PENDING", 5)
    hub = PushHub(settings, feed_factory=FakeFeed)

    async def scenario() -> bytes | None:
        viewer, _ = hub.subscribe("A")
        publish_from_a_thread(hub, [[("A", body("A", n))] for n in range(1, 5)] + [[("A", body("A", 9))] * 3])
        return await asyncio.wait_for(viewer.next_chunk(), 10)

    got = [event for _, event in messages(run_in_own_loop(scenario()) or b"")]
    assert got[0]["type"] == "reset"
    assert [event["value"] for event in got[1:]] == [9, 9, 9]  # what came after the loss


# --- one viewer's response (the ASGI app the stream route returns) ------------------------------------------


class Exchange:
    """The server side of one stream: what the response sent, a client that can hang up or stop reading."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.blocked = False  # every send from now on waits forever (a socket whose buffers are full)
        self.gate: asyncio.Future[None] | None = None  # sends wait until it is set (a client that reads slowly)
        self.disconnected: asyncio.Event | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.blocked:
            await asyncio.get_running_loop().create_future()
        if self.gate is not None:
            await self.gate
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        assert self.disconnected is not None
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def finished(self) -> bool:
        return bool(self.sent) and self.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def serve(hub: Any, exchange: Exchange, heartbeat_s: float = 15.0, method: str = "GET",
                tenant: str = "A") -> tuple[asyncio.Task[None], Viewer]:
    """Subscribe a viewer of `tenant` and start its response as the server would (a task of its own)."""
    exchange.disconnected = asyncio.Event()
    viewer, first = hub.subscribe(tenant)
    response = ViewerStream(hub, viewer, first, heartbeat_s)
    task = asyncio.get_running_loop().create_task(response({"type": "http", "method": method}, exchange.receive,
                                                           exchange.send))
    await asyncio.sleep(0.01)
    return task, viewer


def test_an_idle_viewers_response_is_written_during_the_delivery_and_ends_when_the_client_hangs_up(
        settings: Settings) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)
    exchange = Exchange()

    async def scenario() -> None:
        task, _ = await serve(hub, exchange)
        assert exchange.sent[0]["type"] == "http.response.start" and exchange.sent[0]["status"] == 200
        headers = dict(exchange.sent[0]["headers"])
        assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
        assert (headers[b"cache-control"], headers[b"x-accel-buffering"]) == (b"no-store", b"no")
        assert exchange.body == OPENING
        hub.fanout.deliver([("A", body("A", 1)), ("B", body("B", 2))])
        hub.fanout.deliver([("A", body("A", 3))])
        # Written during the delivery itself (the response was idle): no task woken, no turn of the loop.
        assert [event["value"] for _, event in messages(exchange.body)] == [1, 3]
        assert hub.stats().viewers == 1
        assert exchange.disconnected is not None
        exchange.disconnected.set()
        await asyncio.wait_for(task, 5)

    run_in_own_loop(scenario())
    assert exchange.finished and hub.stats().viewers == 0


def test_an_idle_stream_gets_heartbeats_and_a_busy_one_none(settings: Settings) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)
    idle, busy = Exchange(), Exchange()

    async def scenario() -> None:
        idle_task, _ = await serve(hub, idle, heartbeat_s=0.1)
        busy_task, _ = await serve(hub, busy, heartbeat_s=0.1, tenant="B")
        for n in range(12):  # 0.36 s: B gets an update every 30 ms, A nothing
            hub.fanout.deliver([("B", body("B", n))])
            await asyncio.sleep(0.03)
        hub.fanout.close_all()
        await asyncio.wait_for(asyncio.gather(idle_task, busy_task), 5)

    run_in_own_loop(scenario())
    beats = idle.body.count(b": hb\n\n")  # one per 0.1 s idle: 3, give or take a late timer on a busy host
    assert 2 <= beats <= 4 and idle.body == OPENING + b": hb\n\n" * beats
    assert b": hb" not in busy.body and len(messages(busy.body)) == 12
    assert idle.finished and busy.finished


def test_a_write_that_waits_for_the_socket_is_finished_by_the_response_and_what_queued_meanwhile_follows(
        settings: Settings) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)  # sse_queue_size=2
    exchange = Exchange()

    async def scenario() -> None:
        task, viewer = await serve(hub, exchange)
        exchange.gate = asyncio.get_running_loop().create_future()
        hub.fanout.deliver([("A", body("A", 1))])  # written directly: stalls on the full socket
        hub.fanout.deliver([("A", body("A", 2))])  # queued meanwhile
        await asyncio.sleep(0.01)
        assert viewer.queued == 1 and viewer.writer is None and messages(exchange.body) == []
        exchange.gate.set_result(None)
        exchange.gate = None
        await asyncio.sleep(0.01)
        assert [event["value"] for _, event in messages(exchange.body)] == [1, 2]
        assert viewer.writer is not None  # idle again: direct writes resume
        hub.fanout.deliver([("A", body("A", 3))])
        assert [event["value"] for _, event in messages(exchange.body)] == [1, 2, 3]
        hub.fanout.close_all()
        await asyncio.wait_for(task, 5)

    run_in_own_loop(scenario())
    assert exchange.finished and hub.stats().dropped == 0 and hub.stats().viewers == 0


def test_a_stream_whose_write_waits_too_long_is_cut_and_forgotten(settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "MIN_SEND_TIMEOUT_S", 0.2)
    hub = PushHub(settings, feed_factory=FakeFeed)
    stuck, other = Exchange(), Exchange()

    async def scenario() -> float:
        stuck_task, _ = await serve(hub, stuck, heartbeat_s=0.05)
        other_task, _ = await serve(hub, other, heartbeat_s=0.05)
        stuck.blocked = True  # a client that stopped reading while its tenant is quiet: its mailbox never fills
        hub.fanout.deliver([("A", body("A", 1))])
        started = time.monotonic()
        await asyncio.wait_for(stuck_task, 5)
        waited = time.monotonic() - started
        assert not other_task.done()  # the other viewer is untouched
        hub.fanout.close_all()
        await asyncio.wait_for(other_task, 5)
        return waited

    waited = run_in_own_loop(scenario())
    assert 0.15 < waited < 2.0
    assert not stuck.finished  # cut, not ended: the server closes the connection
    assert other.finished and [event["value"] for _, event in messages(other.body)] == [1]
    assert hub.stats().viewers == 0


def test_a_dropped_viewer_s_response_ends_at_once_even_while_its_write_waits(settings: Settings) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)  # sse_queue_size=2
    slow, fast = Exchange(), Exchange()

    async def scenario() -> None:
        slow_task, slow_viewer = await serve(hub, slow)
        fast_task, _ = await serve(hub, fast)
        slow.blocked = True
        for n in range(1, 5):
            hub.fanout.deliver([("A", body("A", n))])
            await asyncio.sleep(0.01)
        assert slow_viewer.dropped
        await asyncio.wait_for(slow_task, 1)
        assert not fast_task.done()
        hub.fanout.close_all()
        await asyncio.wait_for(fast_task, 5)

    run_in_own_loop(scenario())
    assert hub.stats().dropped == 1 and hub.stats().viewers == 0
    assert [event["value"] for _, event in messages(fast.body)] == [1, 2, 3, 4]


def test_a_head_request_gets_the_headers_only_and_leaves_no_viewer(settings: Settings) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)
    exchange = Exchange()

    async def scenario() -> None:
        task, _ = await serve(hub, exchange, method="HEAD")
        await asyncio.wait_for(task, 5)

    run_in_own_loop(scenario())
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.body == b"" and exchange.finished and hub.stats().viewers == 0


def test_the_server_s_exit_signal_ends_every_stream(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = PushHub(settings, feed_factory=FakeFeed)
    exchanges = [Exchange(), Exchange()]

    async def scenario() -> None:
        tasks = [(await serve(hub, exchange))[0] for exchange in exchanges]
        stream_module.end_streams_on_exit(hub)
        stream_module.end_streams_on_exit(hub)  # one watch per hub
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in tasks)
        monkeypatch.setattr(AppStatus, "should_exit", True)  # what uvicorn's patched exit handler sets
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    run_in_own_loop(scenario())
    assert all(exchange.finished for exchange in exchanges) and hub.stats().viewers == 0


# --- routes ---------------------------------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.hub = PushHub(settings, feed_factory=FakeFeed)
    yield TestClient(app)
    app.state.hub.close()


def bearer(settings: Settings, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, ttl=timedelta(hours=1), **claims)}"}


def test_a_stream_token_is_minted_for_the_callers_tenant_and_opens_only_a_stream(client: TestClient,
                                                                                 settings: Settings) -> None:
    response = client.post("/v1/stream/token", headers=bearer(settings, tenant="A"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tenant"] == "A" and answer["expires_in"] == settings.stream_token_ttl_s
    assert answer["url"] == f"/v1/stream?token={answer['token']}"
    grant = verify_stream_token(settings, answer["token"])
    assert (grant.tenant_id, grant.principal.role) == ("A", "tenant")
    # Not a bearer token: neither the verifier nor the API takes it in the Authorization header.
    with pytest.raises(AuthError):
        TokenVerifier(settings).verify(answer["token"])
    refused = client.post("/v1/stream/token", headers={"Authorization": f"Bearer {answer['token']}"})
    assert refused.status_code == 401
    # A bearer token is not a stream token either.
    with pytest.raises(AuthError, match="stream token"):
        verify_stream_token(settings, mint_token(settings, tenant="A"))


def test_stream_tokens_follow_the_callers_tenancy(client: TestClient, settings: Settings) -> None:
    analyst = bearer(settings, role="analyst")
    assert client.post("/v1/stream/token", headers=analyst).status_code == 400  # must name a tenant
    named = client.post("/v1/stream/token", headers=analyst, params={"tenant": "B"})
    assert verify_stream_token(settings, named.json()["token"]).tenant_id == "B"
    assert client.post("/v1/stream/token", headers=bearer(settings, tenant="A"),
                       params={"tenant": "B"}).status_code == 403
    assert client.post("/v1/stream/token", headers=bearer(settings, role="producer", tenants=["A"])).status_code == 403
    assert client.post("/v1/stream/token").status_code == 401


def test_the_stream_refuses_bearer_tokens_in_the_url_and_expired_or_foreign_stream_tokens(
        client: TestClient, settings: Settings) -> None:
    normal = mint_token(settings, tenant="A", ttl=timedelta(hours=1))
    assert client.get("/v1/stream", params={"token": normal}).status_code == 401
    principal = Principal(subject="someone", tenant_id="A", role="tenant")
    expired, _ = mint_stream_token(settings, principal, "A", now=datetime.now(UTC) - timedelta(minutes=5))
    response = client.get("/v1/stream", params={"token": expired})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    fresh, _ = mint_stream_token(settings, principal, "A")
    assert client.get("/v1/stream", params={"token": fresh, "tenant": "B"}).status_code == 403
    other = settings.model_copy(update={"auth_jwt_secret": SecretStr("another-secret-that-is-long-enough-for-hs")})
    forged, _ = mint_stream_token(other, principal, "A")
    assert client.get("/v1/stream", params={"token": forged}).status_code == 401
    assert client.get("/v1/stream").status_code == 401
    assert client.get("/v1/stream", headers=bearer(settings, role="producer", tenants=["A"])).status_code == 403
    assert client.app.state.hub.stats().viewers == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("credential", ["stream token", "header", "cookie"])
def test_each_credential_opens_its_tenants_stream_and_a_closed_stream_leaves_no_viewer(
        settings: Settings, credential: str) -> None:
    app = create_app(settings)
    hub = app.state.hub = PushHub(settings, feed_factory=FakeFeed)
    principal = Principal(subject="someone", tenant_id="A", role="tenant")
    token = mint_token(settings, tenant="A", ttl=timedelta(hours=1))
    params, headers, cookies = {}, {}, {}
    if credential == "stream token":
        params = {"token": mint_stream_token(settings, principal, "A")[0]}
    elif credential == "header":
        headers = {"Authorization": f"Bearer {token}"}
    else:
        cookies = {"lakepulse_session": token}
    with TestClient(app, cookies=cookies) as client, \
            client.stream("GET", "/v1/stream", params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        chunks = response.iter_bytes()
        assert next(chunks) == OPENING
        assert hub.stats().viewers == 1 and hub.fanout.viewers_of("A") == 1
        hub.publish([("B", body("B", 1)), ("A", body("A", 2))])
        assert messages(next(chunks)) == [(f"{hub.fanout.epoch}-1", orjson.loads(body("A", 2)))]
    assert hub.stats().viewers == 0


def test_above_the_viewer_cap_the_stream_is_503_with_retry_after(client: TestClient, settings: Settings) -> None:
    hub: PushHub = client.app.state.hub  # type: ignore[attr-defined]
    for tenant in ("X", "Y", "Z"):  # sse_max_viewers=3 in these settings
        hub.fanout.subscribe(tenant)
    response = client.get("/v1/stream", headers=bearer(settings, tenant="A"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"
    assert "viewers" in response.json()["detail"]
    assert hub.stats().refused == 1 and hub.stats().viewers == 3
