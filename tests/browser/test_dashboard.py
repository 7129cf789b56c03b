"""The restaurant page in Debian's Chromium against the real stack.

Two fresh restaurants get orders, statuses, a courier and ratings through the running ingest API; once the speed
layer shows them (the API equals a recount of the events), restaurant A signs in through the page's form and:
- every widget shows the numbers the API gives A's session at the same moment (alerts included);
- the minute into which A's 20 orders fell is highlighted as an anomaly on both charts (a spike over a flat
  hour), and no other minute is;
- nothing of B reaches A's page, A's session asking for B's data gets 403 from the API and from B's page URL;
- the page works at phone width and by keyboard.
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from lakepulse.auth.tokens import mint_token
from lakepulse.settings import Settings
from tests.browser.conftest import NEEDS
from tests.browser.pages import STATUSES, TIMEZONE, api, courier, rating, raw, sign_in, status, watch_errors
from tests.stack_events import order, post, rfc3339, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS)]

# A bound, not a timing assertion: the live tables come from the streaming job's slower queries (10 s trigger).
LIVE_WAIT_S = 300
SPIKE_ORDERS = 20
B_AMOUNT = 777.77


@dataclass(frozen=True)
class Restaurants:
    """What went in for the two restaurants."""

    a: str
    b: str
    spike: datetime  # the minute (UTC) into which all of A's orders fell
    a_amounts: list[float]
    b_orders: list[str]


def get_live(url: str, token: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/v1/live", params={"timezone": TIMEZONE},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def live_facts(body: dict[str, Any]) -> dict[str, Any]:
    return {"funnel": body["funnel"]["orders"], "sales": body["sales_today"]["value"],
            "completed": body["completed_today"]["value"], "couriers": body["couriers_waiting"]["count"],
            "ratings": len(body["ratings"]["latest"]), "prep": body["prep_time_last_hour"]["count"]}


def today(body: dict[str, Any], at: datetime) -> bool:
    return at >= datetime.fromisoformat(body["sales_today"]["start"])


@pytest.fixture(scope="module")
def restaurants(dashboard: str, settings: Settings) -> Restaurants:
    """Post both restaurants' events, then wait until the API's live state equals what was sent."""
    run = uuid.uuid4().hex[:10]
    a, b = f"web-a-{run}", f"web-b-{run}"
    # The previous minute is complete; its second half is at most 90 s old, inside the streaming watermark (2 min).
    spike = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)

    def at(second: int) -> datetime:
        return spike + timedelta(seconds=second)

    placed = [order(a, at(30 + i), 10.0 + i * 0.5, source="web-test") for i in range(SPIKE_ORDERS)]
    ids = [e["properties"]["order_id"] for e in placed]
    a_events = [
        *placed,
        *(status(a, ids[i], "confirmed", at(52)) for i in range(5)),
        *(status(a, ids[i], "in_kitchen", at(54)) for i in range(5)),
        *(status(a, ids[i], "confirmed", at(51)) for i in (5, 6)),
        *(status(a, ids[i], "ready_for_pickup", at(57)) for i in (5, 6)),
        status(a, ids[7], "confirmed", at(50)), status(a, ids[7], "delivered", at(58)),
        status(a, ids[8], "cancelled", at(55)),
        courier(a, "c-a1", ids[5], at(56)),
        rating(a, ids[7], 5, 4, at(59)), rating(a, ids[8], 2, 1, at(59)),
    ]
    b_placed = [order(b, at(40 + i), B_AMOUNT, source="web-test") for i in range(3)]
    b_events = [*b_placed, courier(b, "c-b1", b_placed[0]["properties"]["order_id"], at(45))]
    answer = post(settings, [*a_events, *b_events])
    assert answer["accepted"] == len(a_events) + len(b_events), answer

    amounts = [e["properties"]["amount"] for e in placed]

    def expected_a(body: dict[str, Any]) -> dict[str, Any]:
        funnel = dict.fromkeys(STATUSES, 0) | {"placed": 11, "in_kitchen": 5, "ready_for_pickup": 2,
                                               "delivered": 1, "cancelled": 1}
        return {"funnel": funnel, "sales": sum(amounts) if today(body, at(30)) else 0.0,
                "completed": 1 if today(body, at(58)) else 0, "couriers": 1, "ratings": 2, "prep": 2}

    def expected_b(body: dict[str, Any]) -> dict[str, Any]:
        return {"funnel": dict.fromkeys(STATUSES, 0) | {"placed": 3},
                "sales": round(3 * B_AMOUNT, 2) if today(body, at(40)) else 0.0,
                "completed": 0, "couriers": 1, "ratings": 0, "prep": 0}

    for tenant, expected in ((a, expected_a), (b, expected_b)):
        token = mint_token(settings, tenant=tenant, ttl=timedelta(hours=1))

        def difference(token: str = token, expected: Any = expected) -> dict[str, Any]:
            body = get_live(dashboard, token)
            got, want = live_facts(body), expected(body)
            if isinstance(got["sales"], float):
                got["sales"] = round(got["sales"], 2)
            return {key: (got[key], want[key]) for key in want if got[key] != want[key]}

        wait_for(difference, {}, LIVE_WAIT_S, f"live state of {tenant} (API, sent)", interval=2.0)
    return Restaurants(a=a, b=b, spike=spike, a_amounts=amounts,
                       b_orders=[e["properties"]["order_id"] for e in b_placed])


def test_every_widget_shows_the_apis_numbers_and_the_spike_is_an_anomaly(
        page: Page, dashboard: str, restaurants: Restaurants, artifacts: Path) -> None:
    errors = watch_errors(page)
    sign_in(page, dashboard, restaurants.a)

    status, live = api(page, dashboard, "/v1/live", timezone=TIMEZONE, ratings=10)
    assert status == 200 and live["tenant"] == restaurants.a
    sales, completed = live["sales_today"]["value"], live["completed_today"]["value"]
    assert sales == pytest.approx(sum(restaurants.a_amounts))
    assert float(raw(page, "#w-sales [data-field=value]")) == pytest.approx(sales)
    assert page.locator("#w-sales [data-field=value]").inner_text() == f"€{sales:,.2f}"
    assert int(raw(page, "#w-completed [data-field=value]")) == completed == 1
    assert page.locator("#w-completed [data-field=value]").inner_text() == f"{completed:,}"
    for step in STATUSES:
        shown = raw(page, f"#w-funnel li[data-status={step}] .count")
        assert int(shown) == live["funnel"]["orders"][step], step
    assert int(raw(page, "#w-couriers-count [data-field=value]")) == live["couriers_waiting"]["count"] == 1
    assert page.locator("#w-couriers li[data-courier]").evaluate_all("els => els.map(e => e.dataset.courier)") == \
        [c["courier_id"] for c in live["couriers_waiting"]["couriers"]] == ["c-a1"]
    prep = live["prep_time_last_hour"]
    assert float(raw(page, "#w-prep [data-field=value]")) == pytest.approx(prep["value"]) == 6.0
    assert page.locator("#w-ratings li[data-order]").evaluate_all("els => els.map(e => e.dataset.order)") == \
        [r["order_id"] for r in live["ratings"]["latest"]]

    status, top = api(page, dashboard, "/v1/metrics/items_sold/top", by="item_id", n=5, last="1h")
    assert status == 200
    shown_top = page.locator("#w-top li[data-key]").evaluate_all(
        "els => els.map(e => [e.dataset.key, Number(e.querySelector('[data-raw]').dataset.raw)])")
    assert shown_top == [[t["key"], t["value"]] for t in top["top"]] == [["i-1", SPIKE_ORDERS]]

    # The charts: a day of minutes each, and the spike minute ringed on both (nothing else).
    for chart in ("orders", "sales"):
        assert page.locator(f"#w-chart [data-field={chart}]").get_attribute("data-windows") == "1440"
        starts = page.locator(f"#w-chart .anomalies li[data-series={chart}]").evaluate_all(
            "els => els.map(e => e.dataset.start)")
        assert [datetime.fromisoformat(s) for s in starts] == [restaurants.spike], chart
    assert page.locator("#w-chart canvas").count() == 2
    # The alerts: the history the API gives (none for a new restaurant).
    status, history = api(page, dashboard, "/v1/alerts/history", limit=20)
    assert status == 200
    assert page.locator("#w-alerts li[data-alert]").evaluate_all("els => els.map(e => e.dataset.alert)") == \
        [e["idempotency_key"] for e in history["events"]] == []
    # Every widget says as of when, and marks the speed layer's numbers provisional.
    for widget in ("#w-sales", "#w-completed", "#w-funnel", "#w-chart", "#w-top", "#w-ratings", "#w-alerts"):
        assert page.locator(f"{widget} [data-field=asof]").inner_text().startswith("as of"), widget
    assert page.locator("#w-funnel .badge").inner_text() == "provisional"
    assert errors == []
    page.screenshot(path=str(artifacts / "restaurant-a.png"), full_page=True)


def test_a_never_sees_b_and_bs_data_is_403_to_a(page: Page, dashboard: str, restaurants: Restaurants,
                                               artifacts: Path) -> None:
    sign_in(page, dashboard, restaurants.a)
    text = page.locator("main").inner_text()
    assert restaurants.a in text
    for secret in (restaurants.b, f"{B_AMOUNT:,.2f}", "c-b1", *restaurants.b_orders):
        assert secret not in text, secret
    window = {"from": rfc3339(restaurants.spike), "to": rfc3339(restaurants.spike + timedelta(minutes=1)),
              "granularity": "1m"}
    for path, params in (("/v1/live", {}), ("/v1/metrics/orders_placed/series", window),
                         ("/v1/metrics/items_sold/top", {"by": "item_id"})):
        status, body = api(page, dashboard, path, tenant=restaurants.b, **params)
        assert (status, body) == (403, {"detail": "this token may read only its own tenant"}), path
    response = page.goto(f"{dashboard}/app/restaurant?tenant={restaurants.b}")
    assert response is not None and response.status == 403
    assert "Not your restaurant" in page.locator("main").inner_text()
    page.screenshot(path=str(artifacts / "restaurant-b-refused-to-a.png"))

    # Signed out, the pages send the browser to sign-in again.
    page.goto(f"{dashboard}/app/restaurant")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{dashboard}/")
    page.goto(f"{dashboard}/app/restaurant")
    assert page.url == f"{dashboard}/" and page.locator("#signin").count() == 1


def test_b_sees_its_own_numbers_only(page: Page, dashboard: str, restaurants: Restaurants) -> None:
    sign_in(page, dashboard, restaurants.b)
    assert float(raw(page, "#w-sales [data-field=value]")) == pytest.approx(3 * B_AMOUNT)
    assert int(raw(page, "#w-funnel li[data-status=placed] .count")) == 3
    assert restaurants.a not in page.locator("main").inner_text()


def test_phone_width_keyboard_and_locale(browser: Browser, dashboard: str, restaurants: Restaurants,
                                        artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="de-DE", timezone_id=TIMEZONE)
    try:
        page = context.new_page()
        errors = watch_errors(page)
        sign_in(page, dashboard, restaurants.a)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        sales = float(raw(page, "#w-sales [data-field=value]"))
        german = f"{sales:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".") + " €"
        assert page.locator("#w-sales [data-field=value]").inner_text().replace("\u00a0", " ") == german
        page.screenshot(path=str(artifacts / "restaurant-a-phone.png"))

        # Keyboard: the first Tab reaches the skip link; the range switch is a radio group driven by arrows.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.focus("input[name=range][value='24h']")
        page.keyboard.press("ArrowRight")
        # (expect, not wait_for_function: the pages' CSP forbids the eval that a string predicate needs)
        expect(page.locator("#w-chart [data-field=orders]")).to_have_attribute("data-windows", "168")
        page.wait_for_selector("#restaurant[data-loaded='true']")
        assert page.locator("input[name=range][value='7d']").is_checked()
        assert "range=7d" in page.url
        assert errors == []
        page.screenshot(path=str(artifacts / "restaurant-a-phone-7d.png"), full_page=True)
    finally:
        context.close()
