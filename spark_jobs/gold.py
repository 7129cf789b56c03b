"""Gold: Delta `events` → minute, hour and day aggregates, order history and daily user activity, via the shared
metric library. Staged like bronze (spark_jobs.staging): gold reads the events (and the finer grains) as the run will
leave them, and writes its own staging tables; publishing happens after the quality gate."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from lakepulse.aggregations import (
    explode_prep_time_events,
    filter_valid_events,
    with_minute_partials,
    with_normalized_events,
    with_order_state,
    with_rollup,
)
from lakepulse.aggregations.state import MAX_PREP
from lakepulse.catalog import Catalog, get_catalog
from spark_jobs.common import (
    ACTIVE_USERS,
    EVENTS,
    GOLD_TABLES,
    ORDERS,
    USER_ACTIVITY,
    USER_ACTIVITY_DIMS,
    Lake,
    TableSpec,
    TimeRange,
    activity_scope,
    batch_spark,
    events_scope,
    job_args,
    partial_scope,
    rebuilds_user_activity,
)
from spark_jobs.staging import Stage, publish, read_base, read_table, record_base, write_staged

__all__ = ["ACTIVE_USERS", "activity_scope", "input_partitions", "partial_scope", "read_events",
           "rebuilds_user_activity", "run", "stage", "with_gold_minutes", "with_user_activity_daily",
           "with_window_date"]

PREP_LOOKBACK = timedelta(hours=int(MAX_PREP.split()[0]))
# Orders live for hours: their state is rebuilt from every event of the order within this margin.
ORDER_MARGIN = timedelta(days=1)


def with_window_date(partials_df: DataFrame) -> DataFrame:
    """Partial rows → plus `window_date` (UTC date of window_start, the partition column)."""
    return partials_df.withColumn("window_date", F.to_date("window_start").cast("string"))


def split_metrics(metrics: Sequence[str]) -> dict[str, list[str]]:
    """Metric names (empty = all) → names per catalog source ("events", "prep_time")."""
    catalog = get_catalog()
    chosen = [catalog.metric(m) for m in metrics] if metrics else list(catalog.metrics)
    by_source: dict[str, list[str]] = {}
    for m in chosen:
        by_source.setdefault(m.source, []).append(m.name)
    return by_source


def with_gold_minutes(events_df: DataFrame, rng: TimeRange) -> DataFrame:
    """Normalized events (the range plus PREP_LOOKBACK before it) → minute partials of the range."""
    in_range = (F.col("occurred_at") >= F.lit(rng.start)) & (F.col("occurred_at") < F.lit(rng.end))
    parts = []
    for source, names in split_metrics(rng.metrics).items():
        if source == "events":
            parts.append(with_minute_partials(events_df.filter(in_range), names, source))
        elif source == "prep_time":
            # Prep time lands at the ready minute; its confirmed event may precede the range.
            prep_df = explode_prep_time_events(events_df).filter(in_range)
            parts.append(with_minute_partials(prep_df, names, source))
        else:
            raise ValueError(f"no batch input for metric source {source!r}")
    minutes_df = parts[0]
    for part in parts[1:]:
        minutes_df = minutes_df.unionByName(part)
    return with_window_date(minutes_df)


def filter_active_user_events(events_df: DataFrame, catalog: Catalog | None = None) -> DataFrame:
    """Normalized events → the ones the catalog's active_users counts, as tenant_id, occurred_at, user_id (the
    metric's distinct value) and its dimension columns (a missing value as "", as in the metric's dims_key)."""
    catalog = catalog or get_catalog()
    metric = catalog.metric(ACTIVE_USERS)
    if (metric.kind, metric.source, metric.explode) != ("distinct", "events", None) or sorted(
            metric.dimensions) != sorted(USER_ACTIVITY_DIMS):
        # The table's columns and merge keys are fixed; a changed declaration needs a new table, not drift.
        raise ValueError(f"{ACTIVE_USERS} is declared as {metric}, user_activity_daily has dimensions "
                         f"{USER_ACTIVITY_DIMS}: change the table with the catalog")
    user = F.expr(metric.value or "").cast("string")
    counts = user.isNotNull()
    if metric.event_types:
        counts = counts & F.col("event_type").isin(list(metric.event_types))
    if metric.where:
        counts = counts & F.expr(metric.where)
    dims = [F.coalesce(F.expr(catalog.dimensions[d].expr).cast("string"), F.lit("")).alias(d)
            for d in USER_ACTIVITY_DIMS]
    return events_df.where(counts).select("tenant_id", "occurred_at", user.alias("user_id"), *dims)


def with_user_activity_daily(events_df: DataFrame, catalog: Catalog | None = None) -> DataFrame:
    """Normalized events → user_activity_daily rows: one per tenant_id, activity_date (UTC date of occurred_at),
    user_id and dimension tuple of the events active_users counts, with their `events`, `first_seen`, `last_seen`."""
    return (
        filter_active_user_events(events_df, catalog)
        .withColumn("activity_date", F.to_date("occurred_at"))
        .groupBy(*USER_ACTIVITY.keys)
        .agg(F.count(F.lit(1)).alias("events"), F.min("occurred_at").alias("first_seen"),
             F.max("occurred_at").alias("last_seen"))
    )


def read_events(spark: SparkSession, lake: Lake, rng: TimeRange, stage: Stage | None = None) -> DataFrame:
    """Bronze rows of the range (as the stage will leave them, if given), parsed into the library's event columns,
    invalid rows dropped."""
    events_df = read_table(spark, lake, EVENTS, stage).where(events_scope(rng, None))
    return filter_valid_events(with_normalized_events(events_df))


def input_partitions(rng: TimeRange) -> dict[TableSpec, list[str]]:
    """The served partitions a rebuild of the range reads (events around it for prep times and orders, the minute and
    hour rows of its days for the rollups and the gate): a change in them since staging makes the stage stale."""
    margin = max(PREP_LOOKBACK, ORDER_MARGIN)
    return {EVENTS: rng.dates(before=margin, after=ORDER_MARGIN), GOLD_TABLES["minute"]: rng.dates(),
            GOLD_TABLES["hour"]: rng.dates()}


def stage(spark: SparkSession, into: Stage) -> dict[str, int]:
    """Stage the range's minute rows, the hours and days they touch, daily user activity and the orders seen in the
    range, from the events as the stage will leave them (staged by bronze.stage, else the served ones); rows per
    staged table."""
    lake, rng = into.lake, into.rng
    if read_base(spark, into) is None:  # gold staged on its own (gold.run): the base is taken here
        record_base(spark, into)
    staged: dict[str, int] = {}
    wide = TimeRange(rng.start - PREP_LOOKBACK, rng.end, rng.metrics)
    # Not cached: a day of parsed events does not fit a small driver, and Delta re-reads are cheap.
    minutes_df = with_gold_minutes(read_events(spark, lake, wide, into), rng)
    staged[GOLD_TABLES["minute"].name] = write_staged(spark, into, GOLD_TABLES["minute"], minutes_df)
    for grain, finer in (("hour", "minute"), ("day", "hour")):
        # Roll up from the table one grain finer (as this run leaves it), so an hour/day is complete even if the
        # range covers part of it.
        whole = rng.widened(grain)
        finer_df = (read_table(spark, lake, GOLD_TABLES[finer], into)
                    .where(partial_scope(whole, rng.metrics, None)).drop("window_date"))
        spec = GOLD_TABLES[grain]
        staged[spec.name] = write_staged(spark, into, spec, with_window_date(with_rollup(finer_df, grain)))
    if rebuilds_user_activity(rng):
        # Every whole UTC day the range touches, from bronze: a day is complete even if the range covers part of it.
        activity_df = with_user_activity_daily(read_events(spark, lake, rng.widened("day"), into))
        staged[USER_ACTIVITY.name] = write_staged(spark, into, USER_ACTIVITY, activity_df)
    if not rng.metrics:
        staged[ORDERS.name] = write_staged(spark, into, ORDERS, range_orders(spark, lake, rng, into))
    return staged


def range_orders(spark: SparkSession, lake: Lake, rng: TimeRange, stage: Stage | None = None) -> DataFrame:
    """Order history: the state of every order with an order event in the range, from all its known events
    (courier events do not change an order's state)."""
    around = TimeRange(rng.start - ORDER_MARGIN, rng.end + ORDER_MARGIN)
    in_range = (F.col("occurred_at") >= F.lit(rng.start)) & (F.col("occurred_at") < F.lit(rng.end))
    # One aggregation over the margin; orders without an event in the range are dropped after it.
    return with_order_state(read_events(spark, lake, around, stage), touched_by=in_range)


GRAINS = {spec.name: grain for grain, spec in GOLD_TABLES.items()} | {USER_ACTIVITY.name: "user_activity",
                                                                     ORDERS.name: "orders"}


def run(spark: SparkSession, lake: Lake, rng: TimeRange) -> dict[str, dict[str, int]]:
    """Stage gold from the served events and publish it at once, without the quality gate (benchmarks, tests,
    repairs; the DAGs stage, gate, then publish); rows inserted/updated/deleted per table ("minute", "hour", "day",
    "user_activity", "orders"): a rerun changes nothing."""
    import uuid

    gold_stage = Stage(lake, f"gold-{uuid.uuid4().hex[:12]}", rng)

    def restage() -> None:
        record_base(spark, gold_stage)
        stage(spark, gold_stage)

    restage()
    published = publish(spark, gold_stage, input_partitions(rng), rebuild=restage)
    return {GRAINS[name]: counts for name, counts in published.tables.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: with --stage-id, stage only (after bronze's stage); without, stage and publish."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-gold")
    try:
        if args.stage_id:
            print(stage(spark, Stage(lake, args.stage_id, rng)))
        else:
            print(run(spark, lake, rng))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
