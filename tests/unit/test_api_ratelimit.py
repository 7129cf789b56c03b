"""The metrics API's per-caller budget: token buckets (a fake clock), and 429 + Retry-After over HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lakepulse.api.app import create_app
from lakepulse.api.ratelimit import RateLimited, RateLimiter, caller_key, per_worker
from lakepulse.auth.tokens import Principal, mint_token
from lakepulse.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_refused_until_a_token_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.charge("tenant:a")
    with pytest.raises(RateLimited) as refused:
        limiter.charge("tenant:a")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    assert refused.value.retry_after_header == "1"
    clock.now += 0.5
    limiter.charge("tenant:a")  # one token refilled
    with pytest.raises(RateLimited):
        limiter.charge("tenant:a")


def test_callers_have_separate_budgets() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=Clock())
    limiter.charge("tenant:a")
    limiter.charge("tenant:b")  # b is not slowed down by a
    with pytest.raises(RateLimited):
        limiter.charge("tenant:a")


def test_a_refused_request_spends_nothing_and_buckets_never_exceed_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1.0, burst=2, clock=clock)
    limiter.charge("k")
    limiter.charge("k")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.charge("k")
    clock.now += 1.0
    limiter.charge("k")  # the refused attempts did not push the refill further away
    clock.now += 3600
    limiter.charge("k")
    limiter.charge("k")
    with pytest.raises(RateLimited):
        limiter.charge("k")  # an hour idle refills to the burst, not to 3600


def test_the_number_of_callers_kept_is_capped() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=Clock(), max_callers=2)
    limiter.charge("a")
    limiter.charge("b")
    limiter.charge("c")  # a's bucket is forgotten (it would have refilled first)
    limiter.charge("a")


def test_each_worker_holds_its_share_and_zero_turns_the_limit_off() -> None:
    assert per_worker(0, 10, 2) is None
    limiter = per_worker(10.0, 4, 2)
    assert limiter is not None
    limiter.charge("k")
    limiter.charge("k")
    with pytest.raises(RateLimited):
        limiter.charge("k")
    with pytest.raises(ValueError):
        RateLimiter(0, 1)


def test_a_restaurant_shares_one_budget_across_its_tokens_and_others_spend_their_subjects() -> None:
    assert caller_key(Principal("one", "rest-1", "tenant")) == caller_key(Principal("two", "rest-1", "tenant"))
    assert caller_key(Principal("ana", None, "analyst")) != caller_key(Principal("bob", None, "analyst"))


def test_over_budget_requests_get_429_with_retry_after_and_other_tenants_are_served() -> None:
    settings = Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), api_rate_limit_per_s=0.5,
                        api_rate_burst=2, api_workers=1)
    with TestClient(create_app(settings)) as client:
        a = {"Authorization": f"Bearer {mint_token(settings, tenant='rest-a')}"}
        b = {"Authorization": f"Bearer {mint_token(settings, tenant='rest-b')}"}
        assert [client.get("/v1/catalog", headers=a).status_code for _ in range(2)] == [200, 200]
        refused = client.get("/v1/catalog", headers=a)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "too many requests" in refused.json()["detail"]
        assert client.get("/v1/catalog", headers=b).status_code == 200
        # Unauthenticated requests are refused before they can spend anyone's budget.
        assert client.get("/v1/catalog").status_code == 401
        assert client.get("/health").status_code == 200  # the service routes are not charged
