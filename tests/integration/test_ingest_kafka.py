"""Ingest API against the real broker: messy generated traffic lands exactly where the contract says."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from lakepulse.events import SERVER_FIELDS
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.generator.targets import KafkaTarget, run
from lakepulse.sdk import IngestClient
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import bearer, producer_token, read_topic, start_ingest_server, topics
from tests.stack_events import hours_ago, rfc3339

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]


def messy_config(run_id: str) -> GeneratorConfig:
    return GeneratorConfig(
        rate=50,
        duration_s=60,
        time_scale=60,
        seed=11,
        tenants=4,
        start=hours_ago(3) + timedelta(minutes=30),
        late_fraction=0.03,
        duplicate_fraction=0.05,
        out_of_order_fraction=0.1,
        malformed_fraction=0.05,
        run_id=run_id,
    )


def as_sent(value: bytes) -> bytes:
    """A raw-topic value without the fields the server added, serialised like the generator does."""
    event = orjson.loads(value)
    for name in SERVER_FIELDS:
        event.pop(name)
    return orjson.dumps(event)


def check_topics(bootstrap: str, raw_topic: str, dlq_topic: str, events: list) -> None:
    valid = Counter(e.line for e in events if e.is_valid)
    malformed = Counter(e.line.decode() for e in events if not e.is_valid)
    raw = read_topic(bootstrap, raw_topic, sum(valid.values()))
    dlq = read_topic(bootstrap, dlq_topic, sum(malformed.values()))

    # Every valid event exactly as sent (duplicates included: dedup is downstream), keyed by tenant.
    assert Counter(as_sent(value) for _, value in raw) == valid
    assert all(key == orjson.loads(value)["tenant_id"].encode() for key, value in raw)
    # Every invalid one in the DLQ with a reason and its raw payload.
    dead = [orjson.loads(value) for _, value in dlq]
    assert Counter(letter["raw"] for letter in dead) == malformed
    assert all(letter["reason"] for letter in dead)
    # None in both.
    raw_ids = {orjson.loads(value)["event_id"] for _, value in raw}
    assert not raw_ids & {letter["event_id"] for letter in dead if letter["event_id"]}


def test_generated_traffic_through_the_api(settings: Settings, run_id: str, tmp_path: Path) -> None:
    raw_topic, dlq_topic = f"it.{run_id}.events.raw", f"it.{run_id}.events.dlq"
    events = list(generate_events(messy_config(run_id)))
    kinds = Counter(e.kind for e in events)
    assert min(kinds[k] for k in ("valid", "late", "out_of_order", "duplicate", "malformed")) > 10
    # A producer token for exactly the run's restaurants: every valid event may be written.
    tenants = {orjson.loads(e.line)["tenant_id"] for e in events if e.is_valid}
    assert len(tenants) == 4
    token = producer_token(settings, tenants)

    with topics(settings.kafka_bootstrap, [raw_topic, dlq_topic]):
        server = start_ingest_server(
            {"LAKEPULSE_TOPIC_EVENTS_RAW": raw_topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": dlq_topic},
            tmp_path / "uvicorn.log",
        )
        try:
            with IngestClient(server.url, batch_size=250, token=token) as client:
                for event in events:
                    client.send_line(event.line)
            assert client.stats.retries == 0, client.stats.last_error
            assert (client.stats.accepted, client.stats.rejected) == (
                sum(e.is_valid for e in events),
                kinds["malformed"],
            )
            metrics = httpx.get(f"{server.url}/metrics").text
            assert f"lakepulse_ingest_events_dead_lettered_total {float(kinds['malformed'])}" in metrics
        finally:
            server.stop()
        check_topics(settings.kafka_bootstrap, raw_topic, dlq_topic, events)


def test_generator_kafka_target_routes_like_the_api(settings: Settings, run_id: str) -> None:
    raw_topic, dlq_topic = f"it.{run_id}.gen.raw", f"it.{run_id}.gen.dlq"
    events = list(generate_events(messy_config(run_id)))
    with topics(settings.kafka_bootstrap, [raw_topic, dlq_topic]):
        counts = run(events, KafkaTarget(settings.kafka_bootstrap, raw_topic, dlq_topic, batch_size=300))
        assert sum(counts.values()) == len(events)
        check_topics(settings.kafka_bootstrap, raw_topic, dlq_topic, events)


def test_missing_topic_is_a_503_not_a_500(settings: Settings, run_id: str) -> None:
    from fastapi.testclient import TestClient

    from lakepulse.ingest.app import create_app

    app = create_app(settings.model_copy(update={"topic_events_raw": f"it.{run_id}.absent"}), delivery_timeout_s=2)
    with TestClient(app) as client:
        event = {"tenant_id": "t", "event_type": "x", "occurred_at": rfc3339(hours_ago(2)), "source": "s"}
        response = client.post("/v1/events", json=event, headers=bearer(producer_token(settings, ["t"])))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
