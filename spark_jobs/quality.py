"""Quality gate: great-expectations checks on bronze and gold of a range, as a run staged them (before they are
served), or on the served tables; a failure stops the pipeline before anything is published."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from lakepulse.aggregations import COURIER_STATUSES, ORDER_STATUSES, filter_valid_events, with_normalized_events
from lakepulse.batch.quality import QualityError, gate, validate
from lakepulse.catalog import get_catalog
from spark_jobs.common import (
    EVENTS,
    GOLD_TABLES,
    USER_ACTIVITY,
    ArchiveCutoffs,
    Lake,
    TimeRange,
    activity_scope,
    batch_spark,
    events_scope,
    job_args,
    partial_scope,
    rebuilds_user_activity,
)
from spark_jobs.gold import filter_active_user_events, read_events
from spark_jobs.raw import read_raw
from spark_jobs.staging import Stage, read_table


def with_bronze_checks(events_df: DataFrame) -> DataFrame:
    """Bronze rows → the columns the bronze suite checks (typed properties flattened)."""
    return with_normalized_events(events_df).select(
        "event_id", "tenant_id", "event_type", "occurred_at",
        F.col("properties.amount").alias("amount"),
        F.array_min(F.col("properties.items.quantity")).alias("quantity_min"),
        F.col("properties.food_rating").alias("food_rating"),
        F.col("properties.delivery_rating").alias("delivery_rating"),
        F.when(F.col("event_type") == "order_status_changed", F.col("properties.status")).alias("order_status"),
        F.when(F.col("event_type") == "courier_status_changed", F.col("properties.status")).alias("courier_status"),
    )


def totals_row(name: str, observed: int, expected: int) -> tuple[str, int, int]:
    """One row of the totals check."""
    return (name, observed, expected)


def with_user_activity_recount(activity_df: DataFrame, events_df: DataFrame) -> DataFrame:
    """user_activity_daily rows and the normalized bronze events of the same days → one row per tenant and day
    found in either: distinct users and events as stored (users, events) and recounted from the events
    (recount_users, recount_events)."""
    stored_df = activity_df.groupBy("tenant_id", "activity_date").agg(
        F.countDistinct("user_id").alias("users"), F.sum("events").alias("events"))
    recount_df = (filter_active_user_events(events_df)
                  .groupBy("tenant_id", F.to_date("occurred_at").alias("activity_date"))
                  .agg(F.countDistinct("user_id").alias("recount_users"), F.count(F.lit(1)).alias("recount_events")))
    return stored_df.join(recount_df, ["tenant_id", "activity_date"], "full_outer")


def user_activity_rows(recount_df: DataFrame) -> list[tuple[str, int, int]]:
    """The totals rows of with_user_activity_recount's result (one small collect)."""
    users, recount_users = F.coalesce(F.col("users"), F.lit(0)), F.coalesce(F.col("recount_users"), F.lit(0))
    events, recount_events = F.coalesce(F.col("events"), F.lit(0)), F.coalesce(F.col("recount_events"), F.lit(0))
    differs = (users != recount_users) | (events != recount_events)
    got = recount_df.agg(F.sum(users), F.sum(recount_users), F.sum(events), F.sum(recount_events),
                         F.count(F.when(differs, 1))).collect()[0]
    n = [int(v or 0) for v in got]
    return [
        totals_row("user_activity users per tenant-day = bronze recount (summed over tenant-days)", n[0], n[1]),
        totals_row("user_activity events = bronze events with a user", n[2], n[3]),
        totals_row("user_activity tenant-days that differ from the bronze recount", n[4], 0),
    ]


def run(spark: SparkSession, lake: Lake, rng: TimeRange, archived_before: ArchiveCutoffs | None = None,
        stage: Stage | None = None) -> str:
    """Validate the range (against the archive snapshot `archived_before`, if given) as `stage` staged it (the tables
    as that run will leave them; without a stage, the served tables); returns the report, raises QualityError (with
    the report) on any failure."""
    bronze_df = read_table(spark, lake, EVENTS, stage).where(events_scope(rng, None))
    checks_df = with_bronze_checks(bronze_df).cache()
    minute_df = (read_table(spark, lake, GOLD_TABLES["minute"], stage)
                 .where(partial_scope(rng, rng.metrics, None)).cache())
    # The snapshot bronze read: the archive itself keeps growing while the run goes on.
    raw_ids = (read_raw(spark, lake.raw_root, rng, archived_before).where("event_id IS NOT NULL").select("event_id")
               .distinct().count())
    valid_events = filter_valid_events(with_normalized_events(bronze_df)).count()
    events_metric = minute_df.where("metric = 'events'").agg(F.sum("count")).collect()[0][0] or 0
    hours = rng.widened("hour")
    minute_hours = (read_table(spark, lake, GOLD_TABLES["minute"], stage)
                    .where(partial_scope(hours, rng.metrics, None)).agg(F.sum("count")).collect()[0][0] or 0)
    hour_total = (read_table(spark, lake, GOLD_TABLES["hour"], stage)
                  .where(partial_scope(hours, rng.metrics, None)).agg(F.sum("count")).collect()[0][0] or 0)
    rows = [
        totals_row("bronze rows = distinct event_ids in the archive", checks_df.count(), raw_ids),
        totals_row("hour counts = minute counts", int(hour_total), int(minute_hours)),
    ]
    if not rng.metrics or "events" in rng.metrics:
        rows.append(totals_row("events metric = valid bronze events", int(events_metric), valid_events))
    frames = {"bronze": checks_df, "gold": minute_df}
    if rebuilds_user_activity(rng):
        # gold rebuilt every whole day the range touches: check those days against all of their bronze rows.
        activity_df = read_table(spark, lake, USER_ACTIVITY, stage).where(activity_scope(rng, None)).cache()
        rows += user_activity_rows(with_user_activity_recount(activity_df, read_events(spark, lake,
                                                                                       rng.widened("day"), stage)))
        frames["user_activity"] = activity_df
    totals_df = spark.createDataFrame(rows, "check string, observed long, expected long")
    params = {
        "order_statuses": list(ORDER_STATUSES),
        "courier_statuses": list(COURIER_STATUSES),
        "metrics": [m.name for m in get_catalog().metrics],
        "user_activity_keys": list(USER_ACTIVITY.keys),
    }
    try:
        outcomes = validate({**frames, "totals": totals_df}, params)
    finally:
        for df in frames.values():
            df.unpersist()
    # The totals check names its rows: put the failing ones in the report, not just their index.
    failed_totals = [r[0] + f" (observed {r[1]}, expected {r[2]})" for r in rows if r[1] != r[2]]
    for o in outcomes:
        if o.dataset == "totals" and not o.success:
            o.examples = failed_totals
    return gate(outcomes, f"[{rng.start.isoformat()}, {rng.end.isoformat()})")


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: with --stage-id, checks that run's staged tables; exit status 1 and the report on
    stderr when the gate fails."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-quality")
    stage = Stage(lake, args.stage_id, rng) if args.stage_id else None
    try:
        print(run(spark, lake, rng, args.archived_before, stage))
    except QualityError as failed:
        print(str(failed), file=sys.stderr)
        if stage:
            print(f"nothing was published; the staged tables are kept for inspection at {stage.root}", file=sys.stderr)
        sys.exit(1)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
