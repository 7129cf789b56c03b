"""The product as `make run` leaves it: events posted through the ingest API are in Pinot within seconds
(the always-on streaming job); an hourly run triggered through Airflow's REST API for a chosen logical date,
as the scheduler would start it, rebuilds the past hour, registers the Delta tables and moves the seam; Trino's
seam view then equals an independent recount of what was posted, each minute from exactly one layer.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, TopicPartition

from lakepulse import archive
from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.batch.pinot import broker_rows
from lakepulse.batch.seam import production_seam_uri, read_seam
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.connect_sink import archived_offsets, offset_key
from lakepulse.platform.components.lake import expected_relations
from lakepulse.platform.components.trino import connect
from lakepulse.settings import Settings
from tests.stack_events import order, post, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.needs("ingest", "kafka", "connect", "minio", "pinot", "streaming", "trino",
                                "airflow-api", "airflow-scheduler", "airflow-dag-processor")]

PINOT_WAIT_S = 120  # bounded waits, not timing assertions: the measured times are printed
ARCHIVE_WAIT_S = 300  # Connect uploads an open file after 60 s (plus up to ~10 s of polling)
HOURLY_RUN_WAIT_S = 1800
REPO = Path(__file__).resolve().parents[2]
TICK_MINUTE = 5  # lakepulse_hourly's cron: "5 * * * *"


def pinot_orders(settings: Settings, tenant: str) -> tuple[int, float]:
    """orders_placed count and gross_sales sum of the tenant in Pinot (current upserted rows only)."""
    rows = broker_rows(settings.pinot_broker_url,
                       "SELECT metric, SUM(\"count\") AS n, SUM(\"sum\") AS s FROM metrics_minute "
                       f"WHERE tenant_id = '{tenant}' AND metric IN ('orders_placed', 'gross_sales') "
                       "GROUP BY metric LIMIT 10")
    by_metric = {r["metric"]: r for r in rows}
    return (int(by_metric.get("orders_placed", {}).get("n", 0)),
            float(by_metric.get("gross_sales", {}).get("s", 0.0)))


def archived_ids(settings: Settings, tenant: str, start: datetime, end: datetime) -> set[str]:
    table = archive.read_events(settings, start, end, columns=["event_id"], where=pc.field("tenant_id") == tenant)
    return set(table.column("event_id").to_pylist())


def end_offsets(settings: Settings) -> dict[str, int]:
    """events.raw's end offset per partition (keys as the archive cutoff names them)."""
    topic = settings.topic_events_raw
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {offset_key(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
    finally:
        consumer.close()


def committed_past(settings: Settings, targets: dict[str, int]) -> bool:
    """Whether the raw-archive connector has committed every partition up to `targets` (what plan_range's
    snapshot then includes: Connect commits an upload up to ~10 s after it lands)."""
    committed = archived_offsets(REPO, settings)
    return all(committed.get(key, 0) >= end for key, end in targets.items())


def free_tick(api: AirflowApi, now: datetime) -> datetime:
    """The newest scheduler tick (five past an hour) <= now without a run of the hourly DAG yet (the scheduler may
    have made one: a second run may not take its logical date)."""
    taken = {datetime.fromisoformat(r["logical_date"]) for r in api.runs(HOURLY_DAG) if r.get("logical_date")}
    tick = now.replace(minute=TICK_MINUTE, second=0, microsecond=0)
    if tick > now:
        tick -= timedelta(hours=1)
    while tick in taken:
        tick -= timedelta(hours=1)
    return tick


def seam_view_totals(settings: Settings, tenant: str) -> dict[tuple[str, str], tuple[int, float]]:
    """(layer, metric) → (count, sum) of the tenant's rows in Trino's seam view; values bound, never spliced."""
    conn = connect(settings, 120)
    try:
        cur = conn.cursor()
        cur.execute('SELECT layer, metric, sum("count"), sum("sum") FROM delta.lakepulse.metrics_minute_all '
                    "WHERE tenant_id = ? AND metric IN ('orders_placed', 'gross_sales') GROUP BY layer, metric",
                    [tenant])
        return {(r[0], r[1]): (int(r[2]), float(r[3] or 0.0)) for r in cur.fetchall()}
    finally:
        conn.close()


def test_posted_events_reach_pinot_and_trino_through_a_scheduled_style_hourly_run(stack: Context) -> None:
    settings = stack.settings
    tenant = f"e2e-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(stack))
    tick = free_tick(api, now)
    hour_end = tick.replace(minute=0)  # the run at tick rebuilds up to the hour before it
    # The hour the run rebuilds: late for the speed layer, so only the batch layer can count it.
    past = [order(tenant, hour_end - timedelta(minutes=55 - i), 10.0 + i, source="e2e-test") for i in range(30)]
    current = [order(tenant, now - timedelta(seconds=2 + i % 3), 5.5, source="e2e-test") for i in range(12)]
    resent = [past[3], past[7], current[0], current[5]]  # same event ids: no-ops downstream
    malformed = [b'{"event_id": "e2e-bad-1", "tenant_id": "' + tenant.encode() + b'"}', b"{not json"]

    answer = post(settings, [*past, *current, *resent, *malformed])
    accepted_at = time.monotonic()
    posted_up_to = end_offsets(settings)
    assert answer["accepted"] == len(past) + len(current) + len(resent), answer
    assert answer["rejected"] == len(malformed), answer

    # Independent recount of what was accepted: one per event id.
    unique = {e["event_id"]: e for e in [*past, *current]}
    recount_n, recount_sum = len(unique), sum(e["properties"]["amount"] for e in unique.values())

    # 1. The speed layer: the current orders are in Pinot within seconds.
    current_sum = sum(e["properties"]["amount"] for e in current)
    wait_for(lambda: pinot_orders(settings, tenant), (len(current), current_sum), PINOT_WAIT_S,
             "current orders in Pinot", 0.2)
    print(f"\naccepted → visible in Pinot: {time.monotonic() - accepted_at:.1f} s")

    # 2. The raw archive holds every accepted event once deduplicated (Connect uploads about once a minute).
    start, end = hour_end - timedelta(hours=1), now + timedelta(minutes=1)
    wait_for(lambda: archived_ids(settings, tenant, start, end), set(unique), ARCHIVE_WAIT_S,
             "event ids in the raw archive", 5)
    # ... and has committed them: the hourly run's snapshot is what Connect has committed when it plans.
    wait_for(lambda: committed_past(settings, posted_up_to), True, ARCHIVE_WAIT_S, "Connect's committed offsets", 2)
    archived_at = time.monotonic()
    print(f"accepted → archived and committed: {archived_at - accepted_at:.0f} s")

    # 3. An hourly run for the chosen logical date, as the scheduler would start it.
    run_id = api.trigger(HOURLY_DAG, {"lookback_hours": 2}, tick.isoformat())
    state = api.wait(HOURLY_DAG, run_id, HOURLY_RUN_WAIT_S,
                     on_change=lambda s, tasks: print(f"  hourly {run_id}: {s} {tasks}"))
    assert state == "success"
    # Logical date = the tick, as the scheduler's run at that tick: it rebuilt [hour_end - 1h - lookback, hour_end).
    assert datetime.fromisoformat(api.run(HOURLY_DAG, run_id)["logical_date"]) == tick
    print(f"archived → served by the batch layer: {time.monotonic() - archived_at:.0f} s; "
          f"accepted → in Trino's batch layer: {time.monotonic() - accepted_at:.0f} s")

    # 4. The seam moved past the hour (a later scheduled run may have moved it further), the tables are there.
    seam = read_seam(settings, production_seam_uri(settings))
    assert seam is not None and seam >= hour_end
    conn = connect(settings, 60)
    try:
        cur = conn.cursor()
        cur.execute("SHOW TABLES FROM delta.lakepulse")
        assert expected_relations() <= {r[0] for r in cur.fetchall()}
    finally:
        conn.close()

    # 5. Trino's seam view equals the recount, each minute from the layer the seam assigns it to.
    before = [e for e in unique.values() if datetime.fromisoformat(e["occurred_at"]) < seam]
    after = [e for e in unique.values() if datetime.fromisoformat(e["occurred_at"]) >= seam]
    totals = seam_view_totals(settings, tenant)
    served_n = sum(n for (_, metric), (n, _) in totals.items() if metric == "orders_placed")
    served_sum = sum(s for (_, metric), (_, s) in totals.items() if metric == "gross_sales")
    assert served_n == recount_n and served_sum == pytest.approx(recount_sum)
    assert totals.get(("batch", "orders_placed"), (0, 0.0))[0] == len(before)
    assert totals.get(("speed", "orders_placed"), (0, 0.0))[0] == len(after)
    assert totals.get(("batch", "gross_sales"), (0, 0.0))[1] == pytest.approx(
        sum(e["properties"]["amount"] for e in before))
