"""The metrics API on the real engines: the app runs in-process (TestClient) with its real readers — Trino over
Delta, Pinot's broker through pinotdb, the seam on MinIO — and locally minted tokens. Orders posted through the
running ingest API come back from the series equal to their recount, minute by minute; another tenant's token
sees none of them; the batch reader's answers equal Delta's own rows.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from lakepulse.api.app import create_app
from lakepulse.api.sources import SeamSource
from lakepulse.auth.tokens import mint_token
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.trino import connect
from lakepulse.settings import Settings
from tests.stack_events import order, post, rfc3339, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.needs("trino", "pinot", "minio", "ingest", "streaming")]

SPEED_WAIT_S = 120  # a bound, not a timing assertion: freshness is measured by the benchmarks
DISTINCT_WAIT_S = 300  # the distinct query runs on a 10 s trigger and may trail the minute query by a minute
MINUTE = timedelta(minutes=1)
SERIES = "/v1/metrics/{}/series"


def minute_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def bearer(settings: Settings, tenant: str | None = None, role: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, role=role, ttl=timedelta(hours=1))}"}


@pytest.fixture
def api(stack: Context) -> Iterator[TestClient]:
    """The metrics app in-process, with the real engine readers of the stack's settings."""
    with TestClient(create_app(stack.settings)) as client:
        yield client


