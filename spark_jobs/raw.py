"""The one reader of the raw archive (Kafka Connect's Parquet under raw/event_date=D/event_hour=H/)."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from lakepulse.aggregations.schema import RAW_EVENT_SCHEMA
from spark_jobs.common import TimeRange, sql_list, sql_ts

# The archive contract (issue 5): one row per Kafka record of events.raw; `properties` is the JSON text
# as sent. Replays after a crash may leave the same event_id in several objects.
RAW_SCHEMA = StructType(
    [StructField(f.name, StringType()) if f.name == "properties" else f for f in RAW_EVENT_SCHEMA.fields]
    + [
        StructField("kafka_topic", StringType()),
        StructField("kafka_partition", IntegerType()),
        StructField("kafka_offset", LongType()),
    ]
)
RAW_COLUMNS: tuple[str, ...] = tuple(f.name for f in RAW_SCHEMA.fields)


def read_raw(spark: SparkSession, raw_root: str, rng: TimeRange) -> DataFrame:
    """Raw archive rows whose event time is in the range (RAW_SCHEMA columns; columns absent from the
    files are null), duplicates included; reads only the hour partitions of the range."""
    hours = TimeRange(rng.start, rng.end).widened("hour")
    # The archive partitions by event time (receive time when the event has none), so only the event
    # dates of the range are read; the exact range filter follows.
    raw_df = (
        spark.read.option("basePath", raw_root)
        .option("mergeSchema", "false")
        .parquet(raw_root)
        .where(f"CAST(event_date AS STRING) IN ({sql_list(hours.dates())})")
        .where(f"occurred_at >= {sql_ts(rng.start)} AND occurred_at < {sql_ts(rng.end)}")
    )
    present = set(raw_df.columns)
    return raw_df.select(
        *[
            (F.col(f.name) if f.name in present else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in RAW_SCHEMA.fields
        ]
    )
