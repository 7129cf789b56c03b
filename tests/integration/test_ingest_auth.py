"""Producer credentials against the real broker: a key for tenant A cannot write events for B, and requests
without a valid token write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lakepulse.auth.tokens import mint_token
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.ingest.app import create_app
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import bearer, producer_token, read_topic, start_ingest_server, topics
from tests.stack_events import hours_ago, rfc3339

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]

REASON_B = "tenant_not_allowed: this credential may not write tenant '{tenant}'"


def event(tenant: str, event_id: str) -> dict[str, object]:
    return {"event_id": event_id, "tenant_id": tenant, "event_type": "signup",
            "occurred_at": rfc3339(hours_ago(2)), "source": "auth-test"}


@pytest.fixture
def ingest(settings: Settings, run_id: str) -> Iterator[tuple[TestClient, Settings]]:
    """The ingest app in this process (the code under test, whatever the stack's ingest service runs), writing
    to topics of its own on the stack's broker."""
    mine = settings.model_copy(update={"topic_events_raw": f"it.{run_id}.auth.raw",
                                       "topic_events_dlq": f"it.{run_id}.auth.dlq", "auth_enabled": True})
    with topics(mine.kafka_bootstrap, [mine.topic_events_raw, mine.topic_events_dlq]), \
            TestClient(create_app(mine, delivery_timeout_s=5)) as client:
        yield client, mine


def test_a_producer_key_for_a_cannot_write_events_for_b(ingest: tuple[TestClient, Settings], run_id: str) -> None:
    client, settings = ingest
    tenant_a, tenant_b = f"{run_id}-A", f"{run_id}-B"
    body = [event(tenant_a, "a-1"), event(tenant_b, "b-1"), event(tenant_a, "a-2")]

    response = client.post("/v1/events", json=body, headers=bearer(producer_token(settings, [tenant_a])))

    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert answer["results"][1] == {"index": 1, "status": "rejected", "event_id": "b-1",
                                    "reason": REASON_B.format(tenant=tenant_b)}
    raw = read_topic(settings.kafka_bootstrap, settings.topic_events_raw, 2)
    assert sorted((key, orjson.loads(value)["event_id"]) for key, value in raw) == [
        (tenant_a.encode(), "a-1"), (tenant_a.encode(), "a-2")]
    dlq = read_topic(settings.kafka_bootstrap, settings.topic_events_dlq, 1)
    assert len(dlq) == 1
    key, value = dlq[0]
    letter = orjson.loads(value)
    assert (key, letter["reason"], letter["tenant_id"], letter["event_id"]) == (
        tenant_b.encode(), REASON_B.format(tenant=tenant_b), tenant_b, "b-1")
    assert orjson.loads(letter["raw"]) == body[1]
    metrics = client.get("/metrics").text
    assert "lakepulse_ingest_events_accepted_total 2.0" in metrics
    assert "lakepulse_ingest_events_dead_lettered_total 1.0" in metrics


@pytest.mark.parametrize("credential", ["none", "wrong signature", "expired"])
def test_without_a_valid_token_nothing_is_written(
    ingest: tuple[TestClient, Settings], run_id: str, credential: str
) -> None:
    client, settings = ingest
    tenant = f"{run_id}-A"
    if credential == "none":
        headers: dict[str, str] = {}
    elif credential == "wrong signature":
        forger = settings.model_copy(
            update={"auth_jwt_secret": SecretStr("not-the-stack-secret-but-long-enough-for-hs256")})
        headers = bearer(mint_token(forger, role="producer", tenants=[tenant]))
    else:
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        headers = bearer(mint_token(settings, role="producer", tenants=[tenant], ttl=timedelta(hours=1),
                                    now=two_hours_ago))

    response = client.post("/v1/events", json=[event(tenant, "a-1")], headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    expected = {"none": "missing bearer token", "wrong signature": "signature does not verify",
                "expired": "token has expired"}[credential]
    assert expected in response.json()["detail"]
    assert read_topic(settings.kafka_bootstrap, settings.topic_events_raw, 0, timeout_s=10) == []
    assert read_topic(settings.kafka_bootstrap, settings.topic_events_dlq, 0, timeout_s=10) == []
    assert 'lakepulse_ingest_requests_total{status="401"} 1.0' in client.get("/metrics").text


def test_the_generator_authenticates_by_itself(settings: Settings, run_id: str, tmp_path: Path) -> None:
    # What the stack's `demo` service runs: `lakepulse generate --target api` with no token given.
    raw_topic, dlq_topic = f"it.{run_id}.gen-auth.raw", f"it.{run_id}.gen-auth.dlq"
    options = {"rate": 100.0, "duration_s": 3.0, "seed": 3, "tenants": 2, "run_id": run_id,
               "start": hours_ago(3)}
    valid = sum(e.is_valid for e in generate_events(GeneratorConfig(**options)))  # type: ignore[arg-type]
    assert valid > 20
    with topics(settings.kafka_bootstrap, [raw_topic, dlq_topic]):
        server = start_ingest_server({"LAKEPULSE_TOPIC_EVENTS_RAW": raw_topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": dlq_topic},
                                     tmp_path / "uvicorn.log")
        try:
            env = {k: v for k, v in os.environ.items() if k != "LAKEPULSE_INGEST_TOKEN"}
            generated = subprocess.run(
                [str(Path(sys.executable).parent / "lakepulse"), "generate", "--target", "api", "--api-url",
                 server.url, "--rate", "100", "--duration", "3", "--seed", "3", "--tenants", "2", "--run-id", run_id,
                 "--start", rfc3339(options["start"]), "--no-pace"],
                env=env, capture_output=True, text=True, timeout=120, check=False)
        finally:
            server.stop()
        assert generated.returncode == 0, generated.stderr
        assert len(read_topic(settings.kafka_bootstrap, raw_topic, valid)) == valid
