"""Producer credentials on the ingest side: the per-event tenant check, the route's 401/403 paths (with an
injected sink), and the clients that send a token (SDK, generator, renewed local tokens)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from lakepulse.auth.tokens import Principal, RenewingToken, TokenVerifier, mint_token
from lakepulse.cli import app as cli_app
from lakepulse.generator import cli as generator_cli
from lakepulse.ingest.app import create_app, get_sink
from lakepulse.ingest.body import Item, Limits
from lakepulse.ingest.processing import KafkaRecord, process_items, tenant_not_allowed
from lakepulse.sdk import DeliveryError, IngestClient
from lakepulse.settings import Settings
from tests.stack_events import hours_ago, rfc3339
from tests.unit.cluster_settings import CLUSTER_KWARGS

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
RECEIVED = hours_ago(1)
OCCURRED = rfc3339(hours_ago(2))  # the ingest API refuses events older than its horizon


def event(tenant: str, event_id: str, **overrides: Any) -> dict[str, Any]:
    return {"event_id": event_id, "tenant_id": tenant, "event_type": "signup",
            "occurred_at": OCCURRED, "source": "web", **overrides}


def items(*events: dict[str, Any]) -> list[Item]:
    return [Item(orjson.dumps(e)) for e in events]


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET))


# --- the per-event check (pure) ----------------------------------------------------------------------


def test_events_of_tenants_the_caller_may_not_write_are_dead_lettered_with_the_reason() -> None:
    producer = Principal("p", None, "producer", frozenset({"A"}))
    batch = process_items(items(event("A", "a1"), event("B", "b1"), event("A", "a2")), RECEIVED, None,
                          may_write=producer.may_write)
    assert [(r.index, r.status, r.event_id) for r in batch.results] == [
        (0, "accepted", "a1"), (1, "rejected", "b1"), (2, "accepted", "a2")]
    assert batch.results[1].reason == "tenant_not_allowed: this credential may not write tenant 'B'"  # type: ignore[union-attr]
    assert [orjson.loads(r.value)["event_id"] for r in batch.raw_records] == ["a1", "a2"]
    assert (batch.accepted, batch.rejected) == (2, 1)
    letter = orjson.loads(batch.dlq_records[0].value)
    assert (letter["reason"], letter["tenant_id"], letter["event_id"]) == (tenant_not_allowed("B"), "B", "b1")
    assert orjson.loads(letter["raw"]) == event("B", "b1")
    assert batch.dlq_records[0].key == b"B"


def test_the_contract_is_checked_before_the_tenant() -> None:
    # An invalid event of a foreign tenant is told what is wrong with it, not only whose it is.
    batch = process_items(items(event("B", "b1", source="")), RECEIVED, None, may_write=lambda tenant: False)
    assert batch.results[0].reason.startswith("source:")  # type: ignore[union-attr]


def test_without_a_check_every_tenant_is_written() -> None:
    batch = process_items(items(event("A", "a1"), event("B", "b1")), RECEIVED, None)
    assert (batch.accepted, batch.rejected) == (2, 0)


def test_an_event_without_an_id_refused_for_its_tenant_gets_none() -> None:
    line = {k: v for k, v in event("B", "x").items() if k != "event_id"}
    batch = process_items(items(line), RECEIVED, None, may_write=lambda tenant: tenant == "A",
                          new_event_id=lambda: "never-used")
    assert (batch.results[0].status, batch.results[0].event_id) == ("rejected", None)
    assert orjson.loads(batch.dlq_records[0].value)["event_id"] is None


# --- the route: who may post ---------------------------------------------------------------------------


class RecordingSink:
    """Keeps what it is given (the route is what these tests are about, not Kafka)."""

    def __init__(self) -> None:
        self.raw: list[KafkaRecord] = []
        self.dlq: list[KafkaRecord] = []

    async def write(self, raw: Sequence[KafkaRecord], dlq: Sequence[KafkaRecord]) -> None:
        self.raw.extend(raw)
        self.dlq.extend(dlq)

    async def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def ingest_app(settings: Settings, sink: RecordingSink) -> FastAPI:
    app = create_app(settings, limits=Limits(max_body_bytes=10_000, max_events=100))
    app.dependency_overrides[get_sink] = lambda: sink
    return app


@pytest.fixture
def client(settings: Settings, sink: RecordingSink) -> Iterator[TestClient]:
    with TestClient(ingest_app(settings, sink)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired(settings: Settings) -> str:
    return mint_token(settings, role="producer", tenants=["A"], ttl=timedelta(hours=1),
                      now=datetime.now(UTC) - timedelta(hours=2))


def other_secret(settings: Settings) -> str:
    forger = settings.model_copy(update={"auth_jwt_secret": SecretStr("another-secret-also-long-enough-for-hs256")})
    return mint_token(forger, role="admin")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "must be 'Bearer <token>'"),
        ("other_secret", "signature does not verify"),
        ("expired", "token has expired"),
    ],
)
def test_missing_or_bad_token_is_a_401_before_the_body_is_read(
    settings: Settings, client: TestClient, sink: RecordingSink, headers: Any, reason: str
) -> None:
    if isinstance(headers, str):
        headers = bearer({"other_secret": other_secret, "expired": expired}[headers](settings))
    # A body over the size limit: read, it would be a 413.
    response = client.post("/v1/events", content=b"x" * 20_000, headers={**headers, "content-type": "application/json"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert reason in response.json()["detail"]
    assert sink.raw == [] and sink.dlq == []
    assert 'lakepulse_ingest_requests_total{status="401"} 1.0' in client.get("/metrics").text


def test_an_analyst_token_writes_nothing(settings: Settings, client: TestClient, sink: RecordingSink) -> None:
    response = client.post("/v1/events", json=event("A", "a1"), headers=bearer(mint_token(settings, role="analyst")))
    assert response.status_code == 403
    assert response.json()["detail"] == "an analyst token reads metrics; it may not write events"
    assert sink.raw == [] and sink.dlq == []


def test_a_producer_writes_its_tenants_and_is_told_about_the_others(
    settings: Settings, client: TestClient, sink: RecordingSink
) -> None:
    token = mint_token(settings, role="producer", tenants=["A"])
    response = client.post("/v1/events", json=[event("A", "a1"), event("B", "b1")], headers=bearer(token))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": 1, "results": [
        {"index": 0, "status": "accepted", "event_id": "a1"},
        {"index": 1, "status": "rejected", "event_id": "b1",
         "reason": "tenant_not_allowed: this credential may not write tenant 'B'"}]}
    assert [r.key for r in sink.raw] == [b"A"]
    assert orjson.loads(sink.dlq[0].value)["reason"] == tenant_not_allowed("B")
    metrics = client.get("/metrics").text
    assert "lakepulse_ingest_events_rejected_total 1.0" in metrics
    assert "lakepulse_ingest_events_dead_lettered_total 1.0" in metrics


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [({"tenant": "A"}, ["A"]), ({"role": "admin"}, ["A", "B", "C"])],
)
def test_tenant_and_admin_tokens_write_their_scope(
    settings: Settings, client: TestClient, claims: dict[str, str], accepted: list[str]
) -> None:
    body = [event(t, f"{t}-1") for t in ("A", "B", "C")]
    response = client.post("/v1/events", json=body, headers=bearer(mint_token(settings, **claims)))
    results = response.json()["results"]
    assert [body[r["index"]]["tenant_id"] for r in results if r["status"] == "accepted"] == accepted


def test_health_metrics_and_docs_need_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_with_auth_off_no_token_is_asked_for(settings: Settings, sink: RecordingSink) -> None:
    with TestClient(ingest_app(settings.model_copy(update={"auth_enabled": False}), sink)) as client:
        response = client.post("/v1/events", json=[event("A", "a1"), event("B", "b1")])
        schema = client.get("/openapi.json").json()
    assert response.json()["accepted"] == 2
    assert "security" not in schema["paths"]["/v1/events"]["post"]
    assert "securitySchemes" not in schema["components"]


# --- tokens for long-running clients -------------------------------------------------------------------


def test_renewing_token_mints_anew_at_half_its_lifetime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakepulse.auth import tokens

    minted: list[str] = []

    def counting_mint(*args: Any, **kwargs: Any) -> str:
        minted.append(mint_token(*args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(tokens, "mint_token", counting_mint)
    clock = [1000.0]
    source = RenewingToken(settings, ttl=timedelta(minutes=10), clock=lambda: clock[0], role="producer",
                           tenants=["A"])
    assert len(minted) == 1  # the check at construction
    first = source()
    clock[0] += 299
    assert source() == first and len(minted) == 2
    clock[0] += 2  # past half of 600 s
    assert TokenVerifier(settings).verify(source()) == Principal("local-producer", None, "producer", frozenset({"A"}))
    assert len(minted) == 3
    assert source() == minted[-1] and len(minted) == 3


def test_renewing_token_refuses_bad_claims_at_once(settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least one tenant"):
        RenewingToken(settings, role="producer")


# --- the SDK sends the token ---------------------------------------------------------------------------


class Api:
    """Answers 202 to tokens it knows (or 401), recording each request's Authorization header."""

    def __init__(self, valid: set[str]) -> None:
        self.valid = valid
        self.seen: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        with self.lock:
            self.seen.append(header)
        if header not in {f"Bearer {t}" for t in self.valid}:
            return httpx.Response(401, json={"detail": "missing bearer token"}, headers={"www-authenticate": "Bearer"})
        lines = request.content.splitlines()
        results = [{"index": i, "status": "accepted", "event_id": orjson.loads(line)["event_id"]}
                   for i, line in enumerate(lines)]
        return httpx.Response(202, json={"accepted": len(lines), "rejected": 0, "results": results})


