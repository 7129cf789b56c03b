"""Bronze: raw archive → Delta `events`, one row per event_id, partitioned by event date (insert-only MERGE)."""

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
    job_args,
    merge_rows,
    sql_list,
    sql_ts,
)
from spark_jobs.raw import RAW_COLUMNS, read_raw


def with_deduplicated_events(raw_df: DataFrame) -> DataFrame:
    """Raw rows → one row per event_id (the first received copy, ties by Kafka position) + event_date and
    the parsed properties."""
    first = Window.partitionBy("event_id").orderBy(
        F.col("received_at").asc_nulls_last(), "kafka_topic", "kafka_partition", "kafka_offset"
    )
    return (
        raw_df.filter(F.col("event_id").isNotNull() & F.col("occurred_at").isNotNull())
        .withColumn("_n", F.row_number().over(first))
        .filter(F.col("_n") == 1)
        .select(
            *RAW_COLUMNS,
            F.to_date("occurred_at").cast("string").alias("event_date"),
            # Parsed once here; gold and the quality gate read it instead of parsing the JSON text again.
            F.from_json("properties", PROPERTIES_SCHEMA).alias(TYPED_PROPERTIES),
        )
    )


def events_scope(rng: TimeRange, alias: str | None = "t") -> str:
    """SQL over the events table selecting the range (with its partitions, for pruning)."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}event_date IN ({sql_list(rng.dates())}) AND {p}occurred_at >= {sql_ts(rng.start)} "
        f"AND {p}occurred_at < {sql_ts(rng.end)}"
    )


def run(spark: SparkSession, lake: Lake, rng: TimeRange,
        archived_before: ArchiveCutoffs | None = None) -> dict[str, int]:
    """Read the range (of the archive snapshot `archived_before`, if given) from the archive, deduplicate,
    MERGE into `events` (a rerun inserts nothing)."""
    events_df = with_deduplicated_events(read_raw(spark, lake.raw_root, rng, archived_before))
    # Raw events are immutable: an event_id already in the table is never rewritten.
    return merge_rows(spark, events_df, EVENTS, lake.path(EVENTS), scope=events_scope(rng))


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-bronze")
    try:
        run(spark, lake, rng, args.archived_before)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
