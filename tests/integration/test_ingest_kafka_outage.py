"""Kafka stops during a load: the API answers 503, the SDK retries, nothing acknowledged is lost."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import orjson
import pytest

from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.sdk import IngestClient
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import (
    ThrowawayKafka,
    bearer,
    producer_token,
    read_topic,
    start_ingest_server,
    topics,
    wait_until,
)
from tests.stack_events import hours_ago

pytestmark = pytest.mark.integration

EVENTS = 3000


def test_acknowledged_events_survive_a_broker_outage(settings: Settings, tmp_path: Path) -> None:
    kafka = ThrowawayKafka(tmp_path / "kafka-state", settings)
    kafka.start()
    server = None
    try:
        with topics(kafka.bootstrap, ["events.raw", "events.dlq"]):
            server = start_ingest_server(
                {"LAKEPULSE_KAFKA_BOOTSTRAP": kafka.bootstrap}, tmp_path / "uvicorn.log"
            )
            config = GeneratorConfig(
                rate=70, duration_s=60, time_scale=60, seed=5, start=hours_ago(3)
            )
            lines = [e.line for e in generate_events(config) if e.is_valid][:EVENTS]
            assert len(lines) == EVENTS
            token = producer_token(settings, {orjson.loads(line)["tenant_id"] for line in lines})
            acknowledged: list[str] = []
            client = IngestClient(
                server.url, batch_size=100, flush_interval_s=0.05, max_retries=40, max_backoff_s=2.0,
                on_result=lambda result: acknowledged.extend(result.accepted_ids), token=token,
            )  # fmt: skip
            half_sent = threading.Event()

            def load() -> None:
                for number, line in enumerate(lines):
                    client.send_line(line)
                    if number == len(lines) // 2:
                        half_sent.set()
                        # The second half is sent while the broker is down.
                        wait_until(lambda: client.stats.retries > 0, 60, "SDK retries")

            producer = threading.Thread(target=load)
            producer.start()
            assert half_sent.wait(60)
            kafka.stop()

            one = orjson.loads(lines[0])
            down = httpx.post(
                f"{server.url}/v1/events", json={**one, "event_id": "probe-while-down"}, headers=bearer(token),
                timeout=30,
            )
            assert down.status_code == 503
            assert down.headers["retry-after"] == "2"
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 503
            producer.join(90)
            assert not producer.is_alive()

            kafka.start()
            stats = client.flush(timeout_s=120)
            client.close()
            assert stats.failed == 0
            assert stats.retries > 0
            assert stats.accepted == len(lines)

            stored = {
                orjson.loads(value)["event_id"]
                for _, value in read_topic(kafka.bootstrap, "events.raw", EVENTS)
            }
            sent = {orjson.loads(line)["event_id"] for line in lines}
            assert len(set(acknowledged)) == EVENTS
            assert set(acknowledged) <= stored
            # A retried batch may land twice under the same ids; nothing outside what was sent appears.
            assert stored - {"probe-while-down"} == sent
    finally:
        if server is not None:
            server.stop()
        kafka.stop()
