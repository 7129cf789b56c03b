"""Batch layer on the real stack: raw archive (with late and duplicate sends) → Delta → quality gate → Pinot
repair → seam; reruns change nothing; a broken input stops at the gate; Airflow's REST API rebuilds a range.

Everything lives under an isolated lake prefix and Trino schema per module run; Pinot rows use tenant ids
prefixed with that run's id.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyspark.sql.functions as F
import pytest

from lakepulse.batch.pinot import minute_rows
from lakepulse.batch.quality import QualityError
from lakepulse.batch.sample import raw_rows
from lakepulse.batch.seam import TRINO_TABLES, read_seam, write_seam
from lakepulse.catalog import get_catalog
from lakepulse.generator.scenario import GeneratorConfig
from lakepulse.platform.components.trino import query
from lakepulse.settings import Settings
from spark_jobs import bronze, gold, pipeline, reconcile
from spark_jobs.common import EVENTS, GOLD_TABLES, ORDERS, USER_ACTIVITY, Lake, TimeRange
from spark_jobs.raw import RAW_SCHEMA

pytestmark = pytest.mark.integration

RECOUNTED = ("events", "orders_placed", "gross_sales", "items_sold", "orders_completed", "active_users")
DIMS = {
    "events": ("event_type", "country", "device"),
    "orders_placed": ("channel", "country", "device"),
    "gross_sales": ("channel", "country"),
    "orders_completed": (),
    "active_users": ("country", "device"),
}
CONVERGE_S = 180


def hour_in_pinot_retention() -> datetime:
    """A whole past hour well inside Pinot's retention."""
    return (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)


def write_raw(spark: Any, rows: list[dict[str, Any]], raw_root: str) -> None:
    """Land rows the way the archive sink does: Parquet under event_date=/event_hour=."""
    df = spark.createDataFrame(rows, RAW_SCHEMA)
    (df.withColumn("event_date", F.date_format("occurred_at", "yyyy-MM-dd"))
       .withColumn("event_hour", F.date_format("occurred_at", "HH"))
       .coalesce(1).write.mode("append").partitionBy("event_date", "event_hour").parquet(raw_root))


def isolated_lake(settings: Settings, rid: str) -> Lake:
    """A lake of its own (raw, Delta, seam object) and a Trino schema of its own."""
    return replace(Lake.from_settings(settings, f"s3a://{settings.s3_bucket}/tmp/it_batch_{rid}"),
                   trino_schema=f"delta.it_batch_{rid}")


def recount(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, datetime], tuple[int, float | None]]:
    """Independent recount from the raw rows in plain Python: dedupe by event_id, then count/sum per minute."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r["event_id"], r)
    out: dict[tuple[str, str, str, datetime], list[Any]] = defaultdict(lambda: [0, None])

    def add(tenant: str, metric: str, dims: dict[str, Any], at: datetime, value: float | None = None) -> None:
        key = "|".join(f"{k}={'' if dims[k] is None else dims[k]}" for k in sorted(dims))
        cell = out[(tenant, metric, key, at.replace(second=0, microsecond=0))]
        cell[0] += 1
        if value is not None:
            cell[1] = (cell[1] or 0.0) + value

    for r in seen.values():
        p = orjson.loads(r["properties"])
        t, at, kind = r["tenant_id"], r["occurred_at"], r["event_type"]
        add(t, "events", {"event_type": kind, "country": p.get("country"), "device": p.get("device")}, at)
        if p.get("user_id"):
            add(t, "active_users", {"country": p.get("country"), "device": p.get("device")}, at)
        if kind == "order_placed":
            add(t, "orders_placed", {k: p.get(k) for k in DIMS["orders_placed"]}, at)
            add(t, "gross_sales", {k: p.get(k) for k in DIMS["gross_sales"]}, at, float(p["amount"]))
            for item in p.get("items", []):
                add(t, "items_sold", {"item_id": item["item_id"], "category": item["category"]}, at,
                    float(item["quantity"]))
        if kind == "order_status_changed" and p.get("status") == "delivered":
            add(t, "orders_completed", {}, at)
    return {k: (v[0], v[1]) for k, v in out.items()}


def recount_users(rows: list[dict[str, Any]]) -> dict[tuple[str, date, str, str], set[str]]:
    """Independent recount of active users from the raw rows: the first copy of each event_id, events with a
    user_id, per (tenant, UTC day, country, device) ("" for a missing dimension) → the set of user ids."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r["event_id"], r)
    users: dict[tuple[str, date, str, str], set[str]] = defaultdict(set)
    for r in seen.values():
        p = orjson.loads(r["properties"])
        if p.get("user_id"):
            day = r["occurred_at"].astimezone(UTC).date()
            users[(r["tenant_id"], day, p.get("country") or "", p.get("device") or "")].add(p["user_id"])
    return users


