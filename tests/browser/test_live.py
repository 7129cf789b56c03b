"""The restaurant page follows the live stream (GET /v1/stream) in Debian's Chromium against the real stack, with no
reload and no polling:

- an order posted through the running ingest API moves the funnel and the sales-today tile, then its delivery and
  rating move the funnel again, completed orders today and the ratings feed; the delays (ingest POST → the page
  showing it, and → a second viewer of the stream receiving the event) are printed and saved as
  test-artifacts/browser/live-delays.json (the issue's target: 5 s);
- steady traffic and then a spike, posted while the page is open, mark the spike minute an anomaly on both charts
  once that minute is over (and no other minute);
- the alerts widget shows restaurant A's alert history and the alerts the real alert service fires for A's rule,
  and never B's, although B's rule fires too (B's own viewer of the stream receives it).
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, Request, expect
from sqlalchemy import delete

from lakepulse.auth.tokens import mint_token
from lakepulse.config import crud
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.models import Tenant
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings
from tests.browser.conftest import NEEDS, Served
from tests.browser.pages import (
    TIMEZONE,
    StreamWatcher,
    not_reloaded,
    rating,
    sign_in,
    status,
    wait_seen,
    watch,
    watch_errors,
)
from tests.stack_events import order, post, rfc3339, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS, "kafka", "postgres", "alerts")]

# Bounds, not timing assertions. The totals come from the streaming job's minute query (1 s trigger); the funnel and
# the ratings from its live-table queries (10 s trigger, at a lower priority: 7-35 s measured on a busy machine).
TOTALS_WAIT_S = 30
PUSH_WAIT_S = 120
STREAM_WAIT_S = 60
SPIKE_ORDERS = 20
STEADY_AMOUNT = 8.0
SPIKE_AMOUNT = 12.0
ALERT_WAIT_S = 120


def bearer(settings: Settings, tenant: str) -> str:
    return mint_token(settings, tenant=tenant, ttl=timedelta(hours=1), subject="web-live-test")


def open_live(page: Page, served: Served, tenant: str) -> None:
    """Sign in as `tenant` and wait until the page's stream is open and the API's push reads the topics."""
    sign_in(page, served.url, tenant)
    expect(page.locator("#restaurant")).to_have_attribute("data-stream", "live", timeout=STREAM_WAIT_S * 1000)
    expect(page.locator("#stream-state")).to_have_text("Live: updates are pushed as they happen")
    assert served.hub.wait_ready(STREAM_WAIT_S), "the API's push feed was not assigned its topics"


def record_requests(page: Page) -> list[str]:
    """The paths of the API reads the page makes from now on."""
    paths: list[str] = []

    def on_request(request: Request) -> None:
        path = httpx.URL(request.url).path
        if path.startswith("/v1/"):
            paths.append(path)

    page.on("request", on_request)
    return paths


def test_an_order_moves_the_funnel_and_sales_today_with_no_reload(
        page: Page, served: Served, settings: Settings, artifacts: Path) -> None:
    tenant = f"live-a-{uuid.uuid4().hex[:10]}"
    errors = watch_errors(page)
    open_live(page, served, tenant)
    assert page.locator("#w-funnel li[data-status=placed] .count").get_attribute("data-raw") == "0"
    assert page.locator("#w-sales [data-field=value]").get_attribute("data-raw") == "0"
    viewer = StreamWatcher(served.url, bearer(settings, tenant))
    requests = record_requests(page)
    delays: dict[str, Any] = {"tenant": tenant}
    try:
        # 1. An order is placed.
        amount = 23.45
        placed = order(tenant, datetime.now(UTC), amount, source="web-live")
        order_id = placed["properties"]["order_id"]
        watch(page, ("funnel", "#w-funnel li[data-status=placed] .count", "1"),
              ("sales", "#w-sales [data-field=value]", str(amount)))
        posted = time.time() * 1000
        post(settings, [placed])
        wait_seen(page, {"sales"}, TOTALS_WAIT_S, "the order's sales")
        shown = wait_seen(page, {"funnel", "sales"}, PUSH_WAIT_S, "the order placed")
        pushed_order = viewer.first(lambda e: e["type"] == "live_order" and e.get("order_id") == order_id)
        pushed_sales = viewer.first(lambda e: e["type"] == "metric" and e["metric"] == "gross_sales"
                                    and e["value"] == amount)
        assert pushed_order is not None and pushed_sales is not None
        delays["placed"] = {"funnel_page_ms": round(shown["funnel"] - posted),
                            "funnel_pushed_ms": round(pushed_order[0] - posted),
                            "sales_page_ms": round(shown["sales"] - posted),
                            "sales_pushed_ms": round(pushed_sales[0] - posted)}
        assert page.locator("#w-sales [data-field=value]").inner_text() == f"€{amount:,.2f}"
        assert page.locator("#w-sales [data-field=detail]").inner_text().startswith("1 order since")
        assert page.locator("#w-funnel [data-field=asof]").inner_text().startswith("as of")
        page.screenshot(path=str(artifacts / "live-order-placed.png"), full_page=True)

        # 2. The same order is delivered and rated: it moves from placed to delivered (the page knows it now),
        # completed orders today counts it, and its rating heads the feed.
        watch(page, ("left placed", "#w-funnel li[data-status=placed] .count", "0"),
              ("delivered", "#w-funnel li[data-status=delivered] .count", "1"),
              ("completed", "#w-completed [data-field=value]", "1"),
              ("rating", f'#w-ratings li[data-order="{order_id}"]', None))
        now = datetime.now(UTC)
        posted = time.time() * 1000
        post(settings, [status(tenant, order_id, "delivered", now), rating(tenant, order_id, 5, 4, now)])
        wait_seen(page, {"completed"}, TOTALS_WAIT_S, "the order completed")
        shown = wait_seen(page, {"left placed", "delivered", "completed", "rating"}, PUSH_WAIT_S,
                          "the order delivered and rated")
        pushed_completed = viewer.first(lambda e: e["type"] == "metric" and e["metric"] == "orders_completed")
        pushed_delivered = viewer.first(lambda e: e["type"] == "live_order" and e.get("status") == "delivered")
        assert pushed_completed is not None and pushed_delivered is not None
        delays["delivered"] = {"funnel_page_ms": round(shown["delivered"] - posted),
                               "funnel_pushed_ms": round(pushed_delivered[0] - posted),
                               "completed_page_ms": round(shown["completed"] - posted),
                               "completed_pushed_ms": round(pushed_completed[0] - posted),
                               "rating_page_ms": round(shown["rating"] - posted)}
        assert page.locator("#w-funnel li[data-status=placed] .count").get_attribute("data-raw") == "0"
        assert page.locator(f'#w-ratings li[data-order="{order_id}"] .stars').first.get_attribute(
            "aria-label") == "5 of 5"

        # No reload, no polling: the page read nothing but the top items (a minute of items sold changes them).
        assert not_reloaded(page)
        assert set(requests) <= {"/v1/metrics/items_sold/top"}, requests
        delays["reads_during_test"] = requests
        # The page equals the API now.
        live = httpx.get(f"{served.url}/v1/live", params={"timezone": TIMEZONE},
                         headers={"Authorization": f"Bearer {bearer(settings, tenant)}"}, timeout=30).json()
        assert live["funnel"]["orders"]["delivered"] == 1 and live["sales_today"]["value"] == pytest.approx(amount)
        assert live["completed_today"]["value"] == 1
        assert errors == []
        page.screenshot(path=str(artifacts / "live-order-delivered.png"), full_page=True)
    finally:
        viewer.close()
    print(f"\nlive delays (ms after the ingest POST; page = drawn, pushed = a second stream viewer received it): "
          f"{json.dumps(delays)}")
    (artifacts / "live-delays.json").write_text(json.dumps(delays, indent=2) + "\n")


def wait_for_minute_start(earliest_s: int, latest_s: int) -> datetime:
    """Sleep (at most a minute) until the current minute's second is in [earliest_s, latest_s]; now (UTC)."""
    deadline = time.monotonic() + 70
    while not earliest_s <= (now := datetime.now(UTC)).second <= latest_s:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return now


