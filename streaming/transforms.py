"""Pure transforms of the speed layer that the shared aggregation library does not carry: Kafka framing,
dead letters, late events and the prep-time hand-off between the join query and its aggregation."""

from __future__ import annotations

from datetime import datetime

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from lakepulse.aggregations import RAW_EVENT_SCHEMA
from lakepulse.aggregations import schema as event_schema
from lakepulse.aggregations.schema import EVENT_COLUMNS, parse_once

# Rows of explode_prep_time_events as they travel through the intermediate topic.
PREP_SCHEMA = StructType(
    [
        StructField("tenant_id", StringType()),
        StructField("order_id", StringType()),
        StructField("confirmed_at", TimestampType()),
        StructField("occurred_at", TimestampType()),
        StructField("prep_seconds", DoubleType()),
    ]
)
# One prep row is one (confirmed, ready) pair: the whole row identifies it, so a replayed copy dedups.
PREP_KEY: tuple[str, ...] = ("tenant_id", "order_id", "confirmed_at", "occurred_at")


def with_events_and_raw(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows → the envelope columns exactly as aggregations.with_parsed_events gives them, plus `raw`
    (the message value as text, which with_parsed_events does not keep and dead letters need)."""
    # The library's wire schema and time parser when it has them (times as RFC 3339 text), else its
    # original from_json parse; tests/unit/test_streaming.py checks both parses agree.
    wire = getattr(event_schema, "WIRE_EVENT_SCHEMA", RAW_EVENT_SCHEMA)
    time_columns = getattr(event_schema, "TIME_COLUMNS", ())
    parse_time = getattr(event_schema, "rfc3339_timestamp", None)
    raw = F.col("value").cast("string")
    columns = [
        parse_time(F.col(f"_event.{c}")).alias(c) if parse_time and c in time_columns else F.col(f"_event.{c}")
        for c in EVENT_COLUMNS
    ]
    # The Kafka coordinates, when present, say which minute batch read the event (streaming.late).
    coordinates = [c for c in ("partition", "offset") if c in kafka_df.columns]
    return kafka_df.select(*coordinates, raw.alias("raw"), F.from_json(raw, wire).alias("_event")).select(
        *coordinates, "raw", *columns
    )


def processing_time_micros() -> Column:
    """The wall clock (epoch µs, at millisecond precision) when each row is evaluated. Not current_timestamp():
    a streaming query turns that into a new literal, and so new generated code, every micro-batch (see
    aggregations.schema.updated_at_or_default)."""
    return F.expr("reflect('java.lang.System', 'currentTimeMillis')").cast("long") * 1000


def is_from_the_future(max_future_skew_s: float) -> Column:
    """True where `occurred_at` is more than `max_future_skew_s` ahead of processing time (null without a time).

    The ingest API refuses such events (settings.event_max_future_skew_s); this catches any that reach the raw
    topic by another path, before they can move a watermark. A replayed micro-batch evaluates the clock again:
    time only moves on, so a replay can let through an event that was then at the edge, never one far ahead."""
    return F.unix_micros(F.col("occurred_at")) > processing_time_micros() + int(max_future_skew_s * 1_000_000)


def filter_plausible_event_times(events_df: DataFrame, max_future_skew_s: float) -> DataFrame:
    """Events → those not more than `max_future_skew_s` ahead of processing time (apply before withWatermark:
    one event dated 2099 would otherwise move the watermark to 2099 and every later event would be late)."""
    return events_df.filter(~F.coalesce(is_from_the_future(max_future_skew_s), F.lit(False)))


def future_reason(max_future_skew_s: float) -> str:
    """The DLQ reason of an event filter_plausible_event_times drops (the ingest API's code, one fixed text per
    setting, so the DLQ counter's label stays one value)."""
    return f"occurred_at_in_future: more than {max_future_skew_s:g} s ahead of processing time"


def dlq_reason(max_future_skew_s: float | None = None) -> Column:
    """Why an envelope row cannot be placed by any metric (null when it can); mirrors filter_valid_events and,
    with a skew, filter_plausible_event_times."""
    reason = (
        F.when(F.col("raw").isNull(), F.lit("empty message"))
        .when(F.expr("try_parse_json(raw)").isNull(), F.lit("value is not valid JSON"))
        .when(F.col("tenant_id").isNull(), F.lit("missing or invalid tenant_id"))
        .when(F.col("event_type").isNull(), F.lit("missing or invalid event_type"))
        .when(F.col("occurred_at").isNull(), F.lit("missing or unparseable occurred_at"))
    )
    if max_future_skew_s is not None:
        reason = reason.when(is_from_the_future(max_future_skew_s), F.lit(future_reason(max_future_skew_s)))
    return reason


def with_dlq_reason(events_df: DataFrame, max_future_skew_s: float | None = None) -> DataFrame:
    """Envelope rows (with `raw`) → plus `dlq_reason` (events beyond `max_future_skew_s` too, when given)."""
    return events_df.withColumn("dlq_reason", dlq_reason(max_future_skew_s))


def with_dlq_records(rejected_df: DataFrame, detected_at: datetime) -> DataFrame:
    """Rejected rows → Kafka key/value in the ingest API's dead-letter format (reason, raw, ids)."""
    value = F.struct(
        F.col("dlq_reason").alias("reason"),
        F.col("raw").alias("raw"),
        F.lit(detected_at.isoformat()).alias("received_at"),
        F.col("tenant_id").alias("tenant_id"),
        F.col("event_id").alias("event_id"),
        F.lit("streaming").alias("stage"),
    )
    return rejected_df.select(F.col("tenant_id").alias("key"), F.to_json(value).alias("value"))


# streaming.late.DroppedRange as rows.
DROPPED_RANGE_SCHEMA = "partition int, start long, end long, late_watermark_ms long"


def with_is_late(events_df: DataFrame, threshold: datetime | None, dropped_df: DataFrame | None = None) -> DataFrame:
    """Events → plus `late_watermark` and `is_late` (event time at or before it: Spark drops rows <= the
    watermark). `late_watermark` is the one of the minute batch that read the event where `dropped_df`
    (partition, start, end, late_watermark_ms; see streaming.late.dropped_ranges) covers its offset, else
    `threshold` (None: not late)."""
    fallback = F.lit(threshold).cast("timestamp")
    if dropped_df is not None:
        ranges_df = dropped_df.select(*[F.col(c).alias(f"_range_{c}") for c in dropped_df.columns])
        covers = (
            (F.col("partition") == F.col("_range_partition"))
            & (F.col("offset") >= F.col("_range_start"))
            & (F.col("offset") < F.col("_range_end"))
        )
        by_offset = F.timestamp_millis(F.col("_range_late_watermark_ms"))
        events_df = (
            events_df.join(F.broadcast(ranges_df), covers, "left")
            .withColumn("late_watermark", F.coalesce(by_offset, fallback))
            .drop(*ranges_df.columns)
        )
    else:
        events_df = events_df.withColumn("late_watermark", fallback)
    is_late = F.coalesce(F.col("occurred_at") <= F.col("late_watermark"), F.lit(False))
    return events_df.withColumn("is_late", is_late)


def with_late_records(late_df: DataFrame) -> DataFrame:
    """Late events (with_is_late) → Kafka key (tenant) / value: ids, times, the watermark that made each
    late, how late, and the original message."""
    watermark = F.col("late_watermark")
    value = F.struct(
        "event_id",
        "tenant_id",
        "source",
        "event_type",
        F.date_format("occurred_at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias("occurred_at"),
        F.date_format("received_at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias("received_at"),
        F.date_format(watermark, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias("watermark"),
        ((F.unix_micros(watermark) - F.unix_micros("occurred_at")) / 1e6).alias("late_by_seconds"),
        F.col("raw"),
    )
    return late_df.select(F.col("tenant_id").alias("key"), F.to_json(value).alias("value"))


def with_batch_summary(events_df: DataFrame) -> DataFrame:
    """Events with `dlq_reason` and `is_late` → one row per (dlq_reason, is_late, tenant_id, source):
    `events`, and the max event time and received_at (epoch µs, so collecting does not depend on the
    Python process's time zone)."""
    return events_df.groupBy("dlq_reason", "is_late", "tenant_id", "source").agg(
        F.count(F.lit(1)).alias("events"),
        F.max(F.unix_micros("occurred_at")).alias("max_occurred_us"),
        F.max(F.unix_micros("received_at")).alias("max_received_us"),
    )


def with_prep_records(prep_df: DataFrame) -> DataFrame:
    """explode_prep_time_events rows → Kafka key (tenant, order) / value (the row as JSON)."""
    value = F.struct(
        "tenant_id",
        "order_id",
        F.unix_micros("confirmed_at").alias("confirmed_at_us"),
        F.unix_micros("occurred_at").alias("occurred_at_us"),
        "prep_seconds",
    )
    key = F.to_json(F.struct("tenant_id", "order_id"))
    return prep_df.select(key.alias("key"), F.to_json(value).alias("value"))


def with_parsed_prep(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows of the prep topic → PREP_SCHEMA rows (exact microsecond times)."""
    schema = "tenant_id string, order_id string, confirmed_at_us long, occurred_at_us long, prep_seconds double"
    parsed = F.from_json(F.col("value").cast("string"), schema)
    return kafka_df.select(parse_once(parsed)).select(
        "tenant_id",
        "order_id",
        F.timestamp_micros("confirmed_at_us").alias("confirmed_at"),
        F.timestamp_micros("occurred_at_us").alias("occurred_at"),
        "prep_seconds",
    )
