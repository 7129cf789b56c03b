"""The metrics API across the seam equals an independent recount (design invariant 4).

The generator's restaurants (late, duplicate, out-of-order and malformed sends) have most of their events in the
hour the e2e hourly run rebuilt — served from Delta through Trino — and a slice in the last minute, served from
Pinot. Every metric of the catalog, at 1m, 1h and 1d (in zones with other offsets than UTC), must equal a
recount in plain Python of what the ingest API accepted, one per event id, each minute counted once: counts
and sums exactly, distinct users within 2 %. Group-by and top-N answers are recounted the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.catalog import get_catalog
from lakepulse.settings import Settings
from tests.e2e.conftest import NEEDS
from tests.e2e.served import HOURLY_RUN_WAIT_S, Served
from tests.stack_events import rfc3339, wait_for

# The shared hourly run (the `served` fixture) is set up inside the first test that asks for it.
pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS),
              pytest.mark.timeout(HOURLY_RUN_WAIT_S + 900)]

SPEED_WAIT_S = 300  # distinct and prep-time rows come from the streaming job's slower queries
MAX_PREP = timedelta(hours=6)  # aggregations.state.MAX_PREP: longer pairs are not one order's prep
MINUTE = timedelta(minutes=1)
VIEWS = (("1m", "UTC"), ("1h", "Asia/Kolkata"), ("1d", "America/New_York"))


@dataclass
class Cell:
    """The recount of one window: how many rows, their sum, the users among them."""

    count: int = 0
    sum: float = 0.0
    users: set[str] = field(default_factory=set)


Contribution = tuple[str, datetime, dict[str, str], float | None, str | None]  # tenant, at, dims, value, user


def contributions(events: list[dict[str, Any]]) -> dict[str, list[Contribution]]:
    """metric → what each accepted event (one per event id) adds to it, as the catalog defines the metric."""
    unique = {e["event_id"]: e for e in events}
    out: dict[str, list[Contribution]] = defaultdict(list)
    confirmed: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    ready: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for e in unique.values():
        t, at, kind, p = e["tenant_id"], datetime.fromisoformat(e["occurred_at"]), e["event_type"], e["properties"]
        dims = {k: str(p.get(k) or "") for k in ("country", "device")}
        out["events"].append((t, at, {"event_type": kind, **dims}, None, None))
        if p.get("user_id"):
            out["active_users"].append((t, at, dims, None, str(p["user_id"])))
        if kind == "order_placed":
            out["orders_placed"].append((t, at, {**dims, "channel": p["channel"]}, None, None))
            out["gross_sales"].append((t, at, {"country": dims["country"], "channel": p["channel"]},
                                       float(p["amount"]), None))
            for item in p["items"]:
                out["items_sold"].append((t, at, {"item_id": item["item_id"], "category": item["category"]},
                                          float(item["quantity"]), None))
        elif kind == "order_status_changed":
            status = p["status"]
            if status == "delivered":
                out["orders_completed"].append((t, at, {}, None, None))
            elif status == "cancelled":
                out["orders_cancelled"].append((t, at, {}, None, None))
            elif status == "confirmed":
                confirmed[(t, p["order_id"])].append(at)
            elif status == "ready_for_pickup":
                ready[(t, p["order_id"])].append(at)
        elif kind == "rating_submitted":
            out["food_rating"].append((t, at, {}, float(p["food_rating"]), None))
            out["delivery_rating"].append((t, at, {}, float(p["delivery_rating"]), None))
        elif kind == "app_error":
            out["app_errors"].append((t, at, {"service": p["service"], "code": p["code"]}, None, None))
    # Prep time: each (confirmed, ready) pair of one order, ready no earlier and at most MAX_PREP later, at ready.
    for key, readies in ready.items():
        for r in readies:
            for c in confirmed.get(key, []):
                if c <= r <= c + MAX_PREP:
                    out["prep_time_seconds"].append((key[0], r, {}, (r - c).total_seconds(), None))
    return out


def window_of(at: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    """The UTC start of the window holding `at`: minutes and hours/days of the zone's wall clock."""
    local = at.astimezone(zone)
    if granularity == "1m":
        local = local.replace(second=0, microsecond=0)
    elif granularity == "1h":
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


