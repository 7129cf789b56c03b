"""The operations page in Debian's Chromium against the real stack.

An admin signs in through the form and the page shows the services and the seam as the API gives them; the
backfill form then starts a run for one hour (three days ago) of a fresh restaurant, one metric, and the page follows
the run to success by itself; the restaurant's orders of that hour are then in the batch layer. A restaurant's
session gets 403 for the page, an analyst's sees it but cannot start a backfill; at phone width nothing overflows
and the form is reached by keyboard. Screenshots go to test-artifacts/browser/.

The backfill is kept tiny (one hour with only the test's events plus whatever else that hour holds, one metric):
it rebuilds that hour in the lake the hourly run also writes, which Delta's conflict detection makes safe
(spark_jobs/staging.py), as `lakepulse backfill` and bench/api.py do.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from lakepulse.api.operations import floor_hour
from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.platform.components.airflow import airflow_password
from lakepulse.platform.stack import context
from lakepulse.settings import Settings
from tests.browser.conftest import NEEDS
from tests.e2e.served import committed_past, end_offsets
from tests.stack_events import order, post, rfc3339, wait_for

OPS_NEEDS = (*NEEDS, "connect", "airflow-api", "airflow-scheduler", "airflow-dag-processor")
pytestmark = [pytest.mark.integration, pytest.mark.needs(*OPS_NEEDS)]

# Bounds, not timing assertions: Connect uploads an open file after ~60 s; a one-hour backfill is a spark-submit
# of a few minutes (longer when an hourly run shares the machine).
ARCHIVE_WAIT_S = 300
BACKFILL_WAIT_S = 1200
HOURLY_WAIT_S = 1200
PAGE_WAIT_MS = 60_000
ORDERS = 4
METRIC = "orders_placed"


def sign_in(page: Page, url: str, role_label: str, tenant: str = "") -> None:
    """Sign in through the form with the role whose radio button is labelled `role_label`."""
    page.goto(f"{url}/")
    page.get_by_label(role_label).check()
    if tenant:
        page.get_by_label("Restaurant (tenant id)").fill(tenant)
    page.get_by_role("button", name="Sign in").click()


def open_operations(page: Page, url: str, role_label: str) -> dict[str, Any]:
    """Sign in, wait until the operations page has drawn its overview; the overview the API gives the same
    session right after."""
    sign_in(page, url, role_label)
    page.wait_for_url(re.compile(r"/app/operations$"))
    page.wait_for_selector("#operations[data-loaded='true']", timeout=PAGE_WAIT_MS)
    response = page.request.get(f"{url}/v1/ops/overview", timeout=PAGE_WAIT_MS)
    assert response.status == 200, response.text()
    return dict(response.json())


def series_total(page: Page, url: str, tenant: str, start: datetime, end: datetime) -> tuple[int, list[str]]:
    """The tenant's METRIC over [start, end) in one hourly window through the page's session: (count, layers)."""
    response = page.request.get(f"{url}/v1/metrics/{METRIC}/series", params={
        "tenant": tenant, "from": rfc3339(start), "to": rfc3339(end), "granularity": "1h"})
    assert response.status == 200, response.text()
    windows = response.json()["windows"]
    return sum(int(w["count"]) for w in windows), [str(w["layer"]) for w in windows]


@pytest.fixture(scope="module")
def backfill_hour(settings: Settings) -> tuple[str, datetime]:
    """A fresh restaurant with ORDERS orders in one hour three days ago, archived (not yet rebuilt by a backfill)."""
    tenant = f"ops-web-{uuid.uuid4().hex[:8]}"
    hour = floor_hour(datetime.now(UTC)) - timedelta(days=3)
    events = [order(tenant, hour + timedelta(minutes=10, seconds=7 * i), 20.0 + i, source="ops-web-test")
              for i in range(ORDERS)]
    assert post(settings, events)["accepted"] == ORDERS
    posted_up_to = end_offsets(settings)
    wait_for(lambda: committed_past(settings, posted_up_to), True, ARCHIVE_WAIT_S,
             "the raw-archive connector committing the posted orders", interval=5.0)
    return tenant, hour


def hourly_busy(settings: Settings) -> list[str]:
    """The hourly DAG's runs that are queued or running."""
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(context(settings)))
    return [str(r["dag_run_id"]) for r in api.runs("lakepulse_hourly", limit=20) if r["state"] in ("queued", "running")]


