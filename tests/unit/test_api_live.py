"""The live state without engines: the assembly from the broker's row shapes, the windowed numbers across the
seam (equal to the series endpoint's), the final-totals cache, the live reader's SQL and binding, and
`GET /v1/live` over HTTP with injected readers (tenancy, 400s, 503s, hostile input, OpenAPI)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pinotdb
import pytest
from fastapi.testclient import TestClient
from pinotdb.db import apply_parameters
from pydantic import SecretStr

from lakepulse.api.app import create_app
from lakepulse.api.live import (
    FUNNEL_STATUSES,
    MAX_WAITING_LISTED,
    FinalTotals,
    LayerTotal,
    LiveReads,
    LiveRequest,
    LiveRequestError,
    LiveSource,
    couriers_body,
    funnel_body,
    layer_total,
    live_body,
    live_spans,
    metric_body,
    ratings_body,
    read_live,
)
from lakepulse.api.schemas import FunnelOrders, LiveBody
from lakepulse.api.series import SeriesRequest, TimeRange, merge_series
from lakepulse.api.sources import MinuteRows, SourceUnavailable
from lakepulse.catalog import get_catalog
from lakepulse.settings import Settings
from tests.unit.test_api_app import (
    HOSTILE,
    SECRET,
    FakeLayer,
    FakeSeam,
    RaisingConnection,
    RecordingConnection,
    RecordingCursor,
    assert_no_engine_text,
    bearer,
    pinot_row,
    trino_row,
)

MINUTE = timedelta(minutes=1)
UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
# 10:59:30 UTC: the last hour is [10:00, 11:00), today (UTC) [00:00, 11:00); the seam lies between.
NOW = datetime(2026, 3, 2, 10, 59, 30, tzinfo=UTC)
DAY_START = datetime(2026, 3, 2, tzinfo=UTC)
SEAM = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
LIVE = "/v1/live"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def prep_row(tenant: str, start: datetime, seconds: list[float], updated_at: datetime | None = None,
             as_pinot: bool = True) -> dict[str, Any]:
    """A prep_time_seconds minute row holding `seconds` (counters in the catalog's buckets)."""
    bounds = get_catalog().metric("prep_time_seconds").buckets
    counters = [0] * (len(bounds) + 1)
    for s in seconds:
        counters[next((i for i, b in enumerate(bounds) if s <= b), len(bounds))] += 1
    row = (pinot_row if as_pinot else trino_row)(tenant, "prep_time_seconds", start, len(seconds), sum(seconds))
    row.update(min=min(seconds), max=max(seconds), buckets=str(counters) if as_pinot else counters)
    if updated_at is not None:
        row["updated_at"] = ms(updated_at)
    return row


class FakeLive:
    """The live tables' rows per tenant, in the broker's shapes; records what it was asked."""

    def __init__(self, rows: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
                 error: Exception | None = None) -> None:
        self.rows = rows or {}
        self.error = error
        self.calls: list[tuple[str, str, int | None]] = []
        self._finals = FinalTotals()

    @property
    def finals(self) -> FinalTotals:
        return self._finals

    def _read(self, what: str, tenant_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        self.calls.append((what, tenant_id, limit))
        if self.error is not None:
            raise self.error
        rows = self.rows.get(tenant_id, {}).get(what, [])
        return rows if limit is None else rows[:limit]

    def order_statuses(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._read("statuses", tenant_id)

    def courier_summary(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._read("summary", tenant_id)

    def waiting_couriers(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        return self._read("waiting", tenant_id, limit)

    def latest_ratings(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        return self._read("ratings", tenant_id, limit)


def live_rows(orders: dict[str, int], waiting: list[str], ratings: list[tuple[str, float, float, datetime]],
              updated: datetime) -> dict[str, list[dict[str, Any]]]:
    """A tenant's live-table rows as the broker gives them (MAX as a float, -Infinity as text)."""
    return {
        "statuses": [{"status": s, "orders": n, "updated_ms": float(ms(updated))} for s, n in orders.items()],
        "summary": [{"is_waiting": True, "couriers": len(waiting), "updated_ms": float(ms(updated))},
                    {"is_waiting": False, "couriers": 3, "updated_ms": float(ms(updated - MINUTE))}],
        "waiting": [{"courier_id": c, "order_id": f"o-{c}", "since_ms": ms(updated - (10 - i) * MINUTE),
                     "updated_ms": ms(updated - MINUTE)} for i, c in enumerate(waiting)],
        "ratings": [{"order_id": o, "food_rating": f, "delivery_rating": d, "rated_ms": ms(at),
                     "updated_ms": ms(at + timedelta(seconds=2))} for o, f, d, at in ratings],
    }


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), auth_jwt_issuer="lakepulse-local",
                    auth_jwt_audience="lakepulse")


# --- the assembly from the broker's shapes ------------------------------------------------------------------


def test_the_funnel_lists_every_contract_status_with_zero_where_none() -> None:
    rows = [{"status": "in_kitchen", "orders": 4, "updated_ms": 1772445600123.0},
            {"status": "delivered", "orders": 2, "updated_ms": 1772445000000.0},
            # An order with only a rating so far has no status: Pinot gives its null default, "null".
            {"status": "null", "orders": 1, "updated_ms": 1772445700000.0}]
    body = funnel_body(rows, BERLIN)
    assert list(body["orders"]) == list(FUNNEL_STATUSES) == list(FunnelOrders.model_fields)
    assert body["orders"] == {"placed": 0, "confirmed": 0, "in_kitchen": 4, "ready_for_pickup": 0, "picked_up": 0,
                              "delivered": 2, "cancelled": 0}
    assert body["total"] == 6
    # The as-of is the newest update among all the tenant's order rows, in the request's zone.
    assert body["as_of"] == "2026-03-02T11:01:40+01:00"
    assert funnel_body([], UTC_ZONE) == {"as_of": None, "orders": dict.fromkeys(FUNNEL_STATUSES, 0), "total": 0}


def test_couriers_waiting_count_all_waiting_rows_and_list_the_longest_waiting() -> None:
    summary = [{"is_waiting": True, "couriers": 3, "updated_ms": 1772445600000.0},
               {"is_waiting": False, "couriers": 9, "updated_ms": 1772445660000.0}]
    waiting = [{"courier_id": "c-1", "order_id": "o-1", "since_ms": 1772445000000, "updated_ms": 1772445001000},
               {"courier_id": "c-2", "order_id": "o-2", "since_ms": 1772445060000, "updated_ms": 1772445061000}]
    body = couriers_body(summary, waiting, UTC_ZONE)
    assert body == {
        "as_of": "2026-03-02T10:01:00+00:00",  # the courier who stopped waiting is the newest update
        "count": 3,
        "couriers": [{"courier_id": "c-1", "order_id": "o-1", "since": "2026-03-02T09:50:00+00:00"},
                     {"courier_id": "c-2", "order_id": "o-2", "since": "2026-03-02T09:51:00+00:00"}],
        "truncated": True,  # 3 wait, 2 are listed
    }
    assert couriers_body([], [], UTC_ZONE) == {"as_of": None, "count": 0, "couriers": [], "truncated": False}


def test_ratings_read_pinot_null_defaults_as_null_and_take_the_orders_as_of() -> None:
    rows = [{"order_id": "o-2", "food_rating": 4.0, "delivery_rating": "-Infinity", "rated_ms": 1772445600000,
             "updated_ms": 1772445601000},
            {"order_id": "o-1", "food_rating": 5.0, "delivery_rating": 3.0, "rated_ms": 1772445500000,
             "updated_ms": 1772445501000}]
    orders_as_of = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    body = ratings_body(rows, orders_as_of, UTC_ZONE)
    assert body == {"as_of": "2026-03-02T10:05:00+00:00", "latest": [
        {"order_id": "o-2", "food_rating": 4, "delivery_rating": None, "rated_at": "2026-03-02T10:00:00+00:00"},
        {"order_id": "o-1", "food_rating": 5, "delivery_rating": 3, "rated_at": "2026-03-02T09:58:20+00:00"}]}
    assert ratings_body(rows, None, UTC_ZONE)["as_of"] == "2026-03-02T10:00:01+00:00"


def test_today_starts_at_local_midnight_even_on_a_dst_day_and_the_last_hour_ends_with_this_minute() -> None:
    # Berlin springs forward on 2026-03-29: that day starts at 23:00 UTC the day before and lasts 23 hours.
    now = datetime(2026, 3, 29, 12, 34, 56, tzinfo=UTC)
    spans = live_spans(now, BERLIN)
    assert spans["today"] == TimeRange(datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 12, 35,
                                                                                               tzinfo=UTC))
    assert spans["last_hour"] == TimeRange(datetime(2026, 3, 29, 11, 35, tzinfo=UTC),
                                           datetime(2026, 3, 29, 12, 35, tzinfo=UTC))
    assert live_spans(now, ZoneInfo("Asia/Kolkata"))["today"].start == datetime(2026, 3, 28, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(("timezone", "ratings"), [
    ("Mars/Olympus_Mons", 10), ("../../etc/passwd", 10), ("", 10), ("UTC", 0), ("UTC", 101), ("UTC", True),
])
def test_a_live_request_refuses_an_unknown_zone_or_a_ratings_count_out_of_range(timezone: str, ratings: int) -> None:
    with pytest.raises(LiveRequestError):
        LiveRequest(timezone=timezone, ratings=ratings)


# --- the windowed numbers -----------------------------------------------------------------------------------


def test_a_layer_total_keeps_the_spans_minutes_and_the_newest_version_of_each() -> None:
    metric = get_catalog().metric("gross_sales")
    span = TimeRange(SEAM, END)
    rows = [pinot_row("t-a", "gross_sales", SEAM, 2, 20.0, {"channel": "app"}),
            pinot_row("t-a", "gross_sales", SEAM, 3, 30.0, {"channel": "web"}),
            # Superseded by the row above (same minute and dimensions, older update): not counted.
            pinot_row("t-a", "gross_sales", SEAM, 9, 99.0, {"channel": "web"}, updated_at=SEAM),
            pinot_row("t-a", "gross_sales", SEAM - MINUTE, 5, 50.0)]  # before the span: the batch layer's
    total = layer_total(MinuteRows(rows, truncated=True), span, "t-a", metric)
    assert (total.row.count, total.row.sum, total.truncated) == (5, 50.0, True)
    assert total.freshness == SEAM + timedelta(seconds=3)
    with pytest.raises(ValueError, match="another tenant"):
        layer_total(MinuteRows([pinot_row("t-b", "gross_sales", SEAM, 1, 1.0)]), span, "t-a", metric)


def test_prep_time_over_the_last_hour_equals_the_series_hour_window_of_the_same_rows() -> None:
    metric = get_catalog().metric("prep_time_seconds")
    batch_rows = [prep_row("t-a", datetime(2026, 3, 2, 10, m, tzinfo=UTC), [100.0 + m, 400.0], as_pinot=False)
                  for m in range(0, 30, 3)]
    speed_rows = [prep_row("t-a", datetime(2026, 3, 2, 10, m, tzinfo=UTC), [50.0 * (m % 7) + 30, 1000.0 + m])
                  for m in range(30, 60, 2)]
    span = live_spans(NOW, UTC_ZONE)["last_hour"]
    assert span == TimeRange(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), END)
    totals = [layer_total(MinuteRows(batch_rows), TimeRange(span.start, SEAM), "t-a", metric),
              layer_total(MinuteRows(speed_rows), TimeRange(SEAM, span.end), "t-a", metric)]
    body = metric_body(metric, span, totals, UTC_ZONE)
    request = SeriesRequest("prep_time_seconds", span.start, span.end, "1h")
    (window,) = merge_series(request, "t-a", SEAM, batch_rows, speed_rows).windows
    assert body["count"] == window.count == 20 + 30
    assert body["value"] == pytest.approx(window.value)
    assert body["quantiles"] == pytest.approx(dict(window.quantiles or {}))
    assert (body["min"], body["max"]) == (window.min, window.max) == (30.0, 1058.0)
    assert (body["start"], body["end"], body["unit"]) == ("2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+00:00",
                                                          "seconds")


def test_read_live_asks_each_layer_for_its_span_only_and_keeps_final_totals(settings: Settings) -> None:
    batch = FakeLayer([trino_row("t-a", "gross_sales", DAY_START + i * MINUTE, 1, 10.0) for i in range(0, 660, 5)]
                      + [trino_row("t-a", "orders_completed", DAY_START + 60 * MINUTE, 4)])
    speed = FakeLayer([pinot_row("t-a", "gross_sales", SEAM + i * MINUTE, 2, 7.5) for i in range(30)]
                      + [pinot_row("t-a", "orders_completed", SEAM + 2 * MINUTE, 1)]
                      + [prep_row("t-a", SEAM + 5 * MINUTE, [120.0, 240.0], updated_at=SEAM + 6 * MINUTE)])
    live = FakeLive({"t-a": live_rows({"placed": 2, "delivered": 5}, ["c-1"], [], NOW - MINUTE)})
    request = LiveRequest(timezone="UTC", ratings=5)
    body = read_live(request, "t-a", live, FakeSeam(SEAM), batch, speed, NOW)
    LiveBody.model_validate(body)
    # gross_sales: 126 batch minutes before the seam (every 5th of 10.5 hours; the batch rows after it are not
    # the batch layer's), 30 speed minutes after it.
    assert body["sales_today"]["value"] == 126 * 10.0 + 30 * 7.5
    assert body["sales_today"]["count"] == 126 + 60
    assert body["completed_today"]["value"] == 5
    assert body["sales_today"]["as_of"] == "2026-03-02T10:59:03+00:00"  # the newest speed row's update
    prep = body["prep_time_last_hour"]
    assert (prep["count"], prep["value"], prep["min"], prep["max"]) == (2, 180.0, 120.0, 240.0)
    assert prep["as_of"] == "2026-03-02T10:36:00+00:00"
    assert (body["seam"], body["now"]) == ("2026-03-02T10:30:00+00:00", "2026-03-02T10:59:30+00:00")
    # Each layer is asked for its own minutes only: batch [midnight, seam) and [10:00, seam), speed the rest.
    assert sorted(batch.calls) == sorted([("t-a", "gross_sales", DAY_START, SEAM),
                                          ("t-a", "orders_completed", DAY_START, SEAM),
                                          ("t-a", "prep_time_seconds", datetime(2026, 3, 2, 10, tzinfo=UTC), SEAM)])
    assert sorted(speed.calls) == sorted([("t-a", m, SEAM, END)
                                          for m in ("gross_sales", "orders_completed", "prep_time_seconds")])
    assert sorted(live.calls) == [("ratings", "t-a", 5), ("statuses", "t-a", None), ("summary", "t-a", None),
                                  ("waiting", "t-a", MAX_WAITING_LISTED)]
    # Sales and completed orders come summed per minute by the engine; prep time needs its rows' buckets.
    assert batch.totals_calls == speed.totals_calls == 2
    # A second read within the TTL takes the final (before-the-seam) totals from the cache: no batch read.
    again = read_live(request, "t-a", live, FakeSeam(SEAM), batch, speed, NOW + timedelta(seconds=10))
    assert len(batch.calls) == 3 and len(speed.calls) == 6
    assert again["sales_today"] == body["sales_today"]


def test_without_a_seam_the_speed_layer_serves_everything(settings: Settings) -> None:
    batch, speed = FakeLayer(), FakeLayer([pinot_row("t-a", "gross_sales", DAY_START, 1, 4.25)])
    body = read_live(LiveRequest(), "t-a", FakeLive(), FakeSeam(None), batch, speed, NOW)
    assert batch.calls == [] and body["seam"] is None
    assert body["sales_today"]["value"] == 4.25 and body["completed_today"]["value"] == 0
    assert body["prep_time_last_hour"] | {"as_of": None} == {
        "metric": "prep_time_seconds", "unit": "seconds", "start": "2026-03-02T10:00:00+00:00",
        "end": "2026-03-02T11:00:00+00:00", "value": None, "count": 0, "as_of": None, "truncated": False,
        "min": None, "max": None, "quantiles": {"p50": None, "p90": None, "p99": None}}


def test_final_totals_expire_after_their_ttl_and_failures_are_not_kept() -> None:
    clock = [0.0]
    finals = FinalTotals(ttl_s=60, max_entries=2, clock=lambda: clock[0])
    computed: list[str] = []

    def compute(name: str) -> LayerTotal:
        computed.append(name)
        metric = get_catalog().metric("orders_placed")
        return layer_total(MinuteRows(), TimeRange(DAY_START, SEAM), "t-a", metric)

    span = TimeRange(DAY_START, SEAM)
    finals.get("t-a", "orders_placed", span, lambda: compute("first"))
    clock[0] = 59.0
    finals.get("t-a", "orders_placed", span, lambda: compute("cached"))
    assert computed == ["first"]
    clock[0] = 60.0
    finals.get("t-a", "orders_placed", span, lambda: compute("expired"))
    assert computed == ["first", "expired"]

    def failing() -> LayerTotal:
        raise SourceUnavailable("batch layer")

    with pytest.raises(SourceUnavailable):
        finals.get("t-b", "orders_placed", span, failing)
    finals.get("t-b", "orders_placed", span, lambda: compute("after failure"))
    finals.get("t-c", "orders_placed", span, lambda: compute("t-c"))  # the oldest entry (t-a) makes room
    finals.get("t-a", "orders_placed", span, lambda: compute("evicted"))
    assert computed == ["first", "expired", "after failure", "t-c", "evicted"]


def test_live_body_is_pure_and_matches_the_documented_shape() -> None:
    reads = LiveReads(statuses=[], courier_summary=[], waiting=[], ratings=[], totals={})
    body = live_body("t-a", LiveRequest(timezone="Europe/Berlin"), NOW, None, reads)
    LiveBody.model_validate(body)
    assert body["now"] == "2026-03-02T11:59:30+01:00"
    assert body["sales_today"]["start"] == "2026-03-02T00:00:00+01:00"
    assert (body["sales_today"]["value"], body["completed_today"]["value"]) == (0.0, 0)


# --- the live reader's SQL ----------------------------------------------------------------------------------


def test_the_live_reader_binds_the_tenant_and_limits_through_pinotdb(settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = RecordingCursor(["status", "orders", "updated_ms"], [["placed", 2, 1772445600000.0]])
    source = LiveSource(settings, timeout_s=1.5)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    assert source.order_statuses("t-a") == [{"status": "placed", "orders": 2, "updated_ms": 1772445600000.0}]
    source.courier_summary("t-a")
    source.waiting_couriers("t-a", 50)
    source.latest_ratings("t-a", 7)
    sent = [apply_parameters(sql, params) for sql, params in cursor.executed]
    assert all("'t-a'" in s for s in sent) and not any("t-a" in sql for sql, _ in cursor.executed)
    assert cursor.query_options == ["timeoutMs=1500"] * 4
    assert sent[0] == ("SELECT status, COUNT(*) AS orders, MAX(CAST(updated_at AS LONG)) AS updated_ms "
                       "FROM orders_live WHERE tenant_id = 't-a' GROUP BY status LIMIT 100")
    assert "FROM couriers_live WHERE tenant_id = 't-a' GROUP BY is_waiting" in sent[1]
    assert sent[2].endswith("FROM couriers_live WHERE tenant_id = 't-a' AND is_waiting = true "
                            "ORDER BY status_at, courier_id LIMIT 50")
    assert sent[3].endswith("FROM orders_live WHERE tenant_id = 't-a' AND rated_at IS NOT NULL "
                            "ORDER BY rated_at DESC, order_id LIMIT 7")


@pytest.mark.parametrize(("tenant", "limit"), [
    ("t-a'; DROP TABLE orders_live; --", 10), ("*", 10), ("", 10), ("%(tenant_id)s", 10),
    ("t-a", 0), ("t-a", "10; --"), ("t-a", "*"), ("t-a", 10**6), ("t-a", True),
])
def test_the_live_reader_refuses_unchecked_values_before_any_sql(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                 tenant: str, limit: Any) -> None:
    cursor = RecordingCursor([], [])
    source = LiveSource(settings)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    with pytest.raises(ValueError):
        source.latest_ratings(tenant, limit)
    with pytest.raises(ValueError):
        source.waiting_couriers(tenant, limit)
    assert cursor.executed == []


# --- GET /v1/live ---------------------------------------------------------------------------------------------


@pytest.fixture
def live() -> FakeLive:
    updated = datetime.now(UTC) - timedelta(seconds=5)
    return FakeLive({
        "t-a": live_rows({"placed": 3, "in_kitchen": 2, "delivered": 7}, ["c-1", "c-2"],
                         [(f"o-{i}", 5.0, 4.0, updated - i * MINUTE) for i in range(15)], updated),
        "t-b": live_rows({"cancelled": 40}, [], [], updated),
    })


@pytest.fixture
def speed() -> FakeLayer:
    """Speed rows of the current minute: t-a sold 12.5 in 1 order, t-b 999.0 in 9."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return FakeLayer([pinot_row("t-a", "gross_sales", now, 1, 12.5), pinot_row("t-b", "gross_sales", now, 9, 999.0)])


@pytest.fixture
def batch() -> FakeLayer:
    return FakeLayer()


@pytest.fixture
def client(settings: Settings, live: FakeLive, batch: FakeLayer, speed: FakeLayer) -> Iterator[TestClient]:
    app = create_app(settings, batch=batch, speed=speed, seam=FakeSeam(None), live=live)
    with TestClient(app) as test_client:
        yield test_client


def test_a_tenant_reads_its_live_state(client: TestClient, settings: Settings, live: FakeLive) -> None:
    response = client.get(LIVE, headers=bearer(settings, "t-a"), params={"timezone": "Asia/Kolkata", "ratings": 3})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    LiveBody.model_validate(body)
    assert (body["tenant"], body["timezone"]) == ("t-a", "Asia/Kolkata")
    assert body["now"].endswith("+05:30")
    assert body["funnel"]["orders"] == {"placed": 3, "confirmed": 0, "in_kitchen": 2, "ready_for_pickup": 0,
                                        "picked_up": 0, "delivered": 7, "cancelled": 0}
    assert [c["courier_id"] for c in body["couriers_waiting"]["couriers"]] == ["c-1", "c-2"]
    assert body["couriers_waiting"]["count"] == 2
    assert [r["order_id"] for r in body["ratings"]["latest"]] == ["o-0", "o-1", "o-2"]
    assert body["sales_today"]["value"] == 12.5
    assert {call[1] for call in live.calls} == {"t-a"}


def test_an_analyst_naming_a_tenant_reads_what_its_own_token_reads(client: TestClient, settings: Settings) -> None:
    own = client.get(LIVE, headers=bearer(settings, "t-b")).json()
    analyst = client.get(LIVE, headers=bearer(settings, role="analyst"), params={"tenant": "t-b"}).json()
    for body in (own, analyst):
        body.pop("now")
    assert own == analyst
    assert own["funnel"]["orders"]["cancelled"] == 40 and own["sales_today"]["value"] == 999.0


def test_tenant_a_naming_tenant_b_is_403_and_reads_nothing(client: TestClient, settings: Settings, live: FakeLive,
                                                           speed: FakeLayer) -> None:
    response = client.get(LIVE, headers=bearer(settings, "t-a"), params={"tenant": "t-b"})
    assert (response.status_code, response.json()) == (403, {"detail": "this token may read only its own tenant"})
    assert live.calls == [] and speed.calls == []
    assert client.get(LIVE).status_code == 401
    admin = client.get(LIVE, headers=bearer(settings, role="admin"))
    assert admin.status_code == 400 and "name one with the tenant parameter" in admin.json()["detail"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"timezone": "Mars/Olympus_Mons"}, "unknown timezone"),
    ({"ratings": 0}, "ratings"),
    ({"ratings": 101}, "ratings"),
    ({"ratings": "ten"}, "ratings"),
    ({"tenant": "t a"}, "tenant must be"),
])
def test_requests_the_live_route_refuses_are_400_with_a_reason(client: TestClient, settings: Settings,
                                                               live: FakeLive, params: dict[str, Any],
                                                               reason: str) -> None:
    response = client.get(LIVE, headers=bearer(settings, role="analyst"), params={"tenant": "t-a", **params})
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    assert live.calls == []


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("where", ["tenant", "timezone", "ratings"])
def test_hostile_strings_are_4xx_never_5xx(client: TestClient, settings: Settings, live: FakeLive,
                                           speed: FakeLayer, where: str, value: str) -> None:
    params = {"tenant": "t-a", where: value}
    response = client.get(LIVE, headers=bearer(settings, role="analyst"), params=params)
    assert 400 <= response.status_code < 500, (where, response.status_code, response.text[:200])
    assert len(response.content) < 2_000
    assert_no_engine_text(response.text)
    assert live.calls == speed.calls == []


def test_engine_failures_are_503_with_no_engine_text(settings: Settings, batch: FakeLayer, speed: FakeLayer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source = LiveSource(settings)
    monkeypatch.setattr(source, "_connection", lambda: RaisingConnection(pinotdb.DatabaseError(
        "Query\n\nSELECT status FROM orders_live WHERE tenant_id = 't-a' timed out: broker 127.0.0.1:8099")))
    failing_speed = FakeLayer(error=SourceUnavailable("speed layer"))
    for app in (create_app(settings, batch=batch, speed=speed, seam=FakeSeam(None), live=source),
                create_app(settings, batch=batch, speed=failing_speed, seam=FakeSeam(None), live=FakeLive()),
                create_app(settings, batch=batch, speed=speed, live=FakeLive(),
                           seam=FakeSeam(error=SourceUnavailable("seam (batch layer state)")))):
        with TestClient(app) as client:
            response = client.get(LIVE, headers=bearer(settings, "t-a"))
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert response.json()["detail"].endswith("is unavailable right now; try again shortly")
            assert_no_engine_text(response.text)


def test_the_live_source_is_closed_with_the_app(settings: Settings) -> None:
    closed: list[bool] = []

    class ClosingLive(FakeLive):
        def close(self) -> None:
            closed.append(True)

    with TestClient(create_app(settings, batch=FakeLayer(), speed=FakeLayer(), seam=FakeSeam(None),
                               live=ClosingLive())):
        assert closed == []
    assert closed == [True]


def test_the_openapi_document_declares_the_live_route_and_its_body(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/v1/live"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"tenant", "timezone", "ratings"}
    assert {"200", "400", "401", "403", "503"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/LiveBody")
    assert set(doc["components"]["schemas"]["FunnelOrders"]["properties"]) == set(FUNNEL_STATUSES)
