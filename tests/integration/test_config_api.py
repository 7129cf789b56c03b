"""The configuration API (dashboards, widgets, alert rules, alert history) in-process against the real PostgreSQL,
with locally minted tokens: CRUD round trips, the default dashboard on first use, tenant isolation on every
configuration endpoint, roles, refused webhook addresses and bodies, and a dashboard's widgets read at once."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import delete

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.config import crud
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.defaults import default_widgets
from lakepulse.config.models import Tenant
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.needs("postgres")]

CONFIG_PATHS = ("/v1/dashboards", "/v1/alerts")
ENGINE_WORDS = ("SELECT", "psycopg", "sqlalchemy", "Traceback", "INSERT", "violates", "postgres")


def bearer(settings: Settings, tenant: str | None = None, role: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, role=role, ttl=timedelta(hours=1))}"}


@pytest.fixture
def api(stack: Context) -> Iterator[TestClient]:
    settings = stack.settings.model_copy(update={"api_rate_limit_per_s": 0.0})
    with TestClient(create_app(settings)) as client:
        yield client


CREATED: list[str] = []  # the tenants of the running test, deleted after it (with all their rows)


def new_tenant(prefix: str) -> str:
    CREATED.append(f"{prefix}-{uuid.uuid4().hex[:10]}")
    return CREATED[-1]


@pytest.fixture(autouse=True)
def forget_tenants(stack: Context) -> Iterator[None]:
    yield
    db = ConfigDatabase.from_settings(stack.settings, "lakepulse-tests")
    try:
        with db.session() as session:
            session.execute(delete(Tenant).where(Tenant.tenant_id.in_(CREATED)))
            session.commit()
    finally:
        db.close()
        CREATED.clear()


SERIES = {"title": "Orders by channel", "kind": "series", "metric": "orders_placed", "granularity": "5m",
          "window": "6h", "group_by": ["channel"], "filters": {"country": "DE"}, "visualisation": "line"}
TOP = {"title": "Best sellers", "kind": "top", "metric": "items_sold", "by": "item_id", "n": 3, "window": "2h",
       "visualisation": "bar"}
LIVE = {"title": "Funnel", "kind": "live", "live": "funnel", "visualisation": "funnel"}
RULE = {"name": "Rush", "metric": "orders_placed", "condition": "gt", "threshold": 50, "window_minutes": 5,
        "dimensions": {"channel": "app"}}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if status != 204 else None


# --- first use --------------------------------------------------------------------------------------------------


def test_first_use_creates_the_default_restaurant_dashboard_once(api: TestClient, settings: Settings) -> None:
    headers = bearer(settings, new_tenant("cfg-first"))
    (default,) = ok(api.get("/v1/dashboards", headers=headers))["dashboards"]
    assert default["is_default"] and default["name"] == "Restaurant"
    widgets = ok(api.get(f"/v1/dashboards/{default['id']}", headers=headers))["widgets"]
    shown = {(w["kind"], w["live"] or w["metric"]) for w in widgets}
    assert shown == {("live", "funnel"), ("live", "couriers_waiting"), ("live", "ratings"), ("top", "items_sold"),
                     ("live", "prep_time_last_hour"), ("live", "sales_today"), ("series", "orders_placed"),
                     ("series", "gross_sales")}
    assert [w["position"] for w in widgets] == sorted(w["position"] for w in widgets)
    top = next(w for w in widgets if w["kind"] == "top")
    assert (top["by"], top["n"]) == ("item_id", 5)

    # Only on first use: a second app (another worker) does not add one, nor does deleting it bring it back.
    with TestClient(create_app(settings)) as other:
        assert len(ok(other.get("/v1/dashboards", headers=headers))["dashboards"]) == 1
    ok(api.delete(f"/v1/dashboards/{default['id']}", headers=headers), 204)
    with TestClient(create_app(settings)) as other:
        assert ok(other.get("/v1/dashboards", headers=headers))["dashboards"] == []


def test_first_use_through_an_alert_endpoint_also_gives_the_default_dashboard(api: TestClient,
                                                                             settings: Settings) -> None:
    headers = bearer(settings, new_tenant("cfg-first-rules"))
    assert ok(api.get("/v1/alerts/rules", headers=headers)) == {"rules": []}
    assert [d["is_default"] for d in ok(api.get("/v1/dashboards", headers=headers))["dashboards"]] == [True]


# --- CRUD round trips -------------------------------------------------------------------------------------------


def test_dashboard_and_widget_round_trip(api: TestClient, settings: Settings) -> None:
    headers = bearer(settings, new_tenant("cfg-crud"))
    created = ok(api.post("/v1/dashboards", headers=headers, json={"name": "  Lunch  ", "widgets": [SERIES, TOP]}),
                 201)
    dashboard_id = created["id"]
    assert created["name"] == "Lunch" and not created["is_default"]
    assert [w["title"] for w in created["widgets"]] == ["Orders by channel", "Best sellers"]
    series = created["widgets"][0]
    assert {k: series[k] for k in ("metric", "granularity", "window", "group_by", "filters", "timezone")} == {
        "metric": "orders_placed", "granularity": "5m", "window": "6h", "group_by": ["channel"],
        "filters": {"country": "DE"}, "timezone": "UTC"}

    listed = ok(api.get("/v1/dashboards", headers=headers))["dashboards"]
    assert [d["name"] for d in listed] == ["Restaurant", "Lunch"]
    assert ok(api.get(f"/v1/dashboards/{dashboard_id}", headers=headers)) == created

    renamed = ok(api.patch(f"/v1/dashboards/{dashboard_id}", headers=headers, json={"name": "Dinner"}))
    assert renamed["name"] == "Dinner" and renamed["widgets"] == created["widgets"]

    live = ok(api.post(f"/v1/dashboards/{dashboard_id}/widgets", headers=headers, json=LIVE), 201)
    assert live["position"] == 2 and live["live"] == "funnel" and live["metric"] is None
    first = ok(api.post(f"/v1/dashboards/{dashboard_id}/widgets", headers=headers,
                        json={**LIVE, "title": "Ratings", "live": "ratings", "visualisation": "list", "position": 0}),
               201)
    assert first["n"] == 10  # the default number of ratings
    order = [w["title"] for w in ok(api.get(f"/v1/dashboards/{dashboard_id}/widgets", headers=headers))["widgets"]]
    assert order[0] in ("Orders by channel", "Ratings") and order[-1] == "Funnel" and len(order) == 4

    widget_url = f"/v1/dashboards/{dashboard_id}/widgets/{live['id']}"
    assert ok(api.get(widget_url, headers=headers)) == live
    replaced = ok(api.put(widget_url, headers=headers, json={**SERIES, "title": "Sales", "metric": "gross_sales",
                                                            "group_by": [], "filters": {}, "position": 7}))
    assert (replaced["id"], replaced["kind"], replaced["metric"], replaced["live"], replaced["position"]) == (
        live["id"], "series", "gross_sales", None, 7)
    assert ok(api.get(widget_url, headers=headers)) == replaced

    ok(api.delete(widget_url, headers=headers), 204)
    ok(api.get(widget_url, headers=headers), 404)
    ok(api.delete(f"/v1/dashboards/{dashboard_id}", headers=headers), 204)
    ok(api.get(f"/v1/dashboards/{dashboard_id}", headers=headers), 404)
    ok(api.get(f"/v1/dashboards/{dashboard_id}/widgets/{first['id']}", headers=headers), 404)


def test_alert_rule_round_trip_and_history(api: TestClient, settings: Settings) -> None:
    tenant = new_tenant("cfg-rules")
    headers = bearer(settings, tenant)
    rule = ok(api.post("/v1/alerts/rules", headers=headers, json=RULE), 201)
    assert {k: rule[k] for k in RULE} == {**RULE, "threshold": 50.0}
    assert rule["enabled"] and rule["baseline_minutes"] == 30 and rule["webhook_url"] is None
    rule_url = f"/v1/alerts/rules/{rule['id']}"
    assert ok(api.get("/v1/alerts/rules", headers=headers))["rules"] == [rule]
    assert ok(api.get(rule_url, headers=headers)) == rule

    disabled = ok(api.patch(rule_url, headers=headers, json={"enabled": False, "threshold": 80}))
    assert (disabled["enabled"], disabled["threshold"], disabled["name"]) == (False, 80.0, "Rush")
    assert datetime.fromisoformat(disabled["updated_at"]) > datetime.fromisoformat(rule["updated_at"])
    anomaly = ok(api.patch(rule_url, headers=headers, json={"condition": "anomaly", "threshold": None}))
    assert (anomaly["condition"], anomaly["threshold"]) == ("anomaly", None)
    refused = api.patch(rule_url, headers=headers, json={"condition": "lt"})  # lt without a threshold
    assert refused.status_code == 400 and "threshold" in refused.json()["detail"]
    assert ok(api.get(rule_url, headers=headers)) == anomaly  # nothing changed

    # The alert service records events; the API lists them newest first, by rule and status, in pages.
    record_events(settings, tenant, uuid.UUID(rule["id"]), breaches=3)
    history = ok(api.get("/v1/alerts/history", headers=headers))
    events = history["events"]
    assert len(events) == 6 and history["next_before"] is None
    assert [e["status"] for e in events[:2]] == ["resolved", "firing"]
    assert all(e["rule_id"] == rule["id"] and e["rule_name"] == "Rush" for e in events)
    assert len({e["idempotency_key"] for e in events}) == 6 and len({e["breach_key"] for e in events}) == 3
    firing = ok(api.get("/v1/alerts/history", headers=headers, params={"status": "firing"}))["events"]
    assert [e["status"] for e in firing] == ["firing"] * 3
    page = ok(api.get("/v1/alerts/history", headers=headers, params={"limit": 4}))
    rest = ok(api.get("/v1/alerts/history", headers=headers, params={"before": page["next_before"]}))
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in events]

    ok(api.delete(rule_url, headers=headers), 204)
    ok(api.get(rule_url, headers=headers), 404)
    ok(api.patch(rule_url, headers=headers, json={"enabled": True}), 404)
    kept = ok(api.get("/v1/alerts/history", headers=headers))["events"]
    assert len(kept) == 6 and all(e["rule_id"] is None for e in kept)  # history outlives the rule


def record_events(settings: Settings, tenant: str, rule_id: uuid.UUID, breaches: int) -> None:
    """What the alert service writes: per breach a firing and a resolve with distinct keys."""
    db = ConfigDatabase.from_settings(settings, "lakepulse-tests")
    start = datetime.now(UTC) - timedelta(hours=1)
    try:
        with db.session() as session:
            for i in range(breaches):
                began = start + timedelta(minutes=10 * i)
                breach = f"{rule_id}:{began.isoformat()}"
                for status, at in (("firing", began), ("resolved", began + timedelta(minutes=3))):
                    assert crud.record_event(session, tenant=tenant, rule_id=rule_id, status=status,
                                             value=60.0 + i, window_end=at, breach_key=breach,
                                             idempotency_key=f"{breach}:{status}", occurred_at=at)
            session.commit()
    finally:
        db.close()


# --- tenant isolation -------------------------------------------------------------------------------------------


def config_routes(api: TestClient) -> set[tuple[str, str]]:
    routes = set()
    for route in api.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.startswith(CONFIG_PATHS):
            routes |= {(method, route.path) for method in route.methods}
    return routes


def test_tenant_b_can_neither_read_nor_change_anything_of_tenant_a(api: TestClient, settings: Settings) -> None:
    tenant_a = new_tenant("cfg-iso-a")
    a, b = bearer(settings, tenant_a), bearer(settings, new_tenant("cfg-iso-b"))
    dashboard = ok(api.post("/v1/dashboards", headers=a, json={"name": "A", "widgets": [SERIES, LIVE]}), 201)
    widget = dashboard["widgets"][0]
    rule = ok(api.post("/v1/alerts/rules", headers=a, json=RULE), 201)
    record_events(settings, tenant_a, uuid.UUID(rule["id"]), breaches=1)
    before = snapshot(api, a, dashboard["id"], rule["id"])

    ids = {"dashboard_id": dashboard["id"], "widget_id": widget["id"], "rule_id": rule["id"]}
    bodies = {"/v1/dashboards": {"name": "B"}, "/v1/dashboards/{dashboard_id}": {"name": "taken"},
              "/v1/dashboards/{dashboard_id}/widgets": LIVE, "/v1/dashboards/{dashboard_id}/widgets/{widget_id}": TOP,
              "/v1/alerts/rules": RULE, "/v1/alerts/rules/{rule_id}": {"enabled": False}}
    exercised = set()
    for method, path in sorted(config_routes(api)):
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m[1]], path)
        response = api.request(method, url, headers=b, json=bodies.get(path) if method != "GET" else None)
        exercised.add((method, path))
        if "{" in path:  # A's ids: not found for B, whatever the verb
            assert response.status_code == 404, (method, path, response.text)
        else:  # B's own collections hold nothing of A's
            assert response.status_code in (200, 201), (method, path, response.text)
            assert tenant_a not in response.text and dashboard["id"] not in response.text
            assert rule["id"] not in response.text
        # Naming A explicitly is refused outright.
        named = api.request(method, url, headers=b, params={"tenant": tenant_a},
                            json=bodies.get(path) if method != "GET" else None)
        assert named.status_code == 403, (method, path, named.text)
    assert exercised == config_routes(api) and len(exercised) >= 14

    b_history = ok(api.get("/v1/alerts/history", headers=b, params={"rule_id": rule["id"]}))
    assert b_history["events"] == []
    assert snapshot(api, a, dashboard["id"], rule["id"]) == before  # A's configuration is untouched


def snapshot(api: TestClient, headers: dict[str, str], dashboard_id: str, rule_id: str) -> list[Any]:
    return [ok(api.get("/v1/dashboards", headers=headers)), ok(api.get(f"/v1/dashboards/{dashboard_id}",
            headers=headers)), ok(api.get("/v1/alerts/rules", headers=headers)),
            ok(api.get(f"/v1/alerts/rules/{rule_id}", headers=headers)),
            ok(api.get("/v1/alerts/history", headers=headers))]


def test_roles_analysts_read_admins_change_producers_and_strangers_do_neither(api: TestClient,
                                                                              settings: Settings) -> None:
    tenant = new_tenant("cfg-roles")
    owner, analyst, admin = bearer(settings, tenant), bearer(settings, role="analyst"), bearer(settings, role="admin")
    dashboard = ok(api.post("/v1/dashboards", headers=owner, json={"name": "Mine"}), 201)
    named = {"tenant": tenant}

    listed = ok(api.get("/v1/dashboards", headers=analyst, params=named))["dashboards"]
    assert dashboard["id"] in {d["id"] for d in listed}
    assert api.get("/v1/dashboards", headers=analyst).status_code == 400  # must name the tenant
    for method, url, body in (("POST", "/v1/dashboards", {"name": "x"}),
                              ("PATCH", f"/v1/dashboards/{dashboard['id']}", {"name": "x"}),
                              ("DELETE", f"/v1/dashboards/{dashboard['id']}", None),
                              ("POST", "/v1/alerts/rules", RULE)):
        assert api.request(method, url, headers=analyst, params=named, json=body).status_code == 403

    renamed = ok(api.patch(f"/v1/dashboards/{dashboard['id']}", headers=admin, params=named, json={"name": "Ops"}))
    assert renamed["name"] == "Ops"
    producer = {"Authorization": "Bearer " + mint_token(settings, role="producer", tenants=[tenant],
                                                        ttl=timedelta(hours=1))}
    assert api.get("/v1/dashboards", headers=producer).status_code == 403
    assert api.get("/v1/dashboards").status_code == 401
    assert api.post("/v1/alerts/rules", json=RULE).status_code == 401


# --- refused input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://10.0.0.1/hook", "https://localhost/hook",
                                 "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://192.168.1.20/hook", "http://0.0.0.0/hook", "ftp://example.com/hook"])
def test_webhooks_to_internal_addresses_are_refused_on_create_and_change(api: TestClient, settings: Settings,
                                                                         url: str) -> None:
    headers = bearer(settings, new_tenant("cfg-hook"))
    created = api.post("/v1/alerts/rules", headers=headers, json={**RULE, "webhook_url": url})
    assert created.status_code == 400, created.text
    assert "webhook" in created.json()["detail"]
    rule = ok(api.post("/v1/alerts/rules", headers=headers, json=RULE), 201)
    changed = api.patch(f"/v1/alerts/rules/{rule['id']}", headers=headers, json={"webhook_url": url})
    assert changed.status_code == 400, changed.text
    assert ok(api.get(f"/v1/alerts/rules/{rule['id']}", headers=headers))["webhook_url"] is None


def test_a_private_webhook_is_accepted_only_when_the_setting_allows_it(stack: Context, settings: Settings) -> None:
    allowing = stack.settings.model_copy(update={"alert_webhook_allow_private": True})
    headers = bearer(settings, new_tenant("cfg-hook-allowed"))
    with TestClient(create_app(allowing)) as client:
        rule = ok(client.post("/v1/alerts/rules", headers=headers,
                              json={**RULE, "webhook_url": "http://127.0.0.1:9999/hook"}), 201)
    assert rule["webhook_url"] == "http://127.0.0.1:9999/hook"


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/v1/dashboards", {"name": "x", "widgets": [{**SERIES, "metric": "no_such_metric"}]}, "no_such_metric"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**SERIES, "group_by": ["no_such_dim"]}]}, "no_such_dim"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**SERIES, "granularity": "7m"}]}, "granularity"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**SERIES, "window": "8d"}]}, "window"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**SERIES, "timezone": "Mars/Olympus"}]}, "timezone"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**TOP, "by": "channel"}]}, "dimension"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**LIVE, "metric": "orders_placed"}]}, "metric"),
    ("/v1/dashboards", {"name": "x", "widgets": [{**LIVE, "visualisation": "line"}]}, "funnel"),
    ("/v1/dashboards", {"name": "x\u0000y"}, "NUL"),
    ("/v1/dashboards", {"name": ""}, "name"),
    ("/v1/dashboards", {"name": "x", "colour": "red"}, "colour"),
    ("/v1/alerts/rules", {**RULE, "metric": "no_such_metric"}, "no_such_metric"),
    ("/v1/alerts/rules", {**RULE, "metric": "active_users"}, "sketch"),
    ("/v1/alerts/rules", {**RULE, "dimensions": {"no_such_dim": "x"}}, "no_such_dim"),
    ("/v1/alerts/rules", {**RULE, "threshold": None}, "threshold"),
    ("/v1/alerts/rules", {**RULE, "condition": "between"}, "condition"),
    ("/v1/alerts/rules", {**RULE, "window_minutes": 10**12}, "window_minutes"),
])
def test_bad_bodies_are_400_naming_the_problem(api: TestClient, settings: Settings, path: str,
                                               body: dict[str, Any], named: str) -> None:
    response = api.post(path, headers=bearer(settings, new_tenant("cfg-bad")), json=body)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert named in detail, detail
    assert not [word for word in ENGINE_WORDS if word in detail]


def test_malformed_ids_are_400_and_unknown_ones_404(api: TestClient, settings: Settings) -> None:
    headers = bearer(settings, new_tenant("cfg-ids"))
    assert api.get("/v1/dashboards/not-a-uuid", headers=headers).status_code == 400
    assert api.get(f"/v1/dashboards/{uuid.uuid4()}", headers=headers).status_code == 404
    assert api.delete(f"/v1/alerts/rules/{uuid.uuid4()}", headers=headers).status_code == 404
    assert api.get("/v1/alerts/history", headers=headers, params={"before": "yesterday"}).status_code == 400


# --- a dashboard's data -----------------------------------------------------------------------------------------


@pytest.mark.needs("postgres", "trino", "pinot", "minio")
def test_the_data_call_reads_every_widget_as_its_endpoint_does(api: TestClient, settings: Settings) -> None:
    tenant = new_tenant("cfg-data")
    headers = bearer(settings, tenant)
    (default,) = ok(api.get("/v1/dashboards", headers=headers))["dashboards"]
    body = ok(api.get(f"/v1/dashboards/{default['id']}/data", headers=headers))
    assert body["tenant"] == tenant and body["dashboard"]["id"] == default["id"]
    widgets = body["widgets"]
    assert [w["widget"]["title"] for w in widgets] == [w.title for w in default_widgets()]
    for item in widgets:
        assert item["error"] is None, item
        widget, data = item["widget"], item["data"]
        assert data["tenant"] == tenant
        if widget["kind"] == "live":
            assert widget["live"] in data
        elif widget["kind"] == "series":
            # The same windows the series endpoint gives for the widget's period.
            again = ok(api.get(f"/v1/metrics/{widget['metric']}/series", headers=headers, params={
                "from": data["start"], "to": data["end"], "granularity": widget["granularity"]}))
            assert [w["start"] for w in again["windows"]] == [w["start"] for w in data["windows"]]
            assert [w["value"] for w in again["windows"]] == [w["value"] for w in data["windows"]]
        else:
            assert data["dimension"] == widget["by"] and data["metric"] == widget["metric"]