def test_admin_sees_services_and_seam_and_the_page_follows_a_backfill_to_success(
        page: Page, dashboard: str, backfill_hour: tuple[str, datetime], artifacts: Path, stack: object,
        settings: Settings) -> None:
    tenant, hour = backfill_hour
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    overview = open_operations(page, dashboard, "An admin (every restaurant, operations)")

    # Services: one row per supervised program, in the state the API reports.
    services = {s["name"]: s["state"] for s in overview["services"]["services"]}
    rows = page.locator("#ops-services tbody tr")
    expect(rows).to_have_count(len(services))
    for name in ("kafka", "trino", "pinot", "streaming", "airflow-scheduler"):
        assert services[name] == "RUNNING"
        expect(page.locator(f"#ops-services tr[data-service='{name}'] .state")).to_have_text("RUNNING")
    # The seam, as the API gives it (the page shows it in the browser's zone and keeps the instant).
    if overview["seam"]["seam"] is None:  # a fresh stack before its first hourly run moved it
        expect(page.locator("#ops-seam .empty")).to_be_visible()
    else:
        expect(page.locator("#seam-value")).to_have_attribute("data-raw", overview["seam"]["seam"])
    expect(page.locator("#ops-seam tbody tr")).to_have_count(len(overview["hourly"]["runs"]))
    for section in ("#ops-kafka", "#ops-freshness", "#ops-archive", "#ops-reconcile", "#ops-late", "#ops-dlq"):
        expect(page.locator(section)).to_have_attribute("aria-busy", "false")

    # A backfill and an hourly run must not write the lake at once until issue 21's publish step lands (a fresh
    # stack runs its first hourly tick at start): start the form's run once no hourly run is queued or running.
    wait_for(lambda: hourly_busy(settings), [], HOURLY_WAIT_S, "no hourly run queued or running", interval=10.0)

    # The form: one hour of the fresh restaurant, one metric, reconcile on (the default).
    page.get_by_label("From (UTC, whole hour)").fill(hour.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To (UTC, whole hour, not included)").fill((hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label(METRIC, exact=True).check()
    expect(page.get_by_label("Repair the speed layer's rows of the range afterwards (reconcile)")).to_be_checked()
    page.get_by_role("button", name="Start backfill").click()

    progress = page.locator("#bf-progress")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("data-run", re.compile(r"^manual__"))
    run_id = progress.get_attribute("data-run")
    assert run_id is not None
    expect(page.get_by_role("button", name="Start backfill")).to_be_disabled()  # while the run is followed
    # The page reads the run's state by itself until it ends; no reload, no click.
    expect(progress).to_have_attribute("data-state", re.compile(r"^(success|failed)$"), timeout=BACKFILL_WAIT_S * 1000)
    assert progress.get_attribute("data-state") == "success", page.locator("#bf-state").text_content()
    expect(page.locator("#bf-state")).to_have_text(re.compile(r"^Succeeded"))
    expect(progress.locator("[data-task='rebuild'] .state")).to_have_text("success")
    assert progress.locator("progress").evaluate("bar => bar.value === bar.max")
    expect(page.get_by_role("button", name="Start backfill")).to_be_enabled()

    # The run is Airflow's, for the range and metric the form named, and the hour's orders are in the batch layer.
    response = page.request.get(f"{dashboard}/v1/ops/backfills/{quote(run_id, safe='')}")
    assert response.status == 200, response.text()
    run = response.json()
    assert (run["state"], run["range"], run["metrics"], run["reconcile"]) == (
        "success", [rfc3339(hour), rfc3339(hour + timedelta(hours=1))], [METRIC], True)
    assert series_total(page, dashboard, tenant, hour, hour + timedelta(hours=1)) == (ORDERS, ["batch"])
    # The finished run is listed, and the page read the overview again.
    expect(page.locator(f"#ops-backfill tr[data-run='{run_id}'] .state")).to_have_text("success")
    page.wait_for_selector("#operations[data-loaded='true']", timeout=PAGE_WAIT_MS)
    page.screenshot(path=str(artifacts / "operations-admin.png"), full_page=True)
    assert errors == []


def test_restaurants_get_403_and_analysts_cannot_start_a_backfill(page: Page, dashboard: str, artifacts: Path,
                                                                   stack: object) -> None:
    sign_in(page, dashboard, "A restaurant", tenant="demo-rest-0001")
    page.wait_for_url(re.compile(r"/app/restaurant"))
    refused = page.goto(f"{dashboard}/app/operations")
    assert refused is not None and refused.status == 403
    expect(page.get_by_role("alert")).to_have_text("the operations page is for the analyst and admin roles")
    assert page.request.get(f"{dashboard}/v1/ops/overview").status == 403
    page.screenshot(path=str(artifacts / "operations-refused-to-restaurant.png"))

    open_operations(page, dashboard, "An analyst (every restaurant)")
    expect(page.get_by_role("button", name="Start backfill")).to_be_disabled()
    expect(page.get_by_text("Starting a backfill needs the admin role")).to_be_visible()
    # The API says the same to the analyst's session (the page's button is only a courtesy).
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=3)
    answer = page.request.post(f"{dashboard}/v1/ops/backfills", headers={"Origin": dashboard}, data={
        "from": rfc3339(hour), "to": rfc3339(hour + timedelta(hours=1))})
    assert answer.status == 403, answer.text()
    assert answer.json()["detail"].startswith("starting a backfill needs the admin role")


def test_phone_width_and_keyboard(browser: Browser, dashboard: str, artifacts: Path, stack: object) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        open_operations(page, dashboard, "An admin (every restaurant, operations)")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(artifacts / "operations-phone.png"))
        # The form by keyboard: Refresh, then on through the tables' scroll regions and links to the range inputs.
        page.get_by_role("button", name="Refresh").focus()
        for _ in range(200):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "bf-from":
                break
        assert page.evaluate("document.activeElement.id") == "bf-from"
        for _ in range(10):  # a datetime-local input holds several fields, each a Tab stop
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "bf-to":
                break
        assert page.evaluate("document.activeElement.id") == "bf-to"
        page.screenshot(path=str(artifacts / "operations-phone-form.png"))
    finally:
        context.close()
