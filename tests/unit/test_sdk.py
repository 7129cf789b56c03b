"""The SDK against a scripted transport: batching, retries, bounded buffer, reporting."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from lakepulse.sdk import BufferFullError, DeliveryError, IngestClient, backoff_delay

EVENT = {"tenant_id": "t1", "event_type": "signup", "occurred_at": "2024-05-01T00:00:00Z", "source": "web"}


class ScriptedApi:
    """Answers each POST with the next scripted status (then 202s), recording every body it saw."""

    def __init__(
        self, script: list[int | Exception] | None = None, gate: threading.Event | None = None
    ) -> None:
        self.script = list(script or [])
        self.bodies: list[list[dict]] = []
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None:
            self.gate.wait(10)
        events = [orjson.loads(line) for line in request.content.splitlines()]
        with self.lock:
            self.bodies.append(events)
            step = self.script.pop(0) if self.script else 202
        if isinstance(step, Exception):
            raise step
        if step != 202:
            return httpx.Response(step, json={"detail": "scripted"}, headers={"retry-after": "0"})
        results = [
            {"index": i, "status": "rejected", "event_id": e["event_id"], "reason": "source: too short"}
            if e.get("source") == ""
            else {"index": i, "status": "accepted", "event_id": e["event_id"]}
            for i, e in enumerate(events)
        ]
        accepted = sum(r["status"] == "accepted" for r in results)
        return httpx.Response(
            202, json={"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        )


def make_client(api: ScriptedApi, **options: object) -> IngestClient:
    defaults: dict[str, object] = {"backoff_s": 0.001, "max_backoff_s": 0.01, "senders": 1}
    return IngestClient("http://ingest.test", transport=httpx.MockTransport(api), **{**defaults, **options})


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_batches_by_size_and_assigns_event_ids() -> None:
    api = ScriptedApi()
    with make_client(api, batch_size=1000, flush_interval_s=60) as client:
        ids = client.send_many(EVENT for _ in range(2500))
        stats = client.flush()
    assert sorted(len(body) for body in api.bodies) == [500, 1000, 1000]
    assert stats.accepted == 2500 and stats.requests == 3
    assert sorted(e["event_id"] for body in api.bodies for e in body) == sorted(ids)
    assert len(set(ids)) == 2500


def test_keeps_a_given_event_id() -> None:
    api = ScriptedApi()
    with make_client(api) as client:
        assert client.send({**EVENT, "event_id": "mine"}) == "mine"
    assert api.bodies[0][0]["event_id"] == "mine"


def test_flushes_a_partial_batch_after_the_interval() -> None:
    api = ScriptedApi()
    client = make_client(api, batch_size=1000, flush_interval_s=0.05)
    client.send_many([EVENT] * 3)
    wait_until(lambda: len(api.bodies) == 1)
    assert len(api.bodies[0]) == 3
    client.close()


def test_retries_503_and_connection_errors_with_the_same_events() -> None:
    api = ScriptedApi([503, httpx.ConnectError("refused"), 502])
    with make_client(api, batch_size=10) as client:
        client.send_many([EVENT] * 10)
        stats = client.flush()
    assert (stats.accepted, stats.retries, stats.failed) == (10, 3, 0)
    assert len(api.bodies) == 4
    assert api.bodies[0] == api.bodies[1] == api.bodies[2] == api.bodies[3]


def test_gives_up_after_max_retries_and_flush_says_so() -> None:
    api = ScriptedApi([503] * 10)
    client = make_client(api, batch_size=5, max_retries=3)
    client.send_many([EVENT] * 5)
    with pytest.raises(
        DeliveryError, match="5 events were given up; last error: gave up after 3 retries: HTTP 503"
    ):
        client.flush()
    assert client.stats.failed == 5 and len(api.bodies) == 4
    client.close()


def test_client_errors_are_not_retried() -> None:
    api = ScriptedApi([413])
    client = make_client(api, batch_size=5)
    client.send_many([EVENT] * 5)
    with pytest.raises(DeliveryError, match="HTTP 413"):
        client.flush()
    assert client.stats.retries == 0 and len(api.bodies) == 1
    client.close()


def test_full_buffer_raises_a_clear_error() -> None:
    gate = threading.Event()
    api = ScriptedApi(gate=gate)
    client = make_client(api, batch_size=10, max_buffer=30)
    client.send_many([EVENT] * 30)
    with pytest.raises(BufferFullError, match="30 events are waiting for the ingest API"):
        client.send(EVENT)
    gate.set()
    assert client.flush().accepted == 30
    client.close()


def test_rejections_are_reported_with_reasons() -> None:
    api = ScriptedApi()
    seen = []
    with make_client(api, on_result=seen.append) as client:
        client.send_many([EVENT, {**EVENT, "source": "", "event_id": "bad"}])
    assert (client.stats.accepted, client.stats.rejected) == (1, 1)
    assert [(r.event_id, r.reason) for r in client.rejections] == [("bad", "source: too short")]
    assert len(seen[0].accepted_ids) == 1


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        (1, None, 0.05, 0.1),
        (4, None, 0.4, 0.8),
        (10, None, 2.5, 5.0),
        (1, "3", 3.0, 3.0),
        (1, "60", 5.0, 5.0),
    ],
)
def test_backoff_grows_is_capped_and_honours_retry_after(
    attempt: int, retry_after: str | None, low: float, high: float
) -> None:
    delay = backoff_delay(attempt, 0.1, 5.0, retry_after, random.Random(7))
    assert low <= delay <= high
