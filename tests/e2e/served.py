"""What the end-to-end tests share: traffic posted through the running ingest API, archived and committed, then
one hourly run triggered through Airflow's REST API for a free tick, as the scheduler would start it.

Two kinds of traffic go in: a handful of hand-made orders of one tenant (checked through Trino's seam view), and
a scenario of the project's generator (late, duplicate, out-of-order and malformed sends) over a few restaurants:
most of it in the hour the run rebuilds (too late for the speed layer, so only the batch layer counts it) and a
slice of the last minute (the speed layer's). The metrics API is checked against a recount of what was accepted.
One more order of a tenant of its own is six hours late: beyond the run's lookback, only the hourly run's late-data
loop can bring it into history.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
from confluent_kafka import Consumer, TopicPartition

from lakepulse import archive
from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.batch.pinot import broker_rows
from lakepulse.batch.seam import production_seam_uri, read_seam
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.connect_sink import archived_offsets, offset_key
from lakepulse.settings import Settings
from tests.stack_events import order, post, wait_for

PINOT_WAIT_S = 120  # bounded waits, not timing assertions: the measured times are printed
ARCHIVE_WAIT_S = 300  # Connect uploads an open file after 60 s (plus up to ~10 s of polling)
HOURLY_RUN_WAIT_S = 1800
REPO = Path(__file__).resolve().parents[2]
TICK_MINUTE = 5  # lakepulse_hourly's cron: "5 * * * *"
# The speed layer's slice stays inside the streaming watermark (2 minutes) even counted from the newest event.
LIVE_SLICE = timedelta(seconds=75)
POST_CHUNK = 2000
LATE_BY = timedelta(hours=6)  # the late order's lateness: beyond the run's lookback (2 h) and the speed layer's
LOOKBACK_HOURS = 2  # the lookback the e2e run is triggered with


def pinot_orders(settings: Settings, tenant: str) -> tuple[int, float]:
    """orders_placed count and gross_sales sum of the tenant in Pinot (current upserted rows only)."""
    rows = broker_rows(settings.pinot_broker_url,
                       "SELECT metric, SUM(\"count\") AS n, SUM(\"sum\") AS s FROM metrics_minute "
                       f"WHERE tenant_id = '{tenant}' AND metric IN ('orders_placed', 'gross_sales') "
                       "GROUP BY metric LIMIT 10")
    by_metric = {r["metric"]: r for r in rows}
    return (int(by_metric.get("orders_placed", {}).get("n", 0)),
            float(by_metric.get("gross_sales", {}).get("s", 0.0)))


def archived_ids(settings: Settings, tenants: set[str], start: datetime, end: datetime) -> set[str]:
    table = archive.read_events(settings, start, end, columns=["event_id"],
                                where=pc.field("tenant_id").isin(sorted(tenants)))
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


def free_tick(api: AirflowApi, now: datetime, avoid: datetime | None = None) -> datetime:
    """The newest scheduler tick (five past an hour) <= now without a run of the hourly DAG yet (the scheduler may
    have made one: a second run may not take its logical date), and, with `avoid`, whose normal range
    [hour - 1h - LOOKBACK_HOURS, hour) does not hold that moment (so only the late-data loop can rebuild it)."""
    taken = {datetime.fromisoformat(r["logical_date"]) for r in api.runs(HOURLY_DAG) if r.get("logical_date")}
    tick = now.replace(minute=TICK_MINUTE, second=0, microsecond=0)
    if tick > now:
        tick -= timedelta(hours=1)

    def covers(tick: datetime) -> bool:
        hour = tick.replace(minute=0)
        return avoid is not None and hour - timedelta(hours=1 + LOOKBACK_HOURS) <= avoid < hour

    while tick in taken or covers(tick):
        tick -= timedelta(hours=1)
    return tick


def scenario_lines(run_id: str, seed: int, start: datetime, seconds: float, rate: float, until: datetime,
                   lateness_s: float) -> list[bytes]:
    """The generator's sends (valid, late, duplicate, out-of-order and malformed) of [start, until)."""
    config = GeneratorConfig(rate=rate, duration_s=seconds, seed=seed, tenants=3, start=start, run_id=run_id,
                             late_fraction=0.05, lateness_s=lateness_s, duplicate_fraction=0.05,
                             out_of_order_fraction=0.1, disorder_s=5.0, malformed_fraction=0.02)
    lines = []
    for sent in generate_events(config):
        if sent.is_valid and datetime.fromisoformat(orjson.loads(sent.line)["occurred_at"]) >= until:
            continue  # a lifecycle step after the slice: it would be late for the speed layer
        lines.append(sent.line)
    return lines


def post_all(settings: Settings, lines: list[Any]) -> list[dict[str, Any]]:
    """Post in chunks; the events the ingest API accepted (parsed), in order, duplicates included."""
    accepted: list[dict[str, Any]] = []
    for i in range(0, len(lines), POST_CHUNK):
        chunk = lines[i:i + POST_CHUNK]
        answer = post(settings, chunk)
        for result in answer["results"]:
            if result["status"] == "accepted":
                line = chunk[result["index"]]
                accepted.append(orjson.loads(line) if isinstance(line, bytes) else line)
    return accepted