def delta_minutes(spark: Any, lake: Lake, metrics: tuple[str, ...]) -> dict[tuple[str, str, str, datetime],
                                                                             tuple[int, float | None]]:
    rows = (spark.read.format("delta").load(lake.path(GOLD_TABLES["minute"])).where(F.col("metric").isin(*metrics))
            .select("tenant_id", "metric", "dims_key", "window_start", "count", "sum").collect())
    return {(r[0], r[1], r[2], r[3].replace(tzinfo=UTC)): (r[4], r[5]) for r in rows}


def same(expected: dict[Any, tuple[int, float | None]], actual: dict[Any, tuple[int, float | None]]) -> list[str]:
    """Differences (counts exactly, sums to 1e-6), as readable lines."""
    problems = [f"missing {k}" for k in expected.keys() - actual.keys()]
    problems += [f"unexpected {k}" for k in actual.keys() - expected.keys()]
    for k in expected.keys() & actual.keys():
        (c1, s1), (c2, s2) = expected[k], actual[k]
        if c1 != c2 or (s1 is None) != (s2 is None) or (s1 is not None and abs(s1 - (s2 or 0)) > 1e-6):
            problems.append(f"{k}: expected {expected[k]}, got {actual[k]}")
    return sorted(problems)


def snapshot(spark: Any, lake: Lake) -> dict[str, list[Any]]:
    """Every row of every batch table (maps dropped: not comparable), sorted."""
    out = {}
    for spec in (EVENTS, *GOLD_TABLES.values(), ORDERS, USER_ACTIVITY):
        df = spark.read.format("delta").load(lake.path(spec))
        out[spec.name] = sorted(tuple(r) for r in df.drop("dims").collect())
    return out


def pinot_minutes(settings: Settings, rng: TimeRange, prefix: str) -> dict[Any, tuple[int, float | None]]:
    rows = minute_rows(settings.pinot_broker_url, rng.start, rng.end, prefix)
    return {(r["tenant_id"], r["metric"], r["dims_key"], datetime.fromtimestamp(r["window_start"] / 1000, UTC)):
            (r["count"], r["sum"]) for r in rows if r["metric"] in RECOUNTED and r["count"]}


def eventually_equal(settings: Settings, rng: TimeRange, prefix: str, expected: dict[Any, Any]) -> None:
    """Pinot's rows for the run's tenants equal `expected` within CONVERGE_S (sums of count metrics: Pinot
    stores 0.0 for null)."""
    wanted = {k: (c, s if s is not None else 0.0) for k, (c, s) in expected.items()}
    deadline = time.monotonic() + CONVERGE_S
    while True:
        problems = same(wanted, pinot_minutes(settings, rng, prefix))
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Pinot did not converge: {len(problems)} differences, e.g. {problems[:5]}")
        time.sleep(5)


@pytest.fixture(scope="module")
def batch(spark: Any, settings: Settings) -> Iterator[dict[str, Any]]:
    """One hour of generated traffic (late and duplicate sends) landed in an isolated archive."""
    spark.conf.set("spark.databricks.delta.snapshotPartitions", "2")  # small tables: few log-replay tasks
    rid = uuid.uuid4().hex[:8]
    lake = isolated_lake(settings, rid)
    start = hour_in_pinot_retention()
    config = GeneratorConfig(rate=1.0, duration_s=3600, seed=11, tenants=2, start=start, late_fraction=0.05,
                             lateness_s=300, duplicate_fraction=0.05, out_of_order_fraction=0.05,
                             malformed_fraction=0.01, run_id=f"b{rid}")
    # Late sends stay in their event hour; events of the next hour are left out of the archive.
    rows = [r for r in raw_rows(config) if r["occurred_at"] < start + timedelta(hours=1)]
    write_raw(spark, rows, lake.raw_root)
    yield {"lake": lake, "rows": rows, "range": TimeRange(start, start + timedelta(hours=1)),
           "prefix": f"b{rid}-"}
    schema = lake.trino_schema
    views = ["metrics_minute_all", *[f"metric_{m.name}" for m in get_catalog().metrics], "active_users_daily",
             "active_users_daily_by_dims"]
    for stmt in [f"DROP VIEW IF EXISTS {schema}.{v}" for v in views] + [
            f"CALL delta.system.unregister_table('{schema.split('.')[1]}', '{t}')" for t in TRINO_TABLES] + [
            f"DROP SCHEMA IF EXISTS {schema}"]:
        with contextlib.suppress(Exception):  # best-effort cleanup of the test's schema
            query(settings, stmt, 60)


