"""Quality gate: great-expectations checks on bronze and gold of a range; a failure stops the pipeline."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from lakepulse.aggregations import COURIER_STATUSES, ORDER_STATUSES, filter_valid_events, with_normalized_events
from lakepulse.batch.quality import QualityError, gate, validate
from lakepulse.catalog import get_catalog
from spark_jobs.bronze import events_scope
from spark_jobs.common import EVENTS, GOLD_TABLES, ArchiveCutoffs, Lake, TimeRange, batch_spark, job_args
from spark_jobs.gold import partial_scope
from spark_jobs.raw import read_raw


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


def run(spark: SparkSession, lake: Lake, rng: TimeRange, archived_before: ArchiveCutoffs | None = None) -> str:
    """Validate the range (against the archive snapshot `archived_before`, if given); returns the report, raises
    QualityError (with the report) on any failure."""
    bronze_df = spark.read.format("delta").load(lake.path(EVENTS)).where(events_scope(rng, None))
    checks_df = with_bronze_checks(bronze_df).cache()
    minute_df = (spark.read.format("delta").load(lake.path(GOLD_TABLES["minute"]))
                 .where(partial_scope(rng, rng.metrics, None)).cache())
    # The snapshot bronze read: the archive itself keeps growing while the run goes on.
    raw_ids = (read_raw(spark, lake.raw_root, rng, archived_before).where("event_id IS NOT NULL").select("event_id")
               .distinct().count())
    valid_events = filter_valid_events(with_normalized_events(bronze_df)).count()
    events_metric = minute_df.where("metric = 'events'").agg(F.sum("count")).collect()[0][0] or 0
    hours = rng.widened("hour")
    minute_hours = (spark.read.format("delta").load(lake.path(GOLD_TABLES["minute"]))
                    .where(partial_scope(hours, rng.metrics, None)).agg(F.sum("count")).collect()[0][0] or 0)
    hour_total = (spark.read.format("delta").load(lake.path(GOLD_TABLES["hour"]))
                  .where(partial_scope(hours, rng.metrics, None)).agg(F.sum("count")).collect()[0][0] or 0)
    rows = [
        totals_row("bronze rows = distinct event_ids in the archive", checks_df.count(), raw_ids),
        totals_row("hour counts = minute counts", int(hour_total), int(minute_hours)),
    ]
    if not rng.metrics or "events" in rng.metrics:
        rows.append(totals_row("events metric = valid bronze events", int(events_metric), valid_events))
    totals_df = spark.createDataFrame(rows, "check string, observed long, expected long")
    params = {
        "order_statuses": list(ORDER_STATUSES),
        "courier_statuses": list(COURIER_STATUSES),
        "metrics": [m.name for m in get_catalog().metrics],
    }
    try:
        outcomes = validate({"bronze": checks_df, "gold": minute_df, "totals": totals_df}, params)
    finally:
        checks_df.unpersist()
        minute_df.unpersist()
    # The totals check names its rows: put the failing ones in the report, not just their index.
    failed_totals = [r[0] + f" (observed {r[1]}, expected {r[2]})" for r in rows if r[1] != r[2]]
    for o in outcomes:
        if o.dataset == "totals" and not o.success:
            o.examples = failed_totals
    return gate(outcomes, f"[{rng.start.isoformat()}, {rng.end.isoformat()})")


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: exit status 1 and the report on stderr when the gate fails."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-quality")
    try:
        print(run(spark, lake, rng, args.archived_before))
    except QualityError as failed:
        print(str(failed), file=sys.stderr)
        sys.exit(1)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
