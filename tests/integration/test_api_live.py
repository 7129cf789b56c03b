"""`GET /v1/live` on the real engines: a fresh restaurant's orders, couriers and ratings go through the running
ingest API (later events first, duplicates, ties in event time) and the streaming job into Pinot's live tables;
the live state then equals an independent recount of the events in Python, only for its own tenant.

The app runs in-process (TestClient) with its real readers: Pinot's broker through pinotdb, Trino over Delta
for minutes before the seam, the seam on MinIO.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings
from tests.stack_events import order, post, rfc3339, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.needs("trino", "pinot", "minio", "ingest", "streaming")]

# A bound, not a timing assertion: live rows come from the streaming job's slower queries (10 s trigger, under
# nice), prep times through two of them.
LIVE_WAIT_S = 300
LIVE = "/v1/live"
TIMEZONE = "Europe/Berlin"
# The contract's lifecycles, in order: on a tie in event time the later step is the current one.
ORDER_STEPS = ("placed", "confirmed", "in_kitchen", "ready_for_pickup", "picked_up", "delivered", "cancelled")
COURIER_STEPS = ("assigned", "arrived_at_restaurant", "picked_up", "delivered")
MAX_PREP = timedelta(hours=6)


def bearer(settings: Settings, tenant: str | None = None, role: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, role=role, ttl=timedelta(hours=1))}"}


@pytest.fixture
def api(stack: Context) -> Iterator[TestClient]:
    """The metrics app in-process, with the real engine readers of the stack's settings."""
    with TestClient(create_app(stack.settings)) as client:
        yield client


class Scenario:
    """Events of one tenant, built relative to a base time (whole seconds, so Pinot's milliseconds are exact)."""

    def __init__(self, tenant: str, base: datetime) -> None:
        self.tenant, self.base = tenant, base
        self.orders: dict[str, str] = {}  # name → order id

    def at(self, seconds: int) -> str:
        return rfc3339(self.base + timedelta(seconds=seconds))

    def _event(self, event_type: str, seconds: int, properties: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": f"live-{uuid.uuid4().hex}", "tenant_id": self.tenant, "event_type": event_type,
                "occurred_at": self.at(seconds), "source": "live-test", "properties": properties}

    def placed(self, name: str, seconds: int, amount: float) -> dict[str, Any]:
        event = order(self.tenant, self.base + timedelta(seconds=seconds), amount, source="live-test")
        self.orders[name] = event["properties"]["order_id"]
        return event

    def status(self, name: str, status: str, seconds: int) -> dict[str, Any]:
        order_id = self.orders.setdefault(name, f"{name}-{uuid.uuid4().hex[:8]}")
        return self._event("order_status_changed", seconds, {"order_id": order_id, "status": status})

    def courier(self, courier: str, name: str, status: str, seconds: int) -> dict[str, Any]:
        return self._event("courier_status_changed", seconds,
                           {"courier_id": courier, "order_id": self.orders[name], "status": status})

    def rating(self, name: str, food: int, delivery: int, seconds: int) -> dict[str, Any]:
        order_id = self.orders.setdefault(name, f"{name}-{uuid.uuid4().hex[:8]}")
        return self._event("rating_submitted", seconds, {"order_id": order_id, "user_id": "u-live",
                                                         "food_rating": food, "delivery_rating": delivery})