def sdk(api: Api, token: Any) -> IngestClient:
    return IngestClient("http://ingest.test", transport=httpx.MockTransport(api), token=token, senders=1,
                        backoff_s=0.001, max_backoff_s=0.01, flush_interval_s=0.01)


def test_sdk_sends_a_fixed_token() -> None:
    api = Api({"tok-1"})
    with sdk(api, "tok-1") as client:
        client.send(event("A", "a1"))
    assert api.seen == ["Bearer tok-1"]
    assert client.stats.accepted == 1


def test_sdk_asks_a_token_function_on_every_request() -> None:
    tokens = iter(["tok-1", "tok-2"])
    api = Api({"tok-1", "tok-2"})
    with sdk(api, lambda: next(tokens)) as client:
        client.send(event("A", "a1"))
        client.flush()
        client.send(event("A", "a2"))
    assert api.seen == ["Bearer tok-1", "Bearer tok-2"]


def test_sdk_does_not_retry_a_401() -> None:
    api = Api(set())
    client = sdk(api, "stale")
    client.send(event("A", "a1"))
    with pytest.raises(DeliveryError, match="HTTP 401"):
        client.close()
    assert (len(api.seen), client.stats.failed, client.stats.retries) == (1, 1, 0)


# --- the generator's token -----------------------------------------------------------------------------


