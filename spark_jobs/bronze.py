"""Bronze: raw archive → Delta `events`, one row per event_id, partitioned by event date (staged, then insert-only
MERGE when published)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession, Window

from lakepulse.aggregations.schema import PROPERTIES_SCHEMA, TYPED_PROPERTIES
from spark_jobs.common import (
    EVENTS,
    ArchiveCutoffs,
    Lake,
    TimeRange,
    batch_spark,
    events_scope,
    job_args,
    table_version,
)
from spark_jobs.raw import RAW_COLUMNS, read_raw
from spark_jobs.staging import Stage, mark_replace, publish, record_base, write_staged

__all__ = ["events_scope", "run", "stage", "with_deduplicated_events"]


def filter_first_copies(events_df: DataFrame) -> DataFrame:
    """Rows with event_id → the first received copy of each event_id (ties by Kafka position), same columns."""
    first = Window.partitionBy("event_id").orderBy(
        F.col("received_at").asc_nulls_last(), "kafka_topic", "kafka_partition", "kafka_offset"
    )
    return events_df.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") == 1).drop("_n")


def with_deduplicated_events(raw_df: DataFrame) -> DataFrame:
    """Raw rows → one row per event_id (the first received copy, ties by Kafka position) + event_date and
    the parsed properties."""
    return (
        filter_first_copies(raw_df.filter(F.col("event_id").isNotNull() & F.col("occurred_at").isNotNull()))
        .select(
            *RAW_COLUMNS,
            F.to_date("occurred_at").cast("string").alias("event_date"),
            # Parsed once here; gold and the quality gate read it instead of parsing the JSON text again.
            F.from_json("properties", PROPERTIES_SCHEMA).alias(TYPED_PROPERTIES),
        )
    )


def stage(spark: SparkSession, into: Stage, archived_before: ArchiveCutoffs | None = None) -> dict[str, int]:
    """First step of a run: note the served tables' versions (the stage's base), then stage the range's events: the
    served ones (immutable; one copy each) plus the archive's (of the snapshot `archived_before`, if given) not
    served yet."""
    lake, rng = into.lake, into.rng
    record_base(spark, into)
    raw_events_df = with_deduplicated_events(read_raw(spark, lake.raw_root, rng, archived_before))
    if table_version(spark, lake.path(EVENTS)) < 0:
        return {EVENTS.name: write_staged(spark, into, EVENTS, raw_events_df)}
    served_df = spark.read.format("delta").load(lake.path(EVENTS)).where(events_scope(rng, None))
    rows, distinct = served_df.agg(F.count(F.lit(1)), F.countDistinct("event_id")).collect()[0]
    if rows > distinct:
        # Twice-served events (left by writers before publishing was conflict-checked): stage one copy, and replace
        # the scope when publishing (an insert-only MERGE cannot remove the second copy).
        served_df = filter_first_copies(served_df)
    new_df = raw_events_df.join(served_df.select("event_id"), "event_id", "left_anti")
    staged = write_staged(spark, into, EVENTS, served_df.unionByName(new_df, allowMissingColumns=True))
    if rows > distinct:
        mark_replace(spark, into, EVENTS, {"numTargetRowsInserted": staged - int(distinct),
                                           "numTargetRowsUpdated": 0, "numTargetRowsDeleted": int(rows - distinct)})
    return {EVENTS.name: staged}


def run(spark: SparkSession, lake: Lake, rng: TimeRange,
        archived_before: ArchiveCutoffs | None = None) -> dict[str, int]:
    """Stage the range's events and publish them at once, without the quality gate (benchmarks, tests, repairs;
    the DAGs stage, gate, then publish): MERGE into `events`, a rerun inserts nothing."""
    import uuid

    events_stage = Stage(lake, f"bronze-{uuid.uuid4().hex[:12]}", rng)
    stage(spark, events_stage, archived_before)
    published = publish(spark, events_stage, {EVENTS: rng.dates()},
                        rebuild=lambda: stage(spark, events_stage, archived_before))
    return published.tables[EVENTS.name]


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: with --stage-id, stage only (the hourly DAG); without, stage and publish."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-bronze")
    try:
        if args.stage_id:
            print(stage(spark, Stage(lake, args.stage_id, rng), args.archived_before))
        else:
            print(run(spark, lake, rng, args.archived_before))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