# --- the independent recount --------------------------------------------------------------------------------


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event id once (a resend is the same event)."""
    return list({e["event_id"]: e for e in events}.values())


def recount(events: list[dict[str, Any]], day_start: datetime, hour: tuple[datetime, datetime]) -> dict[str, Any]:
    """What the live state must say about `events`, counted from the events themselves."""
    events = unique(events)
    statuses: dict[str, tuple[datetime, int, str]] = {}
    couriers: dict[str, tuple[datetime, int, str, str]] = {}
    ratings: dict[str, tuple[datetime, int, int]] = {}
    confirmed: dict[str, set[datetime]] = {}
    ready: dict[str, set[datetime]] = {}
    sales, completed = 0.0, 0
    for e in events:
        p, at = e["properties"], when(e)
        step = "placed" if e["event_type"] == "order_placed" else p.get("status")
        if e["event_type"] in ("order_placed", "order_status_changed"):
            latest_status = (at, ORDER_STEPS.index(step), step)
            statuses[p["order_id"]] = max(statuses.get(p["order_id"], latest_status), latest_status)
        if e["event_type"] == "order_placed" and at >= day_start:
            sales += p["amount"]
        if e["event_type"] == "order_status_changed" and step == "delivered" and at >= day_start:
            completed += 1
        if e["event_type"] == "order_status_changed" and step in ("confirmed", "ready_for_pickup"):
            (confirmed if step == "confirmed" else ready).setdefault(p["order_id"], set()).add(at)
        if e["event_type"] == "courier_status_changed":
            latest = (at, COURIER_STEPS.index(p["status"]), p["status"], p["order_id"])
            couriers[p["courier_id"]] = max(couriers.get(p["courier_id"], latest), latest)
        if e["event_type"] == "rating_submitted":
            latest_rating = (at, p["food_rating"], p["delivery_rating"])
            if p["order_id"] not in ratings or at > ratings[p["order_id"]][0]:
                ratings[p["order_id"]] = latest_rating
    funnel = dict.fromkeys(ORDER_STEPS, 0)
    for _, _, status in statuses.values():
        funnel[status] += 1
    waiting = sorted((at, courier, order_id) for courier, (at, _, status, order_id) in couriers.items()
                     if status == "arrived_at_restaurant")
    # Prep time: every (confirmed, ready) pair of an order no more than MAX_PREP apart, at the ready minute.
    preps = [(r - c).total_seconds() for order_id, readies in ready.items() for r in readies
             for c in confirmed.get(order_id, ()) if c <= r <= c + MAX_PREP
             and hour[0] <= r.replace(second=0, microsecond=0) < hour[1]]
    return {
        "funnel": funnel,
        "waiting": [(courier, order_id, at) for at, courier, order_id in waiting],
        "ratings": [(o, food, delivery, at) for o, (at, food, delivery)
                    in sorted(ratings.items(), key=lambda item: (-item[1][0].timestamp(), item[0]))],
        "sales_today": sales,
        "completed_today": completed,
        "prep": (len(preps), sum(preps) / len(preps) if preps else None, min(preps, default=None),
                 max(preps, default=None)),
    }


def observed(body: dict[str, Any]) -> dict[str, Any]:
    """The same facts as the live state states them."""
    prep = body["prep_time_last_hour"]
    return {
        "funnel": body["funnel"]["orders"],
        "waiting": [(c["courier_id"], c["order_id"], datetime.fromisoformat(c["since"]))
                    for c in body["couriers_waiting"]["couriers"]],
        "ratings": [(r["order_id"], r["food_rating"], r["delivery_rating"], datetime.fromisoformat(r["rated_at"]))
                    for r in body["ratings"]["latest"]],
        "sales_today": body["sales_today"]["value"],
        "completed_today": body["completed_today"]["value"],
        "prep": (prep["count"], prep["value"], prep["min"], prep["max"]),
    }


def differences(body: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the live state and the recount disagree: {fact: (live, recount)}; {} when they agree."""
    day_start = datetime.fromisoformat(body["sales_today"]["start"])
    hour = (datetime.fromisoformat(body["prep_time_last_hour"]["start"]),
            datetime.fromisoformat(body["prep_time_last_hour"]["end"]))
    got, want = observed(body), recount(events, day_start, hour)
    return {key: (got[key], want[key]) for key in want if got[key] != want[key]}