def minute_values(served: Served, settings: Settings, tenant: str, first: datetime, minutes: int,
                  metric: str) -> list[float]:
    response = httpx.get(f"{served.url}/v1/metrics/{metric}/series", timeout=30,
                         params={"granularity": "1m", "from": rfc3339(first),
                                 "to": rfc3339(first + timedelta(minutes=minutes))},
                         headers={"Authorization": f"Bearer {bearer(settings, tenant)}"})
    assert response.status_code == 200, response.text
    return [w["value"] for w in response.json()["windows"]]


def test_a_spike_pushed_while_the_page_is_open_is_marked_an_anomaly(
        page: Page, served: Served, settings: Settings, artifacts: Path) -> None:
    tenant = f"live-s-{uuid.uuid4().hex[:10]}"
    errors = watch_errors(page)
    open_live(page, served, tenant)
    watch(page)  # marks the document: a reload would lose the mark
    requests = record_requests(page)
    # Post just after a minute starts: the two minutes before are then at most 90 s old, inside the streaming
    # job's 2-minute watermark (an older event is late for the speed layer and reaches only the batch layer).
    now = wait_for_minute_start(2, 12)
    spike = now.replace(second=0, microsecond=0)
    before, last = spike - timedelta(minutes=2), spike - timedelta(minutes=1)
    steady = [order(tenant, at, STEADY_AMOUNT, source="web-live") for at in (
        before + timedelta(seconds=45), before + timedelta(seconds=55),
        last + timedelta(seconds=15), last + timedelta(seconds=45))]
    elapsed = (now - spike).total_seconds()
    spiked = [order(tenant, spike + timedelta(seconds=elapsed * i / SPIKE_ORDERS), SPIKE_AMOUNT, source="web-live")
              for i in range(SPIKE_ORDERS)]
    answer = post(settings, [*steady, *spiked])
    assert answer["accepted"] == len(steady) + len(spiked), answer
    # The speed layer counted every one (none dropped as late): two a minute, then the spike.
    wait_for(lambda: minute_values(served, settings, tenant, before, 3, "orders_placed"), [2, 2, SPIKE_ORDERS],
             PUSH_WAIT_S, f"the speed layer's minutes of {tenant}")
    minute_over = spike.timestamp() + 60
    if time.time() < minute_over - 1:
        # Still filling: its minute is not judged yet (a half-full minute is no dip, a filling one no spike).
        assert page.locator("#w-chart .anomalies li").count() == 0

    orders_marks = page.locator("#w-chart .anomalies li[data-series=orders]")
    expect(orders_marks).to_have_count(1, timeout=PUSH_WAIT_S * 1000)
    marked_after_s = time.time() - minute_over
    for chart in ("orders", "sales"):
        starts = page.locator(f"#w-chart .anomalies li[data-series={chart}]").evaluate_all(
            "els => els.map(e => e.dataset.start)")
        assert [datetime.fromisoformat(s) for s in starts] == [spike], chart
        assert page.locator(f"#w-chart [data-field={chart}]").get_attribute("data-anomalies") == "1"
    summary = page.locator("#w-chart [data-field=orders-summary]").inner_text()
    assert f"{4 + SPIKE_ORDERS} in all" in summary and f"highest {SPIKE_ORDERS}" in summary, summary
    assert not_reloaded(page)
    # Only the top items were read again (no series read: the chart moved on pushed minutes).
    assert set(requests) <= {"/v1/metrics/items_sold/top"}, requests
    assert errors == []
    print(f"\nspike minute {spike.isoformat()} marked an anomaly {marked_after_s:.1f} s after it ended")
    page.screenshot(path=str(artifacts / "live-spike-anomaly.png"), full_page=True)