@pytest.mark.needs("minio", "kafka", "pinot", "trino")
def test_hourly_run_equals_recount_and_pinot_converges(spark: Any, settings: Settings, batch: dict[str, Any],
                                                       stack: object) -> None:
    lake, rng, rows = batch["lake"], batch["range"], batch["rows"]
    assert len(rows) > len({r["event_id"] for r in rows}) > 1000  # duplicates are really in the archive
    assert any(r["received_at"] - r["occurred_at"] > timedelta(minutes=4) for r in rows)  # and late sends

    result = pipeline.run(spark, lake, rng, settings, batch["prefix"])

    expected = recount(rows)
    assert same(expected, delta_minutes(spark, lake, RECOUNTED)) == []
    assert result["bronze"]["numTargetRowsInserted"] == len({r["event_id"] for r in rows})
    # Hours and the day are rollups of exactly these minutes.
    hour_totals = defaultdict(int)
    for (tenant, metric, _key, _at), (count, _sum) in expected.items():
        hour_totals[(tenant, metric)] += count
    hour_df = spark.read.format("delta").load(lake.path(GOLD_TABLES["hour"])).where(F.col("metric").isin(*RECOUNTED))
    got = {(r[0], r[1]): r[2] for r in hour_df.groupBy("tenant_id", "metric").agg(F.sum("count")).collect()}
    assert got == dict(hour_totals)
    # Pinot had no rows for these tenants: reconcile reported and republished every one of them.
    assert result["reconcile"]["differences"]["missing_in_pinot"] == result["reconcile"]["delta_rows"] > 0
    assert result["seam"] == {**result["seam"], "moved": True, "seam": rng.end.isoformat()}
    assert read_seam(settings, lake.seam_uri) == rng.end
    eventually_equal(settings, rng, batch["prefix"], expected)
    # The seam view serves the whole (now past-the-seam) hour from Delta, each minute once.
    total = query(settings, f"SELECT sum(\"count\") FROM {lake.trino_schema}.metrics_minute_all WHERE metric = "
                            f"'events' AND tenant_id LIKE '{batch['prefix']}%'", 120)
    assert total == [[len({r["event_id"] for r in rows})]]
    assert_exact_active_users(settings, lake, rng, batch["prefix"], rows)


def assert_exact_active_users(settings: Settings, lake: Lake, rng: TimeRange, prefix: str,
                              rows: list[dict[str, Any]]) -> None:
    """Trino's active-user views and user_activity_daily give exactly the recount's distinct users."""
    users = recount_users(rows)
    per_day: dict[tuple[str, date], set[str]] = defaultdict(set)
    for (tenant, day, _country, _device), ids in users.items():
        per_day[(tenant, day)] |= ids
    assert len(per_day) >= 2 and min(len(ids) for ids in per_day.values()) > 10  # real numbers to compare
    schema = lake.trino_schema
    daily = query(settings, f"SELECT tenant_id, activity_date, active_users, is_final FROM {schema}.active_users_daily "
                            f"WHERE tenant_id LIKE '{prefix}%'", 120)
    # The seam is the range's end: a day is final once it ends at or before it.
    assert {(r[0], r[1]): (r[2], r[3]) for r in daily} == {
        k: (len(ids), k[1] < rng.end.date()) for k, ids in per_day.items()}
    by_dims = query(settings, f"SELECT tenant_id, activity_date, country, device, active_users FROM "
                              f"{schema}.active_users_daily_by_dims WHERE tenant_id LIKE '{prefix}%'", 120)
    assert {tuple(r[:4]): r[4] for r in by_dims} == {k: len(ids) for k, ids in users.items()}
    # Any day range of one tenant, straight from the table: distinct over the range, not a sum of days.
    tenant = min(t for t, _ in per_day)
    first, last = min(d for t, d in per_day if t == tenant), max(d for t, d in per_day if t == tenant)
    in_range = query(settings, f"SELECT count(DISTINCT user_id) FROM {schema}.user_activity_daily WHERE tenant_id = "
                               f"'{tenant}' AND activity_date BETWEEN DATE '{first}' AND DATE '{last}'", 120)
    assert in_range == [[len(set().union(*[ids for (t, _), ids in per_day.items() if t == tenant]))]]


