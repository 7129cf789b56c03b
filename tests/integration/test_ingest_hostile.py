"""Hostile input against the real ingest API (uvicorn, the code under test) and the stack's broker: oversize and
wrongly dated events are refused one by one, with a reason and a dead letter that fits Kafka, while the rest of
the request is accepted; a size limit the topics cannot hold stops the service at start-up.

Before the fix, a request holding one event of 200,000 properties (~3.9 MB) answered 503 "Kafka refused the
event: Message size too large" for the whole request, so an SDK retried a permanent error forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.events import rfc3339_utc
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import (
    REPO,
    bearer,
    free_port,
    producer_token,
    read_topic,
    start_ingest_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]

START_EXIT_TIMEOUT_S = 90


@contextmanager
def own_topics(bootstrap: str, configs: dict[str, dict[str, str]]) -> Iterator[list[str]]:
    """Create topics (name → topic configs) for the test, then delete them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, 1, 1, config=c) for n, c in configs.items()]).values():
        future.result(30)
    try:
        yield list(configs)
    finally:
        for future in admin.delete_topics(list(configs)).values():
            with suppress(KafkaException):
                future.result(30)


def event(event_id: str, tenant: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"event_id": event_id, "tenant_id": tenant, "event_type": "signup", "occurred_at": rfc3339_utc(at),
            "source": "hostile-test", "properties": properties}


def post(url: str, token: str, events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", content=orjson.dumps(events), timeout=60,
                      headers={"content-type": "application/json", **bearer(token)})