def get_series(api: TestClient, headers: dict[str, str], metric: str, start: datetime, end: datetime,
               granularity: str = "1m", **params: Any) -> dict[str, Any]:
    response = api.get(SERIES.format(metric), headers=headers, params={
        "from": rfc3339(start), "to": rfc3339(end), "granularity": granularity, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def by_minute(body: dict[str, Any], field: str = "value") -> dict[datetime, Any]:
    """Non-empty 1-minute windows of a series: start → the field."""
    return {datetime.fromisoformat(w["start"]): w[field] for w in body["windows"] if w["count"]}


def test_fresh_orders_come_back_per_minute_equal_to_their_recount_and_only_to_their_tenant(
        stack: Context, api: TestClient) -> None:
    settings = stack.settings
    tenant_a, tenant_b = f"api-a-{uuid.uuid4().hex[:10]}", f"api-b-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    orders_a = [order(tenant_a, now - timedelta(seconds=3 + 9 * i), 10.25 + i, f"u-{i % 4}") for i in range(12)]
    orders_b = [order(tenant_b, now - timedelta(seconds=4 + 20 * i), 1000.0, "u-b") for i in range(3)]
    malformed = [b'{"event_id": "api-bad-1", "tenant_id": "' + tenant_a.encode() + b'"}']
    answer = post(settings, [*orders_a, *orders_b, orders_a[0], orders_a[5], *malformed])
    assert (answer["accepted"], answer["rejected"]) == (len(orders_a) + len(orders_b) + 2, 1), answer

    # The independent recount: per minute of event time, each event id once.
    counts: Counter[datetime] = Counter()
    sales: defaultdict[datetime, float] = defaultdict(float)
    for event in orders_a:
        minute = minute_of(datetime.fromisoformat(event["occurred_at"]))
        counts[minute] += 1
        sales[minute] += event["properties"]["amount"]
    start, end = min(counts), max(counts) + MINUTE
    own = bearer(settings, tenant_a)

    wait_for(lambda: by_minute(get_series(api, own, "orders_placed", start, end)), dict(counts), SPEED_WAIT_S,
             f"orders of {tenant_a} in the API's speed layer")

    orders = get_series(api, own, "orders_placed", start, end)
    assert orders["tenant"] == tenant_a and orders["truncated"] is False
    assert len(orders["windows"]) == (end - start) // MINUTE  # each minute once, no gap
    assert by_minute(orders, "count") == dict(counts)
    assert orders["freshness"] is not None
    seam = None if orders["seam"] is None else datetime.fromisoformat(orders["seam"])
    for window in orders["windows"]:
        before_seam = seam is not None and datetime.fromisoformat(window["end"]) <= seam
        assert (window["layer"], window["final"]) == (("batch", True) if before_seam else ("speed", False))
    gross = get_series(api, own, "gross_sales", start, end)
    assert by_minute(gross) == pytest.approx(dict(sales))
    assert sum(w["value"] for w in gross["windows"]) == pytest.approx(sum(sales.values()))

    # An analyst naming the tenant reads the same numbers; tenant B's token reads none of them.
    analyst = bearer(settings, role="analyst")
    assert by_minute(get_series(api, analyst, "orders_placed", start, end, tenant=tenant_a)) == dict(counts)
    other = bearer(settings, tenant_b)
    refused = api.get(SERIES.format("orders_placed"), headers=other,
                      params={"from": rfc3339(start), "to": rfc3339(end), "tenant": tenant_a})
    assert refused.status_code == 403
    wait_for(lambda: sum(w["count"] for w in get_series(api, other, "orders_placed", start - MINUTE,
                                                        end + MINUTE)["windows"]),
             len(orders_b), SPEED_WAIT_S, f"orders of {tenant_b}")
    b_sales = get_series(api, other, "gross_sales", start - MINUTE, end + MINUTE)
    assert sum(w["value"] for w in b_sales["windows"]) == pytest.approx(1000.0 * len(orders_b))
    no_auth = api.get(SERIES.format("orders_placed"), params={"from": rfc3339(start), "to": rfc3339(end)})
    assert no_auth.status_code == 401


def test_active_users_union_the_sketches_of_a_minutes_rows(stack: Context, api: TestClient) -> None:
    settings = stack.settings
    tenant = f"api-u-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    # 40 users, each on three devices: a minute has a row (and a sketch) per device, so adding the rows'
    # estimates would count most users three times; only a union of the sketches gives the distinct count.
    devices = ("ios", "android", "web")
    events = [order(tenant, now - timedelta(seconds=2 + i % 5), 5.0, f"user-{i % 40}", devices[i % 3])
              for i in range(120)]
    post(settings, events)
    users: defaultdict[datetime, set[str]] = defaultdict(set)
    for event in events:
        users[minute_of(datetime.fromisoformat(event["occurred_at"]))].add(event["properties"]["user_id"])
    start, end = min(users), max(users) + MINUTE
    own = bearer(settings, tenant)
    wait_for(lambda: sum(w["count"] for w in get_series(api, own, "orders_placed", start, end)["windows"]),
             len(events), SPEED_WAIT_S, f"orders of {tenant}")
    # Distinct metrics come from the streaming job's slower query (10 s trigger, under nice), and a minute's rows
    # may be updated by a later micro-batch: wait until every minute is there and within HLL's bound (the issue's
    # 2 %; at this size the estimate is all but exact), else fail with what was last seen.
    def within_bound() -> dict[datetime, tuple[float, int]] | bool:
        got = by_minute(get_series(api, own, "active_users", start, end))
        if set(got) == set(users) and all(abs(got[m] - len(seen)) <= max(1.0, 0.02 * len(seen))
                                          for m, seen in users.items()):
            return True
        return {m: (got.get(m, 0.0), len(seen)) for m, seen in users.items()}

    wait_for(within_bound, True, DISTINCT_WAIT_S, f"active_users of {tenant} (got, exact) per minute", 2.0)


def test_the_batch_reader_equals_deltas_rows_and_a_range_across_the_seam_splits_there(
        stack: Context, api: TestClient) -> None:
    settings = stack.settings
    seam = SeamSource(settings).current()
    if seam is None:
        pytest.skip("the batch layer has not published a seam yet (the e2e hourly run does)")
    conn = connect(settings, 120)
    try:
        cur = conn.cursor()
        cur.execute('SELECT tenant_id, max(window_start) FROM delta.lakepulse.metrics_minute '
                    "WHERE metric = 'orders_placed' AND window_start < ? GROUP BY tenant_id "
                    "ORDER BY 2 DESC LIMIT 1", [seam])
        found = cur.fetchall()
        if not found:
            pytest.skip("no orders before the seam in Delta")
        tenant, last = found[0][0], found[0][1].astimezone(UTC)
        start, end = minute_of(last) - timedelta(hours=2) + MINUTE, minute_of(last) + MINUTE
        # Delta's rows of the range, summed by Trino without the reader's partition predicates.
        cur.execute('SELECT window_start, sum("count") FROM delta.lakepulse.metrics_minute '
                    "WHERE tenant_id = ? AND metric = 'orders_placed' AND window_start >= ? AND window_start < ? "
                    "GROUP BY window_start", [tenant, start, end])
        expected = {row[0].astimezone(UTC): int(row[1]) for row in cur.fetchall() if row[1]}
    finally:
        conn.close()

    analyst = bearer(settings, role="analyst")
    body = get_series(api, analyst, "orders_placed", start, end, tenant=tenant)
    assert by_minute(body, "count") == expected
    assert {(w["layer"], w["final"]) for w in body["windows"]} == {("batch", True)}

    across = get_series(api, analyst, "orders_placed", seam - 10 * MINUTE, seam + 10 * MINUTE, tenant=tenant)
    layers = [(w["layer"], w["final"]) for w in across["windows"]]
    assert layers == [("batch", True)] * 10 + [("speed", False)] * 10


HOSTILE = ("'", "'; DROP TABLE metrics_minute; --", "\" OR 1=1 --", "ü€😀\u202e", "x" * 10_000, "%00\x00",
           "../../etc/passwd", "1e309", "-1", "9999-12-31T23:59:59Z")
ENDPOINTS = {
    "/v1/metrics/orders_placed/series": {"from": "2026-12-01T00:00:00Z", "to": "2026-12-01T01:00:00Z",
                                          "granularity": "1h", "timezone": "UTC", "group_by": "country",
                                          "filter": "country:DE", "max_groups": "5"},
    "/v1/metrics/items_sold/top": {"by": "item_id", "n": "5", "last": "1h", "filter": "category:soups"},
    "/v1/live": {"timezone": "UTC", "ratings": "5"},
}


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_hostile_values_in_every_parameter_get_4xx_or_match_nothing_never_5xx(
        stack: Context, api: TestClient, path: str) -> None:
    own = bearer(stack.settings, "hostile-tenant")
    for name in [*ENDPOINTS[path], "tenant", "metric"]:
        for value in HOSTILE:
            params = dict(ENDPOINTS[path])
            target = path
            if name == "metric":
                if "/metrics/" not in path:
                    continue
                target = path.replace(path.split("/")[3], quote(value, safe=""))
            elif name == "filter":
                # A value of a known dimension is data, bound as a parameter: it matches nothing (200).
                params[name] = f"{params[name].split(':')[0]}:{value}"
            else:
                params[name] = value
            answer = api.get(target, headers=own, params=params)
            assert answer.status_code < 500, (path, name, value[:40], answer.text[:300])
            assert not any(word in answer.text for word in ("SELECT", "Trino", "Pinot", "Traceback", "Query")), \
                (path, name, answer.text[:300])
            if name == "filter" and answer.status_code == 200:
                body = answer.json()
                assert all(w["count"] == 0 for w in body.get("windows", [])) and not body.get("top"), body
