"""bench/sse.py's pure parts: the records it produces are what the push shapes into `live_order` events, the
viewer protocol finds each update once (whole events only, however the reads are cut), and the summary."""

from __future__ import annotations

import asyncio
import math
from array import array
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import SecretStr

from bench.sse import SseViewer, marker, nearest_rank, order_id, order_row, split, summarise
from lakepulse.api.push.fanout import frame
from lakepulse.api.push.shapes import Shaper, encode
from lakepulse.settings import Settings

SETTINGS = Settings(mode="local", auth_jwt_secret=SecretStr("unit-test-secret-that-is-long-enough-for-hs256"))


def test_an_order_record_becomes_one_live_order_event_of_its_tenant() -> None:
    at_ms = 1_780_000_000_123
    key, value = order_row("bench-sse-x", order_id("x", 7), at_ms)
    assert orjson.loads(key) == {"tenant_id": "bench-sse-x", "order_id": "x-000007"}
    shaper = Shaper(SETTINGS)
    shaper.add(SETTINGS.topic_orders_live, value)
    (update,) = shaper.flush(datetime.now(UTC))
    assert update.tenant_id == "bench-sse-x"
    event = orjson.loads(encode(update.event))
    assert (event["type"], event["order_id"], event["status"], event["amount"]) == ("live_order", "x-000007",
                                                                                    "placed", 23.5)
    assert event["as_of"] == "2026-05-28T20:26:40.123000Z"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def viewer_fed(pieces: list[bytes]) -> tuple[SseViewer, FakeTransport]:
    async def feed() -> tuple[SseViewer, FakeTransport]:
        opened = asyncio.get_running_loop().create_future()
        viewer = SseViewer(b"GET /v1/stream HTTP/1.1\r\n\r\n", marker("run1"), opened)
        transport = FakeTransport()
        viewer.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            viewer.data_received(piece)
        assert opened.done()
        return viewer, transport

    return asyncio.run(feed())


def event(seq: int) -> bytes:
    body = orjson.dumps({"type": "live_order", "tenant": "t", "order_id": order_id("run1", seq)})
    return frame("ep", seq, body)


def test_the_viewer_finds_each_update_once_however_the_stream_is_cut() -> None:
    stream = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
              + b"1a\r\nretry: 3000\n: connected\n\n\r\n" + event(1) + event(-1) + b": hb\n\n" + event(2) + event(3))
    for cut in (1, 7, 40, 101):  # the same bytes read in pieces of every size
        pieces = [stream[i:i + cut] for i in range(0, len(stream), cut)]
        viewer, transport = viewer_fed(pieces)
        assert viewer.status == 200 and not transport.closed
        assert sorted(viewer.received) == [1, 2, 3], cut
        assert transport.written == [b"GET /v1/stream HTTP/1.1\r\n\r\n"]


def test_a_refused_viewer_records_its_status_and_closes() -> None:
    viewer, transport = viewer_fed([b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 10\r\n\r\n{}"])
    assert viewer.status == 503 and transport.closed and not viewer.received


def test_summary_counts_latencies_from_arrival_and_complete_viewers() -> None:
    nan = math.nan
    receipts = [array("d", [10.1, 11.2]), array("d", [10.3, nan]), array("d", [10.05, 11.05])]
    summary = summarise(receipts, arrivals=[10.0, 11.0], produced=[9.9, 10.9])
    assert summary.viewers == 3 and summary.complete == 2 and summary.missing == 1
    assert [round(x, 3) for x in summary.latencies] == [0.05, 0.05, 0.1, 0.2, 0.3]
    assert [round(x, 3) for x in summary.from_produce] == [0.15, 0.15, 0.2, 0.3, 0.4]
    assert nearest_rank(summary.latencies, 0.5) == summary.latencies[2]
    assert nearest_rank(summary.latencies, 1.0) == summary.latencies[-1]
    assert math.isnan(nearest_rank([], 0.5))


def test_viewers_are_split_evenly_over_the_clients() -> None:
    shares: list[Any] = split(10_001, 4)
    assert shares == [2501, 2500, 2500, 2500] and sum(shares) == 10_001
