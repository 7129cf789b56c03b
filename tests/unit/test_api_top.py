"""Top-N: the period, the ranking by kind across the seam, and the route's validation and tenancy (fake layers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lakepulse.api.series import SeriesRequestError
from lakepulse.api.top import MAX_PERIOD, TopRequest, minute_ceil, parse_last, rank_top
from lakepulse.settings import Settings
from tests.unit.test_api_app import (
    ENGINE_WORDS,
    SEAM,
    SECRET,
    FakeLayer,
    FakeSeam,
    bearer,
    build_app,
    pinot_row,
    trino_row,
)

MINUTE = timedelta(minutes=1)
TOP = "/v1/metrics/{}/top"


def items(tenant: str, at: datetime, sold: dict[str, int], layer: str = "speed") -> list[dict[str, object]]:
    make = pinot_row if layer == "speed" else trino_row
    return [make(tenant, "items_sold", at, 1, float(q), dims={"item_id": item, "category": "pizza"})
            for item, q in sold.items()]


def test_last_is_whole_minutes_up_to_a_week_and_ends_with_the_current_minute() -> None:
    assert parse_last("15m") == timedelta(minutes=15)
    assert parse_last("7d") == MAX_PERIOD
    for bad in ("0m", "1w", "8d", "1.5h", "-1h", "1h ", "9" * 20, "1h'; DROP TABLE x"):
        with pytest.raises(SeriesRequestError):
            parse_last(bad)
    now = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
    assert minute_ceil(now) == datetime(2026, 3, 2, 10, 8, tzinfo=UTC)
    assert minute_ceil(datetime(2026, 3, 2, 10, 8, tzinfo=UTC)) == datetime(2026, 3, 2, 10, 8, tzinfo=UTC)
    request = TopRequest.last("items_sold", "item_id", timedelta(hours=1), now)
    assert request.start == datetime(2026, 3, 2, 9, 8, tzinfo=UTC)
    assert request.end == datetime(2026, 3, 2, 10, 8, tzinfo=UTC)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"metric": "nope"}, "unknown metric"),
    ({"metric": "orders_completed"}, "no dimensions"),
    ({"dimension": "country"}, "unknown dimension"),
    ({"n": 0}, "n must"),
    ({"n": 101}, "n must"),
    ({"start": datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)}, "whole minutes"),
    ({"start": datetime(2026, 2, 1, tzinfo=UTC)}, "at most 7 days"),
    ({"start": datetime(2026, 3, 2, 11, 0, tzinfo=UTC)}, "before end"),
    ({"filters": {"country": "DE"}}, "unknown filter dimension"),
    ({"filters": {"category": "x" * 10_000}}, "at most"),
])
def test_requests_outside_the_catalog_or_the_caps_are_refused(kwargs: dict[str, object], words: str) -> None:
    base: dict[str, object] = {"metric": "items_sold", "dimension": "item_id",
                               "start": datetime(2026, 3, 2, 9, tzinfo=UTC),
                               "end": datetime(2026, 3, 2, 10, tzinfo=UTC)}
    with pytest.raises(SeriesRequestError, match=words):
        TopRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_groups_rank_by_their_merged_value_across_the_seam_each_minute_once() -> None:
    seam = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    before, after = seam - MINUTE, seam
    batch = items("t-a", before, {"margherita": 5, "salad": 1}, "batch")
    speed = (items("t-a", after, {"salad": 9, "margherita": 1, "tiramisu": 2})
             # the speed layer still holds the batch minute too: it must not count twice
             + items("t-a", before, {"margherita": 100}))
    request = TopRequest("items_sold", "item_id", seam - 5 * MINUTE, seam + 5 * MINUTE, n=2)
    response = rank_top(request, "t-a", seam, batch, speed)
    assert [(e.key, e.value) for e in response.entries] == [("salad", 10.0), ("margherita", 6.0)]
    assert response.groups == 3
    body = response.to_dict()
    assert body["layer"] == "mixed" and body["final"] is False
    assert body["top"][0] == {"rank": 1, "key": "salad", "value": 10.0, "count": 2, "sum": 10.0}


def test_filters_apply_and_ties_rank_by_count_then_name() -> None:
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    rows = items("t-a", at, {"b": 3, "a": 3}) + [
        pinot_row("t-a", "items_sold", at + MINUTE, 1, 3.0, dims={"item_id": "c", "category": "drinks"})]
    request = TopRequest("items_sold", "item_id", at, at + 2 * MINUTE, filters={"category": "pizza"})
    assert [e.key for e in rank_top(request, "t-a", None, [], rows).entries] == ["a", "b"]


def test_a_row_of_another_tenant_is_an_error_not_a_number() -> None:
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    request = TopRequest("items_sold", "item_id", at, at + MINUTE)
    with pytest.raises(ValueError, match="another tenant"):
        rank_top(request, "t-a", None, [], items("t-b", at, {"x": 1}))


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET))


@pytest.fixture
def top_client(settings: Settings) -> TestClient:
    at = SEAM - 2 * MINUTE
    batch = FakeLayer(items("t-a", at, {"pizza": 4}, "batch") + items("t-b", at, {"secret": 50}, "batch"))
    speed = FakeLayer(items("t-a", SEAM, {"pasta": 3, "pizza": 1}) + items("t-b", SEAM, {"secret": 70}))
    return TestClient(build_app(settings, batch, speed, FakeSeam()))


def test_the_route_ranks_one_tenant_and_refuses_others(top_client: TestClient, settings: Settings) -> None:
    params = {"by": "item_id", "from": "2026-03-02T10:00:00Z", "to": "2026-03-02T10:10:00Z"}
    answer = top_client.get(TOP.format("items_sold"), params=params, headers=bearer(settings, tenant="t-a"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tenant"] == "t-a" and [(e["key"], e["value"]) for e in body["top"]] == [("pizza", 5.0), ("pasta", 3.0)]
    assert "secret" not in answer.text
    other = top_client.get(TOP.format("items_sold"), params={**params, "tenant": "t-b"},
                           headers=bearer(settings, tenant="t-a"))
    assert other.status_code == 403
    assert top_client.get(TOP.format("items_sold"), params=params).status_code == 401
    analyst = top_client.get(TOP.format("items_sold"), params={**params, "tenant": "t-b"},
                             headers=bearer(settings, role="analyst"))
    assert [e["key"] for e in analyst.json()["top"]] == ["secret"]


def test_the_default_period_is_the_last_hour_up_to_now(top_client: TestClient, settings: Settings) -> None:
    answer = top_client.get(TOP.format("items_sold"), params={"by": "category"}, headers=bearer(settings, tenant="t-a"))
    assert answer.status_code == 200
    body = answer.json()
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert end - start == timedelta(hours=1) and end >= datetime.now(UTC)


@pytest.mark.parametrize("params", [
    {"by": "nope"}, {"by": "item_id'; DROP TABLE metrics_minute; --"}, {"by": "item_id", "n": "0"},
    {"by": "item_id", "n": "1e9"}, {"by": "item_id", "last": "x" * 10_000}, {"by": "item_id", "last": "99999d"},
    {"by": "item_id", "from": "2026-03-02T10:00:00Z"}, {"by": "item_id", "from": "yesterday", "to": "today"},
    {"by": "item_id", "filter": "nope:1"}, {"by": "ü" * 300}, {"by": "item_id", "tenant": "t-a' OR '1'='1"},
])
def test_hostile_parameters_get_a_400_without_engine_text(
    top_client: TestClient, settings: Settings, params: dict[str, str]
) -> None:
    answer = top_client.get(TOP.format("items_sold"), params=params, headers=bearer(settings, tenant="t-a"))
    assert answer.status_code == 400, answer.text
    assert not any(word in answer.text for word in ENGINE_WORDS)