def recount(items: list[Contribution], tenant: str, granularity: str, zone: ZoneInfo,
            group_by: tuple[str, ...] = ()) -> dict[tuple[datetime, tuple[str, ...]], Cell]:
    cells: dict[tuple[datetime, tuple[str, ...]], Cell] = defaultdict(Cell)
    for t, at, dims, value, user in items:
        if t != tenant:
            continue
        cell = cells[(window_of(at, granularity, zone), tuple(dims.get(d, "") for d in group_by))]
        cell.count += 1
        cell.sum += value or 0.0
        if user is not None:
            cell.users.add(user)
    return dict(cells)


def expected_value(kind: str, cell: Cell) -> float:
    if kind == "count":
        return cell.count
    if kind == "sum":
        return cell.sum
    if kind == "distinct":
        return len(cell.users)
    return cell.sum / cell.count  # average, distribution: the mean


def differences(body: dict[str, Any], expected: dict[tuple[datetime, tuple[str, ...]], Cell],
                group_by: tuple[str, ...] = ()) -> list[str]:
    """Where a series differs from the recount: counts exactly, sums and means to 1e-6, distinct within 2 %."""
    kind = body["kind"]
    seen: dict[tuple[datetime, tuple[str, ...]], dict[str, Any]] = {}
    for w in body["windows"]:
        key = (datetime.fromisoformat(w["start"]).astimezone(UTC), tuple(w["group"].get(d, "") for d in group_by))
        assert key not in seen, f"window {key} twice"
        seen[key] = w
    problems = []
    for key in sorted(set(expected) | {k for k, w in seen.items() if w["count"]}):
        cell, w = expected.get(key, Cell()), seen.get(key)
        if w is None:
            problems.append(f"{body['metric']} {key}: no window, expected count {cell.count}")
            continue
        if w["count"] != cell.count:
            problems.append(f"{body['metric']} {key}: count {w['count']}, expected {cell.count}")
            continue
        if not cell.count:
            continue
        want, got = expected_value(kind, cell), w["value"]
        tolerance = max(1.0, 0.02 * want) if kind == "distinct" else 1e-6 * max(1.0, abs(want))
        if got is None or abs(got - want) > tolerance:
            problems.append(f"{body['metric']} {key}: value {got}, expected {want}")
        if kind in ("sum", "average", "distribution") and abs((w["sum"] or 0.0) - cell.sum) > 1e-6 * max(1, cell.sum):
            problems.append(f"{body['metric']} {key}: sum {w['sum']}, expected {cell.sum}")
    return problems


def layers_follow_the_seam(body: dict[str, Any]) -> list[str]:
    seam = None if body["seam"] is None else datetime.fromisoformat(body["seam"])
    wrong = []
    for w in body["windows"]:
        start, end = datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"])
        want = ("speed" if seam is None or start >= seam else "batch" if end <= seam else "mixed",
                seam is not None and end <= seam)
        if (w["layer"], w["final"]) != want:
            wrong.append(f"{body['metric']} {w['start']}: {(w['layer'], w['final'])}, expected {want}")
    return wrong


@dataclass(frozen=True)
class Setup:
    served: Served
    api: TestClient
    settings: Settings
    items: dict[str, list[Contribution]]
    tenant: str
    start: datetime
    end: datetime

    def headers(self, tenant: str | None = None, role: str | None = None) -> dict[str, str]:
        token = mint_token(self.settings, tenant=tenant, role=role, ttl=timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}

    def series(self, metric: str, granularity: str, zone: str, **params: Any) -> dict[str, Any]:
        answer = self.api.get(f"/v1/metrics/{metric}/series", headers=self.headers(self.tenant), params={
            "from": rfc3339(self.start), "to": rfc3339(self.end), "granularity": granularity, "timezone": zone,
            **params})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture(scope="module")
def setup(served: Served, settings: Settings) -> Iterator[Setup]:
    tenant = f"{served.scenario_prefix}rest-0001"  # the generator's most popular restaurant
    # The metrics app in-process with its real engine readers; the rate limit is the stack's.
    with TestClient(create_app(settings)) as api:
        yield Setup(served=served, api=api, settings=settings, items=contributions(served.scenario),
                    tenant=tenant, start=served.hour_end - timedelta(hours=1),
                    end=datetime.now(UTC).replace(second=0, microsecond=0) + 2 * MINUTE)


