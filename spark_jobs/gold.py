"""Gold: Delta `events` → minute, hour and day aggregates, order history and daily user activity, via the shared
metric library."""

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
from spark_jobs.bronze import events_scope
from spark_jobs.common import (
    EVENTS,
    GOLD_TABLES,
    ORDERS,
    USER_ACTIVITY,
    USER_ACTIVITY_DIMS,
    Lake,
    TimeRange,
    batch_spark,
    job_args,
    merge_rows,
    sql_list,
    sql_ts,
)

PREP_LOOKBACK = timedelta(hours=int(MAX_PREP.split()[0]))
# Orders live for hours: their state is rebuilt from every event of the order within this margin.
ORDER_MARGIN = timedelta(days=1)
# The distinct metric user_activity_daily makes exact in Trino.
ACTIVE_USERS = "active_users"


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


def partial_scope(rng: TimeRange, metrics: Sequence[str], alias: str | None = "t") -> str:
    """SQL over a partial table selecting the range's windows (and metrics), partitions first."""
    p = f"{alias}." if alias else ""
    scope = (
        f"{p}window_date IN ({sql_list(rng.dates())}) AND {p}window_start >= {sql_ts(rng.start)} "
        f"AND {p}window_start < {sql_ts(rng.end)}"
    )
    return scope + (f" AND {p}metric IN ({sql_list(metrics)})" if metrics else "")


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


def activity_scope(rng: TimeRange, alias: str | None = "t") -> str:
    """SQL over user_activity_daily selecting every UTC day the range touches (its partitions)."""
    p = f"{alias}." if alias else ""
    days = ", ".join(f"DATE '{d}'" for d in rng.dates())
    return f"{p}activity_date IN ({days})"


def rebuilds_user_activity(rng: TimeRange) -> bool:
    """Whether a rebuild of the range's metrics covers user_activity_daily (all metrics, or active_users)."""
    return not rng.metrics or ACTIVE_USERS in rng.metrics


def read_events(spark: SparkSession, lake: Lake, rng: TimeRange) -> DataFrame:
    """Bronze rows of the range, parsed into the library's event columns, invalid rows dropped."""
    events_df = spark.read.format("delta").load(lake.path(EVENTS)).where(events_scope(rng, None))
    return filter_valid_events(with_normalized_events(events_df))


def run(spark: SparkSession, lake: Lake, rng: TimeRange) -> dict[str, dict[str, int]]:
    """Rebuild the range's minute rows, the hours and days they touch, and the orders seen in the range."""
    results: dict[str, dict[str, int]] = {}
    wide = TimeRange(rng.start - PREP_LOOKBACK, rng.end, rng.metrics)
    # Not cached: a day of parsed events does not fit a small driver, and Delta re-reads are cheap.
    events_df = read_events(spark, lake, wide)
    minutes_df = with_gold_minutes(events_df, rng)
    # Rows of the range that the source no longer produces (e.g. a corrected event) are deleted.
    results["minute"] = merge_rows(
        spark, minutes_df, GOLD_TABLES["minute"], lake.path(GOLD_TABLES["minute"]),
        scope=partial_scope(rng, rng.metrics), delete_missing=True,
    )
    for grain, finer in (("hour", "minute"), ("day", "hour")):
        # Roll up from the table one grain finer, so an hour/day is complete even if the range covers part
        # of it; every hour with minute rows was itself rolled up when they were written.
        whole = rng.widened(grain)
        finer_df = (
            spark.read.format("delta").load(lake.path(GOLD_TABLES[finer]))
            .where(partial_scope(whole, rng.metrics, None))
            .drop("window_date")
        )
        rolled_df = with_window_date(with_rollup(finer_df, grain))
        spec = GOLD_TABLES[grain]
        results[grain] = merge_rows(
            spark, rolled_df, spec, lake.path(spec), scope=partial_scope(whole, rng.metrics),
            delete_missing=True,
        )
    if rebuilds_user_activity(rng):
        results["user_activity"] = run_user_activity(spark, lake, rng)
    if not rng.metrics:
        results["orders"] = run_orders(spark, lake, rng)
    return results


def run_user_activity(spark: SparkSession, lake: Lake, rng: TimeRange) -> dict[str, int]:
    """Rebuild user_activity_daily for every whole UTC day the range touches, from bronze: a day is complete even if
    the range covers part of it, and a rerun writes the same rows (rows bronze no longer gives are deleted)."""
    activity_df = with_user_activity_daily(read_events(spark, lake, rng.widened("day")))
    return merge_rows(spark, activity_df, USER_ACTIVITY, lake.path(USER_ACTIVITY), scope=activity_scope(rng),
                      delete_missing=True)


def run_orders(spark: SparkSession, lake: Lake, rng: TimeRange) -> dict[str, int]:
    """Order history: the state of every order with an order event in the range, from all its known events
    (courier events do not change an order's state)."""
    around = TimeRange(rng.start - ORDER_MARGIN, rng.end + ORDER_MARGIN)
    in_range = (F.col("occurred_at") >= F.lit(rng.start)) & (F.col("occurred_at") < F.lit(rng.end))
    # One aggregation over the margin; orders without an event in the range are dropped after it.
    orders_df = with_order_state(read_events(spark, lake, around), touched_by=in_range)
    return merge_rows(spark, orders_df, ORDERS, lake.path(ORDERS))


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point."""
    rng, lake, _ = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-gold")
    try:
        run(spark, lake, rng)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