def test_oversize_and_wrongly_dated_events_are_refused_one_by_one(
    settings: Settings, run_id: str, tmp_path: Path
) -> None:
    raw_topic, dlq_topic = f"it.{run_id}.hostile.raw", f"it.{run_id}.hostile.dlq"
    tenant = f"hostile-{run_id}"
    now = datetime.now(UTC)
    huge = event("huge", tenant, now, **{f"key_{i:06d}": i for i in range(200_000)})
    events = [
        event("ok-1", tenant, now - timedelta(seconds=5)),
        huge,
        event("future", tenant, datetime(2099, 1, 1, tzinfo=UTC)),
        event("ahead", tenant, now + timedelta(hours=2)),
        event("epoch", tenant, datetime(1970, 1, 1, tzinfo=UTC)),
        event("ok-2", tenant, now - timedelta(days=29)),
    ]
    assert len(orjson.dumps(huge)) > 3_500_000

    with own_topics(settings.kafka_bootstrap, {raw_topic: {}, dlq_topic: {}}):
        server = start_ingest_server(
            {"LAKEPULSE_TOPIC_EVENTS_RAW": raw_topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": dlq_topic}, tmp_path / "u.log"
        )
        try:
            response = post(server.url, producer_token(settings, [tenant]), events)
            metrics = httpx.get(f"{server.url}/metrics").text
        finally:
            server.stop()
        raw = read_topic(settings.kafka_bootstrap, raw_topic, 2)
        dlq = read_topic(settings.kafka_bootstrap, dlq_topic, 4)

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    assert [(r["event_id"], r["status"], r.get("reason", "").split(":")[0]) for r in body["results"]] == [
        ("ok-1", "accepted", ""),
        ("huge", "rejected", "event_too_large"),
        ("future", "rejected", "occurred_at_in_future"),
        ("ahead", "rejected", "occurred_at_in_future"),
        ("epoch", "rejected", "occurred_at_too_old"),
        ("ok-2", "accepted", ""),
    ]
    assert sorted(orjson.loads(value)["event_id"] for _, value in raw) == ["ok-1", "ok-2"]
    letters = {orjson.loads(value)["event_id"]: (key, value) for key, value in dlq}
    assert set(letters) == {"huge", "future", "ahead", "epoch"} and len(dlq) == 4
    reasons = {r["event_id"]: r.get("reason") for r in body["results"]}
    for event_id, (key, value) in letters.items():
        letter = orjson.loads(value)
        assert (key, letter["tenant_id"], letter["reason"]) == (tenant.encode(), tenant, reasons[event_id])
    # The oversize event's dead letter fits the limit: the start of the payload and its size.
    huge_letter = orjson.loads(letters["huge"][1])
    assert len(letters["huge"][1]) <= settings.ingest_max_event_bytes
    assert (huge_letter["raw_truncated"], huge_letter["raw_bytes"]) == (True, len(orjson.dumps(huge)))
    assert orjson.dumps(huge).decode().startswith(huge_letter["raw"])
    # The wrongly dated ones keep their whole payload.
    assert orjson.loads(orjson.loads(letters["future"][1])["raw"]) == events[2]
    assert "lakepulse_ingest_events_dead_lettered_total 4.0" in metrics
    assert 'lakepulse_ingest_requests_total{status="202"} 1.0' in metrics


def test_a_higher_limit_the_topics_hold_takes_the_same_event_whole(
    settings: Settings, run_id: str, tmp_path: Path
) -> None:
    """The limit is a setting, not librdkafka's default: raised to 5 MB (topics created to take 6 MB), the
    ~3.9 MB event is accepted and lands in the raw topic byte for byte."""
    raw_topic, dlq_topic = f"it.{run_id}.big.raw", f"it.{run_id}.big.dlq"
    tenant = f"big-{run_id}"
    huge = event("huge", tenant, datetime.now(UTC), **{f"key_{i:06d}": i for i in range(200_000)})
    topic_config = {"max.message.bytes": str(6_000_000)}
    with own_topics(settings.kafka_bootstrap, {raw_topic: topic_config, dlq_topic: topic_config}):
        server = start_ingest_server(
            {"LAKEPULSE_TOPIC_EVENTS_RAW": raw_topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": dlq_topic,
             "LAKEPULSE_INGEST_MAX_EVENT_BYTES": str(5_000_000)},
            tmp_path / "u.log",
        )
        try:
            response = post(server.url, producer_token(settings, [tenant]), [huge])
        finally:
            server.stop()
        raw = read_topic(settings.kafka_bootstrap, raw_topic, 1)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    (value,) = [value for _, value in raw]
    assert value.startswith(orjson.dumps(huge)[:-1])
    assert {k: v for k, v in orjson.loads(value).items() if k not in ("received_at", "device_family")} == huge


def test_a_limit_a_topic_cannot_hold_stops_the_service_at_start_up(
    settings: Settings, run_id: str, tmp_path: Path
) -> None:
    raw_topic, dlq_topic = f"it.{run_id}.small.raw", f"it.{run_id}.small.dlq"
    log_path = tmp_path / "uvicorn.log"
    # Two workers, as the stack runs it.
    command = [sys.executable, "-m", "uvicorn", "--factory", "lakepulse.ingest.app:create_app",
               "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2"]  # fmt: skip
    env = {"LAKEPULSE_TOPIC_EVENTS_RAW": raw_topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": dlq_topic,
           "LAKEPULSE_INGEST_MAX_EVENT_BYTES": str(2_000_000)}
    configs = {raw_topic: {"max.message.bytes": str(10_000_000)}, dlq_topic: {"max.message.bytes": str(1_000_000)}}
    with own_topics(settings.kafka_bootstrap, configs), log_path.open("wb") as log:
        subprocess.run(command, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=log,
                       timeout=START_EXIT_TIMEOUT_S)
    # It ended by itself (subprocess.run would have timed out on a server that serves). With workers, uvicorn's
    # parent exits 0 once a worker fails to start; supervisord gives up on it after its start retries.
    output = log_path.read_text()
    assert "Application startup failed. Exiting." in output
    assert (
        f"LAKEPULSE_INGEST_MAX_EVENT_BYTES=2,000,000 allows events that Kafka would refuse ({dlq_topic} "
        "max.message.bytes=1,000,000;"
    ) in output
    assert raw_topic not in output.split("would refuse", 1)[1]  # the raw topic holds it: only the DLQ is named
