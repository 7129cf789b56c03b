"""Repeated reads answered from the answer cache before routing (lakepulse/api/fastpath.py): the same bytes as
the route's, for the same tenant only, and every refusal (bad token, another tenant, spent budget) still the
route's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lakepulse.api.app import create_app
from lakepulse.api.cache import AnswerCache
from lakepulse.settings import Settings
from tests.unit.test_api_app import MINUTE, SECRET, T9, FakeLayer, FakeSeam, bearer, pinot_row, series, trino_row


class CountingCache(AnswerCache):
    """The app's answer cache, counting how often a route asked it (`get`) and the middleware looked (`peek`)."""

    def __init__(self, ttl_s: float) -> None:
        super().__init__(ttl_s, clock=lambda: 0.0)  # time stands still: an answer stays fresh
        self.gets = 0
        self.hits: list[Any] = []

    def get(self, key: Any, compute: Any, keep: Any = None) -> Any:
        self.gets += 1
        return super().get(key, compute, keep)

    def peek(self, key: Any) -> Any:
        found = super().peek(key)
        if found is not None:
            self.hits.append(key)
        return found


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET))


@pytest.fixture
def batch() -> FakeLayer:
    """Orders of restaurants t-a (2 a minute) and t-b (50 a minute), 09:00-11:00."""
    return FakeLayer([trino_row(tenant, "orders_placed", T9 + i * MINUTE, n)
                      for i in range(120) for tenant, n in (("t-a", 2), ("t-b", 50))])


@pytest.fixture
def speed() -> FakeLayer:
    return FakeLayer([pinot_row(tenant, "orders_placed", T9 + i * MINUTE, n)
                      for i in range(120) for tenant, n in (("t-a", 3), ("t-b", 70))])


@pytest.fixture
def answers() -> CountingCache:
    return CountingCache(ttl_s=60)


def make_client(settings: Settings, batch: FakeLayer, speed: FakeLayer, answers: CountingCache) -> TestClient:
    app = create_app(settings, batch=batch, speed=speed, seam=FakeSeam())
    app.state.answers = answers
    return TestClient(app)


@pytest.fixture
def client(settings: Settings, batch: FakeLayer, speed: FakeLayer, answers: CountingCache) -> Iterator[TestClient]:
    with make_client(settings, batch, speed, answers) as test_client:
        yield test_client


def test_a_repeated_read_is_sent_from_the_cache_with_the_routes_bytes(
    client: TestClient, settings: Settings, batch: FakeLayer, speed: FakeLayer, answers: CountingCache
) -> None:
    headers = bearer(settings, tenant="t-a")
    first = series(client, headers)
    engine_calls = len(batch.calls)
    second = series(client, headers)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["cache-control"] == "no-store"
    assert answers.gets == 1 and len(answers.hits) == 1  # the route ran once; the repeat never reached it
    assert len(batch.calls) == engine_calls
    # The request metrics name the route's template for answers from the cache too.
    metrics = client.get("/metrics").text
    assert 'route="/v1/metrics/{metric}/series"' in metrics and 'status="200"' in metrics


def test_another_tenant_never_gets_the_cached_answer(client: TestClient, settings: Settings,
                                                     answers: CountingCache) -> None:
    a = series(client, bearer(settings, tenant="t-a"))
    b = series(client, bearer(settings, tenant="t-b"))
    assert a.status_code == b.status_code == 200
    assert a.content != b.content
    assert answers.hits == [] and answers.gets == 2
    # B naming A's tenant is the route's 403, cached answer or not.
    refused = series(client, bearer(settings, tenant="t-b"), tenant="t-a")
    assert refused.status_code == 403
    # An analyst naming t-a shares t-a's answer: the same tenant, path and parameters.
    analyst = series(client, bearer(settings, role="analyst"), tenant="t-a")
    assert analyst.content == a.content and len(answers.hits) == 1


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwdw=="])
def test_a_missing_or_bad_token_is_the_routes_401_even_when_the_answer_is_cached(
    client: TestClient, settings: Settings, answers: CountingCache, authorization: str | None
) -> None:
    assert series(client, bearer(settings, tenant="t-a")).status_code == 200
    headers = {"Authorization": authorization} if authorization else {}
    refused = series(client, headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert answers.hits == []


def test_a_spent_budget_is_the_routes_429_even_when_the_answer_is_cached(
    settings: Settings, batch: FakeLayer, speed: FakeLayer, answers: CountingCache
) -> None:
    limited = settings.model_copy(update={"api_rate_limit_per_s": 0.001, "api_rate_burst": 3, "api_workers": 1})
    with make_client(limited, batch, speed, answers) as client:
        headers = bearer(limited, tenant="t-a")
        statuses = [series(client, headers).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        # Every repeat found the answer; the 2nd and 3rd were sent from the cache and charged, the 4th and 5th
        # were over budget and left to the route, which refused them before asking the cache.
        assert len(answers.hits) == 4 and answers.gets == 1


def test_a_repeated_tenant_parameter_is_left_to_the_route(client: TestClient, settings: Settings,
                                                          answers: CountingCache) -> None:
    analyst = bearer(settings, role="analyst")
    assert series(client, analyst, tenant="t-a").status_code == 200
    twice = client.get("/v1/metrics/orders_placed/series", headers=analyst, params=[
        ("from", "2026-03-02T09:00:00Z"), ("to", "2026-03-02T11:00:00Z"), ("granularity", "1m"),
        ("tenant", "t-a"), ("tenant", "t-b")])
    assert answers.hits == []
    # The route reads the last one, as FastAPI does for a repeated scalar parameter.
    assert twice.status_code == 200
    assert twice.content == series(client, analyst, tenant="t-b").content
