"""Defence in depth on the running stack: events dated far ahead, written straight to `events.raw` (bypassing
the ingest API, which refuses them), must not move the streaming job's watermarks. Before the fix one event
dated 2099 set the minute query's watermark to 2098-12-31T23:58 and every later event of every tenant was
dropped as late, for good (the watermark lives in the checkpoint).

The test writes to the stack's own topic and reads the stack's own job, so it first checks that the running job
has the guard (its max_future_skew gauge): against a job without it, the 2099 event would blind the stack's
speed layer until the checkpoint is deleted. Restart the `streaming` service after changing the job.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings
from tests.stack_events import order, post

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "pinot", "ingest", "streaming")]

# Bounds, not timing assertions: the minute query runs on a 1 s trigger, the late/DLQ query on 10 s under nice.
READ_WAIT_S = 180
PINOT_WAIT_S = 180
DLQ_WAIT_S = 240


def job_url(settings: Settings, path: str) -> str:
    from streaming.config import StreamingSettings

    streaming = StreamingSettings()
    return f"http://{streaming.metrics_host}:{streaming.metrics_port}{path}"


def job_metric(settings: Settings, name: str, query: str) -> float | None:
    """A per-query sample of the running job's /metrics (None when absent)."""
    text = httpx.get(job_url(settings, "/metrics"), timeout=10).text
    prefix = f'{name}{{query="{query}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), None)


def minute_read_up_to(settings: Settings) -> dict[int, int]:
    """events.raw offsets (per partition) the minute query's last micro-batch read up to."""
    progress = httpx.get(job_url(settings, "/progress"), timeout=10).json().get("minute") or {}
    for source in progress.get("sources", []):
        ends = source.get("endOffset") or {}
        ends = orjson.loads(ends) if isinstance(ends, str) else ends
        if settings.topic_events_raw in ends:
            return {int(p): int(o) for p, o in ends[settings.topic_events_raw].items()}
    return {}


def produce(settings: Settings, events: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Write events straight to events.raw (keyed by tenant, as the API does); event id → (partition, offset)."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})
    where: dict[str, tuple[int, int]] = {}

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        where[orjson.loads(message.value())["event_id"]] = (message.partition(), message.offset())

    for event in events:
        producer.produce(settings.topic_events_raw, orjson.dumps(event), event["tenant_id"].encode(),
                         on_delivery=delivered)
    assert producer.flush(30) == 0
    assert set(where) == {e["event_id"] for e in events}
    return where


def dlq_end_offsets(settings: Settings) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"it-{uuid.uuid4()}"})
    try:
        topic = consumer.list_topics(settings.topic_events_dlq, timeout=10).topics[settings.topic_events_dlq]
        return {p: consumer.get_watermark_offsets(TopicPartition(settings.topic_events_dlq, p), timeout=10)[1]
                for p in topic.partitions}
    finally:
        consumer.close()


def dead_letters_of(settings: Settings, start: dict[int, int], event_ids: set[str]) -> dict[str, dict[str, Any]]:
    """DLQ records written since `start` whose event id is one of `event_ids` (bounded wait for all)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"it-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    found: dict[str, dict[str, Any]] = {}
    consumer.assign([TopicPartition(settings.topic_events_dlq, p, o) for p, o in start.items()])
    deadline = time.monotonic() + DLQ_WAIT_S
    try:
        while set(found) != event_ids and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            letter = orjson.loads(message.value())
            if letter.get("event_id") in event_ids:
                found[letter["event_id"]] = letter
    finally:
        consumer.close()
    return found


def pinot_events(settings: Settings, tenant: str) -> list[list[Any]]:
    body = httpx.post(f"{settings.pinot_broker_url}/query/sql", timeout=30, json={
        "sql": f"SELECT CAST(window_start AS LONG), \"count\" FROM metrics_minute WHERE tenant_id = '{tenant}' "
               "AND metric = 'events' LIMIT 100"}).json()
    assert not body.get("exceptions"), body["exceptions"]
    return [list(row) for row in body["resultTable"]["rows"]]


def test_future_events_on_the_topic_do_not_stop_a_current_event_reaching_pinot(stack: Context) -> None:
    settings = stack.settings
    skew = job_metric(settings, "lakepulse_streaming_max_future_skew_seconds", "minute")
    if skew is None:
        pytest.fail("the running streaming job has no future-event guard (no lakepulse_streaming_max_future_skew_"
                    "seconds gauge): restart the `streaming` service with this code before running this test; "
                    "nothing was written")
    assert skew == settings.event_max_future_skew_s

    run = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    future = [
        {**order(f"it-future-{run}", datetime(2099, 1, 1, tzinfo=UTC), 10.0, source="wrong-clock"),
         "event_id": f"it-future-{run}-2099"},
        {**order(f"it-future-{run}", now + timedelta(hours=2), 10.0, source="wrong-clock"),
         "event_id": f"it-future-{run}-2h"},
    ]
    dlq_start = dlq_end_offsets(settings)
    written = produce(settings, future)

    # The minute query has read both (a micro-batch that saw them has completed) before the current event.
    deadline = time.monotonic() + READ_WAIT_S
    while not all(minute_read_up_to(settings).get(p, -1) > o for p, o in written.values()):
        assert time.monotonic() < deadline, f"minute query did not read {written} within {READ_WAIT_S}s"
        time.sleep(1)

    tenant = f"it-current-{run}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    assert post(settings, [order(tenant, at, 12.5, source="right-clock")])["accepted"] == 1

    deadline = time.monotonic() + PINOT_WAIT_S
    while not (rows := pinot_events(settings, tenant)):
        assert time.monotonic() < deadline, f"the current event did not reach Pinot within {PINOT_WAIT_S}s"
        time.sleep(2)
    assert rows == [[int(at.timestamp()) // 60 * 60_000, 1]]

    # The minute query's watermark is behind the wall clock, not in 2099 or two hours ahead.
    delay = job_metric(settings, "lakepulse_streaming_watermark_delay_seconds", "minute")
    assert delay is not None and delay > 0
    # The future events reached no minute row, and the late/DLQ query dead-lettered them with the reason.
    assert pinot_events(settings, f"it-future-{run}") == []
    letters = dead_letters_of(settings, dlq_start, {e["event_id"] for e in future})
    assert {event_id: (letter["reason"], letter["stage"]) for event_id, letter in letters.items()} == {
        e["event_id"]: (f"occurred_at_in_future: more than {skew:g} s ahead of processing time", "streaming")
        for e in future
    }
    assert {orjson.loads(letter["raw"])["occurred_at"] for letter in letters.values()} == {
        e["occurred_at"] for e in future
    }


def test_the_ingest_api_refuses_the_same_future_events(stack: Context) -> None:
    """The first line of defence, on the stack's running ingest service."""
    run = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    events = [order(f"it-future-{run}", at, 10.0) for at in (datetime(2099, 1, 1, tzinfo=UTC),
                                                              now + timedelta(hours=2), now)]
    results = post(stack.settings, events)["results"]
    assert [(r["status"], r.get("reason", "").split(":")[0]) for r in results] == [
        ("rejected", "occurred_at_in_future"), ("rejected", "occurred_at_in_future"), ("accepted", "")
    ]
