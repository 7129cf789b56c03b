"""`/v1/ops` on the real stack: the overview's every part holds the stack's own values (checked against the sources
read independently), late events and a dead letter sent now show up in their counts, restaurant tokens get 403,
analysts read but cannot start a backfill, and bad backfill ranges are 400 without starting anything.

The app runs in-process (TestClient) with its real readers; nothing is mocked. No backfill is started here (the
browser test starts one through the page).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trino.dbapi
from fastapi.testclient import TestClient

from lakepulse.api.app import create_app
from lakepulse.api.operations import floor_hour
from lakepulse.auth.tokens import mint_token
from lakepulse.batch.seam import production_seam_uri, read_seam
from lakepulse.platform.components.airflow import airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.connect_sink import connect_group, connector_config
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings
from tests.integration.conftest import _wait_for
from tests.integration.ingest_fixtures import free_port
from tests.stack_events import order, post, rfc3339

NEEDS = ("kafka", "connect", "pinot", "trino", "minio", "ingest", "streaming", "airflow-api", "airflow-scheduler")
pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS)]

# A bound, not a timing assertion: late events come from the streaming job's late-events query (10 s trigger).
COUNTED_WAIT_S = 240
LATE_EVENTS = 3
PARTS = ("services", "kafka_lags", "freshness", "archive", "hourly", "seam", "late_events", "dead_letters",
         "reconcile")
OVERVIEW = "/v1/ops/overview"
BACKFILLS = "/v1/ops/backfills"


def bearer(settings: Settings, tenant: str | None = None, role: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, role=role, ttl=timedelta(hours=1))}"}


@pytest.fixture(scope="module")
def api(ctx: Context) -> Iterator[TestClient]:
    """The metrics app in-process for the whole module (its late/dead-letter counts are read once, then kept up)."""
    _wait_for(ctx, set(NEEDS))
    with TestClient(create_app(ctx.settings)) as client:
        yield client


def airflow_runs(settings: Settings, ctx: Context, dag_id: str, limit: int) -> list[dict[str, Any]]:
    """The DAG's newest runs straight from Airflow's REST API (newest first, as the overview orders them)."""
    from lakepulse.batch.airflow_api import AirflowApi

    airflow = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(ctx))
    return list(airflow._call("GET", f"/dags/{dag_id}/dagRuns",
                              params={"order_by": "-run_after", "limit": limit})["dag_runs"])


def trino_count(settings: Settings, metric: str | None, start: datetime, end: datetime) -> tuple[int, int]:
    """Delta's positive minute rows of `metric` (None: of every metric) in [start, end) and their summed count,
    read directly."""
    conn = trino.dbapi.connect(host=settings.trino_url, user=settings.trino_user, source="test-ops")
    try:
        cursor = conn.cursor()
        cursor.execute('SELECT count(*), sum("count") FROM delta.lakepulse.metrics_minute WHERE '
                       'coalesce(?, metric) = metric AND window_start >= ? AND window_start < ? AND "count" > 0',
                       [metric, start, end])
        rows, total = cursor.fetchall()[0]
        return int(rows), int(total or 0)
    finally:
        conn.close()


def row_of(part: dict[str, Any], **wanted: str) -> dict[str, Any] | None:
    return next((r for r in part.get("rows", []) if all(r.get(k) == v for k, v in wanted.items())), None)


def test_restaurant_tokens_get_403_from_every_operations_route(api: TestClient, settings: Settings) -> None:
    headers = bearer(settings, tenant="demo-rest-0001")
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=2)
    answers = [
        api.get(OVERVIEW, headers=headers),
        api.get(BACKFILLS, headers=headers),
        api.get(f"{BACKFILLS}/manual__x", headers=headers),
        api.post(BACKFILLS, headers=headers, json={"from": rfc3339(hour), "to": rfc3339(hour + timedelta(hours=1))}),
        api.get("/app/operations", headers=headers),
    ]
    assert [a.status_code for a in answers] == [403] * 5, [a.text for a in answers]
    assert answers[0].json() == {"detail": "the operations API is for the analyst and admin roles"}
    assert "for the analyst and admin roles" in answers[4].text  # the page says why


def test_analyst_reads_but_cannot_start_a_backfill(api: TestClient, settings: Settings, ctx: Context) -> None:
    analyst = bearer(settings, role="analyst")
    before = [r["dag_run_id"] for r in airflow_runs(settings, ctx, "lakepulse_backfill", 5)]
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=3)
    body = {"from": rfc3339(hour), "to": rfc3339(hour + timedelta(hours=1)), "metrics": ["orders_placed"]}
    refused = api.post(BACKFILLS, headers=analyst, json=body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"].startswith("starting a backfill needs the admin role")
    listed = api.get(BACKFILLS, headers=analyst)
    assert listed.status_code == 200, listed.text
    assert [r["run_id"] for r in listed.json()["runs"]][:5] == before  # nothing was started
    assert api.get("/app/operations", headers=analyst).status_code == 200


@pytest.mark.parametrize(("body", "reason"), [
    ({"from": "{h0}:30:00Z", "to": "{h1}:00:00Z"}, "from must be a whole hour"),
    ({"from": "{h0}:00:00Z", "to": "{h1}:00:01Z"}, "to must be a whole hour"),
    ({"from": "{h1}:00:00Z", "to": "{h0}:00:00Z"}, "to must be after from"),
    ({"from": "{h0}:00:00Z", "to": "{h0}:00:00Z"}, "to must be after from"),
    ({"from": "{now}:00:00Z", "to": "{next}:00:00Z"}, "to is in the future or inside the current hour"),
    ({"from": "{week}:00:00Z", "to": "{h1}:00:00Z"}, "a backfill spans at most 168 hours"),
    ({"from": "{h0}:00:00Z", "to": "{h1}:00:00Z", "metrics": ["no_such_metric"]}, "metrics: a name is not in"),
    ({"from": "{h0}:00:00", "to": "{h1}:00:00Z"}, "body.from: Input should have timezone info"),
    ({"from": "{h0}:00:00Z"}, "body.to: Field required"),
    ({"from": "{h0}:00:00Z", "to": "{h1}:00:00Z", "lake_root": "s3a://elsewhere"}, "body.lake_root: Extra inputs"),
])
def test_bad_backfill_ranges_are_400_and_start_nothing(api: TestClient, settings: Settings, ctx: Context,
                                                      body: dict[str, Any], reason: str) -> None:
    now = floor_hour(datetime.now(UTC))
    hours = {"h0": now - timedelta(hours=3), "h1": now - timedelta(hours=2), "now": now,
             "next": now + timedelta(hours=1), "week": now - timedelta(hours=2 + 169)}
    filled = {k: (v.format(**{n: h.strftime("%Y-%m-%dT%H") for n, h in hours.items()}) if isinstance(v, str) else v)
              for k, v in body.items()}
    before = [r["dag_run_id"] for r in airflow_runs(settings, ctx, "lakepulse_backfill", 5)]
    answer = api.post(BACKFILLS, headers=bearer(settings, role="admin"), json=filled)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(reason), answer.json()
    assert [r["dag_run_id"] for r in airflow_runs(settings, ctx, "lakepulse_backfill", 5)] == before


def test_overview_holds_the_stacks_own_values(api: TestClient, settings: Settings, ctx: Context) -> None:
    rid = uuid.uuid4().hex[:8]
    tenant, source = f"ops-{rid}", f"ops-test-{rid}"
    # Two hours old: far behind the speed layer's watermark, so each is a late event of (tenant, source).
    late = [order(tenant, datetime.now(UTC) - timedelta(hours=2, seconds=i), 10.0 + i, source=source)
            for i in range(LATE_EVENTS)]
    refused = dict(order(tenant, datetime.now(UTC), 1.0, source=source))
    refused[f"ops_{rid}"] = True  # an unknown field: a dead letter with a reason of its own
    answer = post(settings, [*late, refused])
    assert answer["accepted"] == LATE_EVENTS and answer["rejected"] == 1, answer
    reason = answer["results"][-1]["reason"]
    assert reason == f"ops_{rid}: unknown field"

    admin = bearer(settings, role="admin")
    seams = {read_seam(settings, production_seam_uri(settings))}
    deadline = time.monotonic() + COUNTED_WAIT_S
    while True:
        response = api.get(OVERVIEW, headers=admin)
        assert response.status_code == 200, response.text
        overview = response.json()
        late_row = row_of(overview["late_events"], tenant_id=tenant, source=source)
        dead_row = row_of(overview["dead_letters"], reason=reason)
        down = {part: overview[part].get("reason") for part in PARTS if not overview[part]["available"]}
        if late_row is not None and dead_row is not None and late_row["last_hour"] == LATE_EVENTS and not down:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"after {COUNTED_WAIT_S} s: late {late_row}, dead letter {dead_row}, unavailable {down}")
        time.sleep(5)

    assert late_row == {"tenant_id": tenant, "source": source, "last_hour": LATE_EVENTS, "last_day": LATE_EVENTS}
    assert dead_row == {"reason": reason, "stage": "ingest", "last_hour": 1, "last_day": 1}
    assert overview["late_events"]["totals"]["last_day"] >= LATE_EVENTS
    assert overview["late_events"]["topic"] == settings.topic_events_late

    # Services: supervisord's own view of the same programs.
    processes = Supervisor(ctx).processes()
    services = {s["name"]: s for s in overview["services"]["services"]}
    assert set(services) == set(processes)
    for name in ("kafka", "trino", "pinot", "streaming", "airflow-api"):
        assert services[name]["state"] == "RUNNING"
        assert services[name]["pid"] == processes[name]["pid"]
        assert services[name]["uptime_s"] > 0

    # Kafka lags: the raw archive's group, every streaming query, every Pinot table.
    connector, config = connector_config(ctx.repo, settings)
    consumers = {(c["kind"], c["consumer"]): c for c in overview["kafka_lags"]["consumers"]}
    archive_group = consumers[("consumer group", connect_group(connector))]
    assert archive_group["topic"] == config["topics"] and archive_group["lag"] >= 0
    progress = httpx.get("http://127.0.0.1:8011/progress", timeout=10).json()
    assert {name for kind, name in consumers if kind == "streaming query"} == set(progress)
    tables = httpx.get(f"{settings.pinot_controller_url}/tables", timeout=10).json()["tables"]
    assert {name for kind, name in consumers if kind == "Pinot table"} == set(tables)
    assert all(isinstance(c["lag"], int) and c["lag"] >= 0 for c in consumers.values())

    # Freshness: the streaming job has read our events; Pinot serves minutes.
    streaming = overview["freshness"]["streaming"]
    assert streaming["available"] and streaming["ready"] is True
    assert isinstance(streaming["freshness_s"], float) and streaming["freshness_s"] >= 0
    assert {q["query"] for q in streaming["queries"]} == set(progress)
    assert overview["freshness"]["pinot"]["newest_minute"] is not None

    # Archive: the connector runs; what it has not committed is a count of records.
    archive = overview["archive"]
    assert archive["connector"] == connector and archive["connector_state"] == "RUNNING"
    assert archive["records_behind"] >= 0 and archive["topic"] == settings.topic_events_raw

    # Hourly runs and the seam: Airflow's and S3's own answers (read again after the overview: an hourly run may have
    # started or moved the seam in between).
    shown = [r["run_id"] for r in overview["hourly"]["runs"]]
    newest = [r["dag_run_id"] for r in airflow_runs(settings, ctx, "lakepulse_hourly", len(shown) + 1)]
    assert shown and shown in (newest[:len(shown)], newest[1:len(shown) + 1]), (shown, newest)
    assert all(r["tasks"] for r in overview["hourly"]["runs"])
    seams.add(read_seam(settings, production_seam_uri(settings)))
    assert overview["seam"]["seam"] in {rfc3339(s) for s in seams if s is not None}, (overview["seam"], seams)
    seam = datetime.fromisoformat(overview["seam"]["seam"])

    # Reconcile: the latest final hour, Delta's numbers as Trino gives them.
    reconcile = overview["reconcile"]
    assert reconcile["range"] == [rfc3339(seam - timedelta(hours=1)), rfc3339(seam)]
    by_metric = {m["metric"]: m for m in reconcile["metrics"]}
    if not by_metric:  # e.g. a fresh stack whose latest final hour saw no events: Delta must agree
        assert trino_count(settings, None, seam - timedelta(hours=1), seam) == (0, 0), reconcile
        assert reconcile["differences"] == 0
        return
    metric = max(by_metric, key=lambda m: by_metric[m]["delta_rows"])
    assert (by_metric[metric]["delta_rows"], by_metric[metric]["delta_count"]) == trino_count(
        settings, metric, seam - timedelta(hours=1), seam)
    assert reconcile["differences"] == sum(1 for m in by_metric.values() if m["differs"])


def test_backfill_runs_are_airflows_and_unknown_ones_are_404(api: TestClient, settings: Settings,
                                                             ctx: Context) -> None:
    analyst = bearer(settings, role="analyst")
    listed = api.get(BACKFILLS, headers=analyst)
    assert listed.status_code == 200, listed.text
    runs = listed.json()["runs"]
    airflow = airflow_runs(settings, ctx, "lakepulse_backfill", 10)
    assert [r["run_id"] for r in runs] == [r["dag_run_id"] for r in airflow]
    if airflow:
        newest = api.get(f"{BACKFILLS}/{quote(runs[0]['run_id'], safe='')}", headers=analyst)
        assert newest.status_code == 200, newest.text
        run = newest.json()
        assert run["run_id"] == airflow[0]["dag_run_id"] and run["range"] == [airflow[0]["conf"].get("start"),
                                                                              airflow[0]["conf"].get("end")]
        assert [t["task_id"] for t in run["tasks"]] == ["rebuild"]
        assert run["progress"]["total"] == 1
    missing = api.get(f"{BACKFILLS}/manual__2000-01-01T00:00:00+00:00", headers=analyst)
    assert missing.status_code == 404 and missing.json() == {"detail": "No backfill run with this id"}
    malformed = api.get(f"{BACKFILLS}/{quote('bad id/..', safe='')}", headers=analyst)
    assert malformed.status_code in (400, 404), malformed.text


def test_every_part_says_unavailable_when_its_sources_do_not_answer(settings: Settings, tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Real failures, not mocks: every endpoint is a port nothing listens on, the state directory an empty one.
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LAKEPULSE_STREAMING_METRICS_PORT", str(free_port()))
    nowhere = settings.model_copy(update={
        "kafka_bootstrap": f"127.0.0.1:{free_port()}", "kafka_connect_url": dead, "pinot_controller_url": dead,
        "pinot_broker_url": dead, "trino_url": dead, "s3_endpoint": dead, "airflow_url": dead,
        "state_dir": tmp_path, "api_rate_limit_per_s": 0.0})
    with TestClient(create_app(nowhere)) as client:
        answer = client.get(OVERVIEW, headers=bearer(nowhere, role="analyst"))
        assert answer.status_code == 200, answer.text
        overview = answer.json()
        assert {part: overview[part]["available"] for part in PARTS} == {part: False for part in PARTS}
        for part in PARTS:
            reason = overview[part]["reason"]
            assert reason and not any(word in reason for word in ("Traceback", "SELECT", "127.0.0.1")), reason
        assert overview["services"]["reason"].startswith("supervisord is not running")
        assert overview["hourly"]["reason"].startswith("no Airflow password")
        # The backfill routes answer 503 (Airflow unreachable), not 500.
        runs = client.get(BACKFILLS, headers=bearer(nowhere, role="analyst"))
        assert runs.status_code == 503 and runs.headers["retry-after"], runs.text