@pytest.fixture
def alert_tenants(stack: Context, served: Served, settings: Settings) -> Iterator[tuple[str, str]]:
    """Two new restaurants, each with a rule that fires on any order and one earlier breach in its history; their
    configuration (rules, history) deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    tenants = (f"live-alert-a-{run}", f"live-alert-b-{run}")
    db = ConfigDatabase.from_settings(settings, "lakepulse-tests")
    try:
        for tenant in tenants:
            headers = {"Authorization": f"Bearer {bearer(settings, tenant)}"}
            created = httpx.post(f"{served.url}/v1/alerts/rules", headers=headers, timeout=30, json={
                "name": f"Any order at {tenant}", "metric": "orders_placed", "condition": "gt", "threshold": 0,
                "window_minutes": 1})
            assert created.status_code == 201, created.text
            rule_id = uuid.UUID(created.json()["id"])
            began = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
            breach = f"{rule_id}:{tenant}:history"
            with db.session() as session:  # what the alert service records: a firing and its resolve
                steps: tuple[tuple[Literal["firing", "resolved"], datetime], ...] = (
                    ("firing", began), ("resolved", began + timedelta(minutes=4)))
                for step, at in steps:
                    assert crud.record_event(session, tenant=tenant, rule_id=rule_id, status=step, value=3.0,
                                             window_end=at, breach_key=breach, idempotency_key=f"{breach}:{step}",
                                             occurred_at=at, details={"reason": "breached"})
                session.commit()
        yield tenants
    finally:
        with db.session() as session:
            session.execute(delete(Tenant).where(Tenant.tenant_id.in_(tenants)))
            session.commit()
        db.close()


def shown_alerts(page: Page) -> list[str]:
    """The idempotency keys of the alert events the page lists, top to bottom."""
    return list(page.locator("#w-alerts li[data-alert]").evaluate_all("els => els.map(e => e.dataset.alert)"))


def test_the_alerts_widget_shows_as_alerts_and_never_bs(
        page: Page, served: Served, settings: Settings, alert_tenants: tuple[str, str], artifacts: Path) -> None:
    a, b = alert_tenants
    errors = watch_errors(page)
    open_live(page, served, a)
    # A's history, as the API gives it; nothing of B's.
    history = httpx.get(f"{served.url}/v1/alerts/history", params={"limit": 20}, timeout=30,
                        headers={"Authorization": f"Bearer {bearer(settings, a)}"}).json()["events"]
    assert shown_alerts(page) == [e["idempotency_key"] for e in history]
    assert len(history) == 2 and all(a in e["idempotency_key"] for e in history)

    # The real alert service fires both rules on the restaurants' first orders (its rules come from PostgreSQL,
    # read every few seconds).
    b_viewer = StreamWatcher(served.url, bearer(settings, b))
    try:
        now = datetime.now(UTC)
        post(settings, [order(a, now, 10.0, source="web-live"), order(b, now, 11.0, source="web-live")])
        known = {e["idempotency_key"] for e in history}
        deadline = time.monotonic() + ALERT_WAIT_S
        while not (new := [key for key in shown_alerts(page) if key not in known]):
            assert time.monotonic() < deadline, "A's alert never showed on A's page"
            time.sleep(0.2)
        assert all(key.endswith(":firing") and f":{a}:" in key for key in new), new
        expect(page.locator(f'#w-alerts li[data-alert="{new[0]}"] .badge')).to_have_text("firing")

        # B's rule fired as well: B's own viewer gets it; A's page never shows it.
        deadline = time.monotonic() + ALERT_WAIT_S
        while (b_alert := b_viewer.first(lambda e: e["type"] == "alert" and e["status"] == "firing")) is None:
            assert time.monotonic() < deadline, "B's alert never reached B's viewer"
            time.sleep(0.2)
        time.sleep(1.0)  # it reached the API a second ago: long enough to have shown on A's page if it ever would
        shown = shown_alerts(page)
        assert b_alert[1]["id"] not in shown and not any(b in key for key in shown), shown
        assert b not in page.locator("main").inner_text()
        assert errors == []
        page.screenshot(path=str(artifacts / "live-alerts-a.png"), full_page=True)
    finally:
        b_viewer.close()