@dataclass(frozen=True)
class Served:
    """What went in and what the hourly run did."""

    tenant: str  # the hand-made orders' tenant
    past: list[dict[str, Any]]  # its orders in the rebuilt hour
    current: list[dict[str, Any]]  # its orders of the last seconds
    resent: list[dict[str, Any]]
    malformed: list[bytes]
    answer: dict[str, Any]  # the ingest API's answer to the hand-made post
    scenario_prefix: str  # the generator's restaurants: <prefix>rest-0001...
    scenario_sent: int  # lines the generator sent (malformed included)
    scenario: list[dict[str, Any]]  # the scenario's accepted events (duplicates included)
    tick: datetime
    hour_end: datetime
    run_state: str
    run_logical_date: datetime
    seam: datetime | None
    accepted_at: float
    hourly_run_id: str = ""  # the Airflow run (its tasks' XComs tell what it rebuilt)
    late: dict[str, Any] | None = None  # the order posted LATE_BY late, of a tenant of its own
    late_answer: dict[str, Any] | None = None  # the ingest API's answer to it
    late_posted_at: datetime | None = None  # when it was posted (wall clock)


def serve(ctx: Context) -> Served:
    """Post both kinds of traffic, wait until Pinot shows the hand-made current orders and Connect has archived
    and committed everything, then trigger the hourly run for a free tick and wait for it."""
    settings = ctx.settings
    tenant = f"e2e-{uuid.uuid4().hex[:10]}"
    run_id = f"e2g{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(ctx))
    late = order(f"{tenant}-late", now - LATE_BY, 12.5, source="e2e-test")
    tick = free_tick(api, now, avoid=now - LATE_BY)
    hour_end = tick.replace(minute=0)  # the run at tick rebuilds up to the hour before it
    # The hour the run rebuilds: late for the speed layer, so only the batch layer can count it.
    past = [order(tenant, hour_end - timedelta(minutes=55 - i), 10.0 + i, source="e2e-test") for i in range(30)]
    current = [order(tenant, now - timedelta(seconds=2 + i % 3), 5.5, source="e2e-test") for i in range(12)]
    resent = [past[3], past[7], current[0], current[5]]  # same event ids: no-ops downstream
    malformed = [b'{"event_id": "e2e-bad-1", "tenant_id": "' + tenant.encode() + b'"}', b"{not json"]

    # The generator's restaurants: 45 minutes of the rebuilt hour, then the last 75 seconds.
    history = scenario_lines(run_id, 7, hour_end - timedelta(minutes=50), 45 * 60, 1.0,
                             hour_end - timedelta(minutes=2), 120)
    live_start = datetime.now(UTC) - LIVE_SLICE
    live = scenario_lines(run_id, 8, live_start, LIVE_SLICE.total_seconds(), 6.0, datetime.now(UTC), 20)
    scenario = post_all(settings, [*history, *live])

    late_posted_at = datetime.now(UTC)
    late_answer = post(settings, [late])
    answer = post(settings, [*past, *current, *resent, *malformed])
    accepted_at = time.monotonic()
    posted_up_to = end_offsets(settings)

    # 1. The speed layer: the current orders are in Pinot within seconds.
    current_sum = sum(e["properties"]["amount"] for e in current)
    wait_for(lambda: pinot_orders(settings, tenant), (len(current), current_sum), PINOT_WAIT_S,
             "current orders in Pinot", 0.2)
    print(f"\naccepted → visible in Pinot: {time.monotonic() - accepted_at:.1f} s")

    # 2. The raw archive holds every accepted event once deduplicated (Connect uploads about once a minute).
    unique = {e["event_id"] for e in [*past, *current, *scenario]}
    tenants = {tenant, *(e["tenant_id"] for e in scenario)}
    start, end = hour_end - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1)
    wait_for(lambda: archived_ids(settings, tenants, start, end), unique, ARCHIVE_WAIT_S,
             "event ids in the raw archive", 5)
    late_at = datetime.fromisoformat(late["occurred_at"])
    wait_for(lambda: archived_ids(settings, {late["tenant_id"]}, late_at - timedelta(minutes=1),
                                  late_at + timedelta(minutes=1)), {late["event_id"]}, ARCHIVE_WAIT_S,
             "the late order in the raw archive", 5)
    # ... and has committed them: the hourly run's snapshot is what Connect has committed when it plans.
    wait_for(lambda: committed_past(settings, posted_up_to), True, ARCHIVE_WAIT_S, "Connect's committed offsets", 2)
    archived_at = time.monotonic()
    print(f"accepted → archived and committed: {archived_at - accepted_at:.0f} s")

    # 3. An hourly run for the chosen logical date, as the scheduler would start it.
    run_id_af = api.trigger(HOURLY_DAG, {"lookback_hours": LOOKBACK_HOURS}, tick.isoformat())
    state = api.wait(HOURLY_DAG, run_id_af, HOURLY_RUN_WAIT_S,
                     on_change=lambda s, tasks: print(f"  hourly {run_id_af}: {s} {tasks}"))
    print(f"archived → served by the batch layer: {time.monotonic() - archived_at:.0f} s; "
          f"accepted → in Trino's batch layer: {time.monotonic() - accepted_at:.0f} s")
    return Served(
        tenant=tenant, past=past, current=current, resent=resent, malformed=malformed, answer=answer,
        scenario_prefix=f"{run_id}-", scenario_sent=len(history) + len(live), scenario=scenario,
        tick=tick, hour_end=hour_end, run_state=state,
        run_logical_date=datetime.fromisoformat(api.run(HOURLY_DAG, run_id_af)["logical_date"]),
        seam=read_seam(settings, production_seam_uri(settings)), accepted_at=accepted_at,
        hourly_run_id=run_id_af, late=late, late_answer=late_answer, late_posted_at=late_posted_at,
    )