def get_live(api: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = api.get(LIVE, headers=headers, params={"timezone": TIMEZONE, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_live_state_equals_the_recount_of_the_events_and_only_its_tenant_sees_it(
        stack: Context, api: TestClient) -> None:
    settings = stack.settings
    run = uuid.uuid4().hex[:10]
    tenant, other = f"live-a-{run}", f"live-b-{run}"
    # Within the streaming job's watermark (2 minutes): nothing here is late.
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    s = Scenario(tenant, base)
    placed = [s.placed(name, t, amount) for name, t, amount in [
        ("o1", 0, 12.25), ("o2", 2, 8.5), ("o3", 3, 30.0), ("o4", 4, 5.75), ("o5", 5, 14.0), ("o6", 6, 22.5),
        ("o7", 1, 9.25), ("o8", 8, 11.0), ("o9", 9, 16.5)]]
    # The later half of each story first: the state must come out by event time, not by arrival.
    later = [
        s.status("o1", "ready_for_pickup", 40), s.status("o1", "picked_up", 50), s.status("o1", "delivered", 55),
        s.status("o3", "cancelled", 20),
        s.status("o5", "ready_for_pickup", 30),
        s.status("o7", "ready_for_pickup", 20), s.status("o7", "picked_up", 35), s.status("o7", "delivered", 45),
        s.status("o9", "ready_for_pickup", 31), s.status("o9", "picked_up", 44),
        s.courier("c1", "o5", "arrived_at_restaurant", 25),
        s.courier("c2", "o1", "picked_up", 50),
        s.courier("c3", "o7", "arrived_at_restaurant", 15),
        s.courier("c5", "o6", "arrived_at_restaurant", 30),
        s.rating("o1", 5, 4, 58), s.rating("o7", 4, 4, 56), s.rating("o4", 2, 1, 57),
        s.rating("o10", 3, 3, 40),  # an order known only by its rating: in no funnel status
    ]
    earlier = [
        *placed,
        s.status("o1", "confirmed", 5), s.status("o1", "in_kitchen", 10),
        s.status("o2", "confirmed", 6), s.status("o2", "in_kitchen", 12),
        s.status("o3", "confirmed", 8),  # before its cancellation
        s.status("o5", "confirmed", 7),
        s.status("o6", "confirmed", 9), s.status("o6", "in_kitchen", 9),  # a tie: the later step wins
        s.status("o7", "confirmed", 3),
        s.status("o8", "confirmed", 10),
        s.status("o9", "confirmed", 11), s.status("o9", "in_kitchen", 14),
        s.courier("c1", "o5", "assigned", 10),
        s.courier("c2", "o1", "assigned", 15), s.courier("c2", "o1", "arrived_at_restaurant", 35),
        s.courier("c3", "o7", "assigned", 5),
        s.courier("c4", "o2", "arrived_at_restaurant", 20), s.courier("c4", "o2", "picked_up", 20),  # a tie
        s.courier("c5", "o6", "assigned", 12),
        s.rating("o7", 3, 5, 50),  # superseded by the later rating posted first
    ]
    resent = [later[2], later[10], earlier[len(placed) + 2], placed[0]]  # the same event ids again
    theirs_placed = order(other, base + timedelta(seconds=20), 1000.0, source="live-test")
    others = [theirs_placed, {**theirs_placed, "event_id": f"live-{uuid.uuid4().hex}", "occurred_at": s.at(21),
                              "event_type": "order_status_changed",
                              "properties": {"order_id": theirs_placed["properties"]["order_id"],
                                             "status": "confirmed"}}]

    posted_at = datetime.now(UTC)
    first = post(settings, [*later, *others])
    assert first["accepted"] == len(later) + len(others), first
    time.sleep(12)  # past the orders and couriers queries' 10 s trigger: the rest lands in later micro-batches
    second = post(settings, [*earlier, *resent])
    assert second["accepted"] == len(earlier) + len(resent), second
    events = [*later, *earlier, *resent]

    own = bearer(settings, tenant)
    wait_for(lambda: differences(get_live(api, own), events), {}, LIVE_WAIT_S,
             f"live state of {tenant} against the recount (live, recount)", interval=2.0)

    body = get_live(api, own)
    assert differences(body, events) == {}
    assert body["tenant"] == tenant and body["timezone"] == TIMEZONE
    assert body["funnel"]["orders"] == {"placed": 1, "confirmed": 1, "in_kitchen": 2, "ready_for_pickup": 1,
                                        "picked_up": 1, "delivered": 2, "cancelled": 1}
    assert [c["courier_id"] for c in body["couriers_waiting"]["couriers"]] == ["c3", "c1", "c5"]
    assert body["couriers_waiting"]["count"] == 3 and body["couriers_waiting"]["truncated"] is False
    assert [r["order_id"] for r in body["ratings"]["latest"]] == [s.orders[o] for o in ("o1", "o4", "o7", "o10")]
    assert body["sales_today"]["value"] == 12.25 + 8.5 + 30.0 + 5.75 + 14.0 + 22.5 + 9.25 + 11.0 + 16.5
    assert body["completed_today"]["value"] == 2
    assert body["prep_time_last_hour"]["count"] == 4 and body["prep_time_last_hour"]["value"] == 23.75
    # Every part says when the speed layer last wrote what it was computed from: after the first post.
    for part in ("funnel", "couriers_waiting", "ratings", "sales_today", "completed_today", "prep_time_last_hour"):
        as_of = body[part]["as_of"]
        assert as_of is not None and posted_at - timedelta(seconds=1) <= datetime.fromisoformat(as_of), part
        assert datetime.fromisoformat(as_of) <= datetime.fromisoformat(body["now"]), part
    assert datetime.fromisoformat(body["sales_today"]["start"]).utcoffset() == \
        datetime.fromisoformat(body["now"]).utcoffset()  # local midnight, in the restaurant's zone

    # The latest N ratings.
    assert [r["order_id"] for r in get_live(api, own, ratings=2)["ratings"]["latest"]] == \
        [s.orders["o1"], s.orders["o4"]]

    # An analyst naming the tenant reads the same numbers.
    analyst = get_live(api, bearer(settings, role="analyst"), tenant=tenant)
    assert analyst["tenant"] == tenant and observed(analyst) == observed(body)

    # The other restaurant sees its own state only, and neither token reads the other tenant.
    theirs = bearer(settings, other)
    wait_for(lambda: get_live(api, theirs)["funnel"]["orders"]["confirmed"], 1, LIVE_WAIT_S, f"live state of {other}")
    other_body = get_live(api, theirs)
    assert other_body["funnel"]["total"] == 1 and other_body["sales_today"]["value"] == 1000.0
    assert other_body["couriers_waiting"]["count"] == 0 and other_body["ratings"]["latest"] == []
    for headers, named in ((theirs, tenant), (own, other)):
        refused = api.get(LIVE, headers=headers, params={"tenant": named})
        assert (refused.status_code, refused.json()) == (403, {"detail": "this token may read only its own tenant"})
    assert api.get(LIVE, params={"tenant": tenant}).status_code == 401


@pytest.mark.parametrize("params", [
    {"tenant": "*"}, {"tenant": "x' OR '1'='1"}, {"timezone": "'; DROP TABLE orders_live; --"},
    {"timezone": "../../etc/passwd"}, {"ratings": "1; SELECT 1"}, {"ratings": 10**9},
])
def test_hostile_input_is_4xx_without_engine_text(stack: Context, api: TestClient, params: dict[str, Any]) -> None:
    response = api.get(LIVE, headers=bearer(stack.settings, role="analyst"), params={"tenant": "live-x", **params})
    assert 400 <= response.status_code < 500, response.text
    assert not any(word in response.text for word in ("SELECT", "orders_live", "Pinot", "pinotdb", "Exception"))