def test_the_scenario_reaches_both_layers(setup: Setup) -> None:
    served = setup.served
    assert served.run_state == "success"
    assert len(served.scenario) < served.scenario_sent  # malformed sends were refused
    assert len({e["event_id"] for e in served.scenario}) < len(served.scenario)  # duplicates were accepted
    seam = setup.series("events", "1h", "UTC")["seam"]
    assert seam is not None
    at = [datetime.fromisoformat(e["occurred_at"]) for e in served.scenario if e["tenant_id"] == setup.tenant]
    assert min(at) < datetime.fromisoformat(seam) <= max(at), "the tenant's events must lie on both sides"


def test_every_metric_at_every_granularity_equals_the_recount_each_minute_once(setup: Setup) -> None:
    catalog = get_catalog()

    def all_differences() -> list[str]:
        problems: list[str] = []
        for granularity, zone in VIEWS:
            for metric in catalog.metrics:
                body = setup.series(metric.name, granularity, zone)
                expected = recount(setup.items.get(metric.name, []), setup.tenant, granularity, ZoneInfo(zone))
                problems += differences(body, expected) + layers_follow_the_seam(body)
        return problems

    # The speed layer's distinct and prep rows trail its counts by a trigger or two: wait (bounded) for them.
    wait_for(lambda: all_differences()[:10], [], SPEED_WAIT_S, "API vs recount differences", 5)
    assert {m.kind for m in catalog.metrics} == {"count", "sum", "distinct", "average", "distribution"}
    assert any(setup.items[m] for m in ("prep_time_seconds", "food_rating", "active_users"))


def test_group_by_equals_the_recount_per_group(setup: Setup) -> None:
    group_by = ("channel", "country")
    body = setup.series("orders_placed", "1h", "UTC", group_by=list(group_by), max_groups=100)
    expected = recount(setup.items["orders_placed"], setup.tenant, "1h", ZoneInfo("UTC"), group_by)
    assert differences(body, expected, group_by) == []
    assert not body["truncated"]


def test_top_items_equal_the_recount_ranking(setup: Setup) -> None:
    totals: dict[str, Cell] = defaultdict(Cell)
    for t, at, dims, value, _ in setup.items["items_sold"]:
        if t == setup.tenant and setup.start <= at < setup.end:
            totals[dims["item_id"]].count += 1
            totals[dims["item_id"]].sum += value or 0.0
    ranking = sorted(totals, key=lambda k: (-totals[k].sum, -totals[k].count, k))[:5]
    answer = setup.api.get("/v1/metrics/items_sold/top", headers=setup.headers(setup.tenant), params={
        "by": "item_id", "n": 5, "from": rfc3339(setup.start), "to": rfc3339(setup.end)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(e["key"], e["value"], e["count"]) for e in body["top"]] == [
        (k, pytest.approx(totals[k].sum), totals[k].count) for k in ranking]
    assert body["layer"] == "mixed" and body["groups"] == len(totals)


def test_no_token_reads_another_restaurant(setup: Setup) -> None:
    other = f"{setup.served.scenario_prefix}rest-0002"
    params = {"from": rfc3339(setup.start), "to": rfc3339(setup.end), "granularity": "1h", "tenant": other}
    own = setup.headers(setup.tenant)
    for path, extra in (("/v1/metrics/events/series", {}), ("/v1/metrics/items_sold/top", {"by": "item_id"}),
                        ("/v1/live", {})):
        answer = setup.api.get(path, headers=own, params={**params, **extra})
        assert answer.status_code == 403, (path, answer.text)
        assert setup.api.get(path, params={**params, **extra}).status_code == 401
    # An analyst naming the other restaurant reads its numbers, which are not the first one's.
    analyst = setup.api.get("/v1/metrics/events/series", headers=setup.headers(role="analyst"), params=params)
    expected = recount(setup.items["events"], other, "1h", ZoneInfo("UTC"))
    assert differences(analyst.json(), expected) == []