@pytest.mark.needs("minio", "kafka", "pinot")
def test_rerun_changes_nothing_and_reconcile_repairs_drift(spark: Any, settings: Settings,
                                                           batch: dict[str, Any], stack: object) -> None:
    lake, rng = batch["lake"], batch["range"]
    before = snapshot(spark, lake)
    assert bronze.run(spark, lake, rng) == {"numTargetRowsInserted": 0, "numTargetRowsUpdated": 0,
                                            "numTargetRowsDeleted": 0}
    for table, counts in gold.run(spark, lake, rng).items():
        assert set(counts.values()) == {0}, f"{table}: {counts}"
    assert snapshot(spark, lake) == before

    # Drift the speed layer: one row with a wrong count, one row Delta does not have.
    minute_df = spark.read.format("delta").load(lake.path(GOLD_TABLES["minute"])).where("metric = 'events'")
    victim = minute_df.orderBy("tenant_id", "dims_key", "window_start").limit(1).drop("window_date")
    extra = victim.withColumn("dims_key", F.lit("event_type=ghost|country=|device="))
    # Newer than the rows the first reconcile published, so the upsert takes the drift.
    stale = F.current_timestamp()
    from lakepulse.aggregations import with_kafka_records

    drift_df = with_kafka_records(victim.withColumn("count", F.col("count") + 5).unionByName(extra)
                                  .withColumn("updated_at", stale))
    drift_df.write.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap).option(
        "topic", settings.topic_metrics_minute).save()
    deadline = time.monotonic() + CONVERGE_S
    while len([k for k in pinot_minutes(settings, rng, batch["prefix"]) if k[2].startswith("event_type=ghost")]) < 1:
        assert time.monotonic() < deadline, "drift rows never reached Pinot"
        time.sleep(3)

    report = reconcile.run(spark, lake, rng, settings, batch["prefix"])
    assert report["differences"] == {"missing_in_pinot": 0, "extra_in_pinot": 1, "values_differ": 1}
    assert report["republished"] == 2
    eventually_equal(settings, rng, batch["prefix"], recount(batch["rows"]))


@pytest.mark.needs("minio", "trino")
def test_broken_input_fails_the_gate_and_leaves_the_seam(spark: Any, settings: Settings, stack: object) -> None:
    rid = uuid.uuid4().hex[:8]
    lake = isolated_lake(settings, rid)
    start = hour_in_pinot_retention()
    rng = TimeRange(start, start + timedelta(minutes=10))
    config = GeneratorConfig(rate=1.0, duration_s=600, seed=5, tenants=1, start=start, run_id=f"q{rid}")
    rows = list(raw_rows(config))
    placed = next(r for r in rows if r["event_type"] == "order_placed")
    broken = {**placed, "event_id": f"broken-{rid}", "kafka_offset": 10**9,
              "properties": orjson.dumps({**orjson.loads(placed["properties"]), "amount": -42.5}).decode()}
    write_raw(spark, [*rows, broken], lake.raw_root)
    write_seam(settings, lake.seam_uri, rng.start, {"note": "test"})

    with pytest.raises(QualityError) as failed:
        pipeline.run(spark, lake, rng, settings, f"q{rid}-")

    text = str(failed.value)
    assert text.startswith("quality gate FAILED")
    failures = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1, text
    assert failures[0].startswith("FAIL bronze   expect_column_values_to_be_between(column=amount")
    assert failures[0].endswith(": 1 unexpected, e.g. [-42.5]"), failures[0]
    assert read_seam(settings, lake.seam_uri) == rng.start


@pytest.mark.needs("minio", "airflow-api", "airflow-scheduler", "airflow-dag-processor")
def test_backfill_through_airflow_rest_rebuilds_a_past_range(spark: Any, settings: Settings, ctx: Any,
                                                             batch: dict[str, Any], stack: object) -> None:
    from delta.tables import DeltaTable

    from lakepulse.batch.airflow_api import AirflowApi
    from lakepulse.platform.components.airflow import airflow_password

    lake, rng = batch["lake"], batch["range"]
    expected = recount(batch["rows"])
    minute_path = lake.path(GOLD_TABLES["minute"])
    if DeltaTable.isDeltaTable(spark, minute_path):  # built by the hourly test when the module runs whole
        # Lose part of history: every minute of the range's first half hour.
        DeltaTable.forPath(spark, minute_path).delete(F.col("window_start") < F.lit(rng.start + timedelta(minutes=30)))
        assert same(expected, delta_minutes(spark, lake, RECOUNTED)) != []

    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(ctx))
    api.wait_for_dag("lakepulse_backfill")
    run_id = api.trigger("lakepulse_backfill", {
        "start": rng.start.isoformat(), "end": rng.end.isoformat(), "metrics": [], "reconcile": False,
        "lake_root": lake.raw_root.rsplit("/raw", 1)[0]})
    assert api.wait("lakepulse_backfill", run_id, timeout=1200) == "success"

    assert same(expected, delta_minutes(spark, lake, RECOUNTED)) == []