def cluster(**overrides: Any) -> Settings:
    return Settings(**{**CLUSTER_KWARGS, **overrides})


def test_generator_sends_the_token_it_is_given(settings: Settings) -> None:
    assert generator_cli.api_token(" given ", settings) == "given"
    assert generator_cli.api_token("given", cluster()) == "given"


def test_generator_mints_a_renewed_local_admin_token(settings: Settings) -> None:
    source = generator_cli.api_token(None, settings)
    assert callable(source)
    assert TokenVerifier(settings).verify(source()) == Principal("local-generator", None, "admin")
    assert generator_cli.api_token("  ", settings) is not None  # an empty env var counts as none


def test_generator_needs_a_token_in_cluster_mode() -> None:
    with pytest.raises(typer.BadParameter, match="LAKEPULSE_INGEST_TOKEN"):
        generator_cli.api_token(None, cluster())
    assert generator_cli.api_token(None, cluster(auth_enabled=False)) is None


def test_generate_reads_the_token_from_the_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    made: list[dict[str, Any]] = []

    class Client:  # stands in for the HTTP client only; the option plumbing is what is tested
        stats = type("Stats", (), {"failed": 0})()

        def __init__(self, url: str, **options: Any) -> None:
            made.append({"url": url, **options})

        def send_line(self, line: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(generator_cli, "IngestClient", Client)
    monkeypatch.setattr(generator_cli, "get_settings", lambda: settings)
    result = CliRunner().invoke(
        cli_app, ["generate", "--target", "api", "--api-url", "http://ingest.test", "--rate", "5", "--duration", "1",
                  "--no-pace"], env={"LAKEPULSE_INGEST_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert made == [{"url": "http://ingest.test", "token": "from-env"}]
    assert "from-env" not in result.output
