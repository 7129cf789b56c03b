"""The ingest route with an injected sink: statuses, per-event results, metrics (authenticated as a producer
of t1; the auth paths themselves are in test_producer_auth.py)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from lakepulse.auth.tokens import mint_token
from lakepulse.events import rfc3339_utc
from lakepulse.ingest.app import create_app, get_sink
from lakepulse.ingest.body import Limits
from lakepulse.ingest.processing import KafkaRecord
from lakepulse.ingest.sink import KafkaUnavailable
from lakepulse.ingest.topics import TopicLimitError
from lakepulse.settings import Settings, get_settings

# A minute old: within the default horizon (event_max_age_days) whenever the tests run.
EVENT = {
    "tenant_id": "t1",
    "event_type": "signup",
    "occurred_at": rfc3339_utc(datetime.now(UTC) - timedelta(minutes=1)),
    "source": "web",
}


class RecordingSink:
    """Keeps what it is given; fails every write while `down` is set."""

    def __init__(self) -> None:
        self.raw: list[KafkaRecord] = []
        self.dlq: list[KafkaRecord] = []
        self.down = False

    async def write(self, raw: Sequence[KafkaRecord], dlq: Sequence[KafkaRecord]) -> None:
        if self.down:
            raise KafkaUnavailable("Kafka did not acknowledge every event: broker transport failure")
        self.raw.extend(raw)
        self.dlq.extend(dlq)

    async def healthy(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def client(sink: RecordingSink) -> Iterator[TestClient]:
    app = create_app(limits=Limits(max_body_bytes=50_000, max_events=100))
    app.dependency_overrides[get_sink] = lambda: sink
    token = mint_token(get_settings(), role="producer", tenants=["t1"])
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def test_array_is_accepted_with_a_result_per_event(client: TestClient, sink: RecordingSink) -> None:
    bad = {**EVENT, "tenant_id": "no spaces"}
    response = client.post("/v1/events", json=[{**EVENT, "event_id": "a"}, bad, {**EVENT, "event_id": "c"}])
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["results"][0] == {"index": 0, "status": "accepted", "event_id": "a"}
    assert body["results"][1]["status"] == "rejected"
    assert body["results"][1]["reason"].startswith("tenant_id: String should match pattern")
    assert [orjson.loads(r.value)["event_id"] for r in sink.raw] == ["a", "c"]
    assert orjson.loads(sink.dlq[0].value)["raw"] == orjson.dumps(bad).decode()


def test_gzipped_ndjson_is_accepted(client: TestClient, sink: RecordingSink) -> None:
    body = gzip.compress(b"\n".join(orjson.dumps({**EVENT, "event_id": f"e{i}"}) for i in range(5)))
    response = client.post(
        "/v1/events",
        content=body,
        headers={
            "content-type": "application/x-ndjson",
            "content-encoding": "gzip",
            "user-agent": "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X)",
        },
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 5
    assert {orjson.loads(r.value)["device_family"] for r in sink.raw} == {"iPad"}


def test_single_event_without_id_gets_a_uuid(client: TestClient, sink: RecordingSink) -> None:
    response = client.post("/v1/events", json=EVENT)
    event_id = response.json()["results"][0]["event_id"]
    assert len(event_id) == 36 and event_id.count("-") == 4
    assert orjson.loads(sink.raw[0].value)["event_id"] == event_id
    assert sink.raw[0].key == b"t1"


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{broken", {"content-type": "application/json"}, 400),
        (b"x" * 50_001, {"content-type": "application/json"}, 413),
        (orjson.dumps([EVENT] * 101), {"content-type": "application/json"}, 413),
        (b"hello", {"content-type": "text/plain"}, 415),
    ],
)
def test_unusable_bodies_write_nothing(
    client: TestClient, sink: RecordingSink, content: bytes, headers: dict[str, str], status: int
) -> None:
    response = client.post("/v1/events", content=content, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"]
    assert sink.raw == [] and sink.dlq == []


def test_kafka_down_answers_503_with_retry_after(client: TestClient, sink: RecordingSink) -> None:
    sink.down = True
    response = client.post("/v1/events", json=[EVENT])
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "acknowledge" in response.json()["detail"]
    assert client.get("/health").status_code == 503


def test_metrics_count_accepted_rejected_and_dead_lettered(client: TestClient) -> None:
    client.post("/v1/events", json=[EVENT, EVENT, {**EVENT, "source": ""}])
    client.post("/v1/events", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert "lakepulse_ingest_events_accepted_total 2.0" in text
    assert "lakepulse_ingest_events_rejected_total 1.0" in text
    assert "lakepulse_ingest_events_dead_lettered_total 1.0" in text
    assert 'lakepulse_ingest_requests_total{status="400"} 1.0' in text
    assert "lakepulse_ingest_produce_latency_seconds_count 1.0" in text


def test_health_is_ok_when_kafka_answers(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "kafka": "up"}


def test_openapi_describes_the_event_body_the_503_and_the_bearer_token() -> None:
    schema = create_app().openapi()
    post = schema["paths"]["/v1/events"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert post["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "OrderPlacedProperties" in schema["components"]["schemas"]


def default_limits_client(sink: RecordingSink, **settings: object) -> TestClient:
    """The app with the request limits and per-event rules of the settings (plus `settings`) and `sink`."""
    app = create_app(get_settings().model_copy(update=settings))
    app.dependency_overrides[get_sink] = lambda: sink
    token = mint_token(get_settings(), role="producer", tenants=["t1"])
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_an_oversize_event_is_refused_per_event_and_the_rest_accepted(sink: RecordingSink) -> None:
    """The issue's request: one event with 200,000 properties (~3.5 MB) among valid ones used to answer 503 for
    the whole request; now that event alone is refused (a permanent error: never a 5xx)."""
    huge = {**EVENT, "event_id": "huge", "properties": {f"key_{i:06d}": i for i in range(200_000)}}
    body = orjson.dumps([{**EVENT, "event_id": "a"}, huge, {**EVENT, "event_id": "c"}])
    assert len(body) > 3_500_000
    with default_limits_client(sink) as client:
        response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
        metrics = client.get("/metrics").text
    assert response.status_code == 202
    results = response.json()["results"]
    assert [(r["event_id"], r["status"]) for r in results] == [
        ("a", "accepted"), ("huge", "rejected"), ("c", "accepted")
    ]
    assert results[1]["reason"] == (
        f"event_too_large: the event is {len(orjson.dumps(huge)):,} bytes serialised; at most 900,000 bytes are allowed"
    )
    assert [orjson.loads(r.value)["event_id"] for r in sink.raw] == ["a", "c"]
    (letter,) = sink.dlq
    assert len(letter.value) <= get_settings().ingest_max_event_bytes
    assert orjson.loads(letter.value)["raw_truncated"] is True
    assert "lakepulse_ingest_events_dead_lettered_total 1.0" in metrics


def test_future_and_too_old_events_are_refused_per_event(sink: RecordingSink) -> None:
    now = datetime.now(UTC)
    events = [
        {**EVENT, "event_id": "future", "occurred_at": "2099-01-01T00:00:00Z"},
        {**EVENT, "event_id": "ahead", "occurred_at": rfc3339_utc(now + timedelta(hours=2))},
        {**EVENT, "event_id": "old", "occurred_at": "1970-01-01T00:00:00Z"},
        {**EVENT, "event_id": "fine"},
    ]
    with default_limits_client(sink) as client:
        response = client.post("/v1/events", json=events)
    assert response.status_code == 202
    assert [(r["event_id"], r["status"], r.get("reason", "").split(":")[0]) for r in response.json()["results"]] == [
        ("future", "rejected", "occurred_at_in_future"),
        ("ahead", "rejected", "occurred_at_in_future"),
        ("old", "rejected", "occurred_at_too_old"),
        ("fine", "accepted", ""),
    ]
    assert [orjson.loads(r.value)["event_id"] for r in sink.dlq] == ["future", "ahead", "old"]
    # No horizon: the 1970 event is accepted (and repaired into history); the future ones still are not.
    sink.raw.clear()
    with default_limits_client(sink, event_max_age_days=None) as client:
        accepted = [r["event_id"] for r in client.post("/v1/events", json=events).json()["results"]
                    if r["status"] == "accepted"]
    assert accepted == ["old", "fine"]


def test_start_up_checks_the_topics_unless_the_sink_is_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[int] = []

    def refuse(settings: Settings) -> dict[str, int]:
        checked.append(settings.ingest_max_event_bytes)
        raise TopicLimitError("LAKEPULSE_INGEST_MAX_EVENT_BYTES=20,000,000 allows events that Kafka would refuse")

    monkeypatch.setattr("lakepulse.ingest.app.verify_topic_limits", refuse)
    app = create_app(get_settings().model_copy(update={"ingest_max_event_bytes": 20_000_000}))
    with pytest.raises(TopicLimitError, match="would refuse"), TestClient(app):
        pass
    assert checked == [20_000_000]
    swapped = create_app(get_settings().model_copy(update={"ingest_max_event_bytes": 20_000_000}))
    swapped.dependency_overrides[get_sink] = RecordingSink
    with TestClient(swapped) as client:
        assert client.get("/health").status_code == 200
    assert checked == [20_000_000]
