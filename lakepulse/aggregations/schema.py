"""Spark schemas: the raw event envelope in `events.raw`; the row contracts (lakepulse.catalog.rows) re-exported."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# The row contracts of the tables the aggregations feed live in the catalog, beside the table definitions derived
# from them (lakepulse.catalog.pinot); re-exported here, where the transforms that produce them are.
from lakepulse.catalog.rows import COURIER_STATE_SCHEMA as COURIER_STATE_SCHEMA
from lakepulse.catalog.rows import DIMS_TYPE as DIMS_TYPE
from lakepulse.catalog.rows import ORDER_STATE_SCHEMA as ORDER_STATE_SCHEMA
from lakepulse.catalog.rows import PARTIAL_COLUMNS as PARTIAL_COLUMNS
from lakepulse.catalog.rows import PARTIAL_KEY as PARTIAL_KEY
from lakepulse.catalog.rows import PARTIAL_SCHEMA as PARTIAL_SCHEMA

ITEM_SCHEMA = StructType(
    [
        StructField("item_id", StringType()),
        StructField("name", StringType()),
        StructField("category", StringType()),
        StructField("quantity", LongType()),
        StructField("unit_price", DoubleType()),
    ]
)

# The union of the properties the core event types carry (design.md §2). Fields an event type does not
# use stay null; unknown fields are ignored by from_json. Ratings are doubles so "4" and "4.0" both parse.
PROPERTIES_SCHEMA = StructType(
    [
        StructField("order_id", StringType()),
        StructField("user_id", StringType()),
        StructField("amount", DoubleType()),
        StructField("currency", StringType()),
        StructField("channel", StringType()),
        StructField("country", StringType()),
        StructField("device", StringType()),
        StructField("items", ArrayType(ITEM_SCHEMA)),
        StructField("status", StringType()),
        StructField("courier_id", StringType()),
        StructField("food_rating", DoubleType()),
        StructField("delivery_rating", DoubleType()),
        StructField("page", StringType()),
        StructField("category", StringType()),
        StructField("service", StringType()),
        StructField("code", StringType()),
    ]
)

# One JSON message value of Kafka `events.raw`: the envelope as sent plus the ingest service's
# received_at and device_family (lakepulse.events.SERVER_FIELDS).
RAW_EVENT_SCHEMA = StructType(
    [
        StructField("event_id", StringType()),
        StructField("tenant_id", StringType()),
        StructField("event_type", StringType()),
        StructField("occurred_at", TimestampType()),
        StructField("received_at", TimestampType()),
        StructField("source", StringType()),
        StructField("device_family", StringType()),
        StructField("properties", PROPERTIES_SCHEMA),
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in RAW_EVENT_SCHEMA.fields)
TIME_COLUMNS: tuple[str, ...] = ("occurred_at", "received_at")

# As JSON arrives: times stay text until rfc3339_timestamp reads them (from_json's own timestamp
# parser refuses RFC 3339 forms the ingest contract accepts, e.g. a lowercase "t"/"z").
WIRE_EVENT_SCHEMA = StructType(
    [StructField(f.name, StringType()) if f.name in TIME_COLUMNS else f for f in RAW_EVENT_SCHEMA.fields]
)


def rfc3339_timestamp(text: Column) -> Column:
    """RFC 3339 text (any case, "T" or space, Z or offset, up to ns) → UTC timestamp; null if unreadable."""
    return F.upper(text).try_cast(TimestampType())

def with_parsed_events(raw_df: DataFrame, value_col: str = "value") -> DataFrame:
    """Kafka-shaped rows (binary/string JSON in `value_col`) → one column per envelope field."""
    parsed = F.from_json(F.col(value_col).cast("string"), WIRE_EVENT_SCHEMA)
    return raw_df.select(parse_once(parsed)).select(
        *[(rfc3339_timestamp(F.col(c)) if c in TIME_COLUMNS else F.col(c)).alias(c) for c in EVENT_COLUMNS]
    )


def parse_once(parsed: Column) -> Column:
    """A parsed struct (from_json) → its fields as columns, parsed once whatever filters follow.

    Spark pushes a filter below the projection it reads and inlines the aliased expression into it, so
    `filter(tenant_id IS NOT NULL)` over `from_json(...).tenant_id` parses every record once more per
    field the filter names (SPARK-47672); a Generate's output cannot be inlined. Measured on 1M events:
    parse + filter_valid_events 7.9-8.9 s before, 3.3-3.5 s after (BENCHMARKS.md)."""
    return F.inline_outer(F.array(parsed))


def updated_at_or_default(events_df: DataFrame, updated_at: Column | None) -> Column:
    """`updated_at` of an output row (the Pinot upsert comparison column): the given column, else the time
    of the computation: the job's current_timestamp() in batch, the time each row is computed in streaming.

    Not current_timestamp() in streaming: a streaming query turns it into a literal of each micro-batch's
    time, and Spark writes literals into the generated Java code, so every micro-batch's final stage would
    be new code, compiled by Janino and then by the JIT again (measured: ~9 new classes per second and 0.8 s
    of JIT time per second in the minute JVM). A reflective call is evaluated at run time and keeps the code
    the same; milliseconds are what Pinot stores anyway."""
    if updated_at is not None:
        return updated_at
    if events_df.isStreaming:
        return F.timestamp_millis(F.expr("reflect('java.lang.System', 'currentTimeMillis')").cast("long"))
    return F.current_timestamp()


# Optional column beside the JSON text `properties`: the same properties already parsed with
# PROPERTIES_SCHEMA (bronze stores it so that every later read skips the JSON parse).
TYPED_PROPERTIES = "typed_properties"


def with_normalized_events(events_df: DataFrame) -> DataFrame:
    """Envelope rows from any landing (properties as JSON string or struct, times as string or timestamp)
    → exactly RAW_EVENT_SCHEMA's columns and types."""
    types = {f.name: f.dataType for f in events_df.schema.fields}
    cols = []
    for field in RAW_EVENT_SCHEMA.fields:
        name = field.name
        if name not in types:
            cols.append(F.lit(None).cast(field.dataType).alias(name))
        elif name == "properties" and isinstance(types[name], StringType):
            parsed = F.from_json(F.col(name), PROPERTIES_SCHEMA)
            typed = types.get(TYPED_PROPERTIES)
            if typed is not None and typed.simpleString() == PROPERTIES_SCHEMA.simpleString():
                # Parsed once when the row was written (bronze); rows from before that are parsed here.
                parsed = F.coalesce(F.col(TYPED_PROPERTIES), parsed)
            cols.append(parsed.alias(name))
        elif name == "properties":
            # A struct with other/extra fields (e.g. a Parquet landing): round-trip through JSON so that
            # missing fields become null and types coerce exactly as they would from Kafka.
            cols.append(F.from_json(F.to_json(F.col(name)), PROPERTIES_SCHEMA).alias(name))
        elif name in TIME_COLUMNS and isinstance(types[name], StringType):
            cols.append(rfc3339_timestamp(F.col(name)).alias(name))
        else:
            cols.append(F.col(name).cast(field.dataType).alias(name))
    return events_df.select(*cols)


def filter_valid_events(events_df: DataFrame) -> DataFrame:
    """Drop rows no metric can place: unparsable JSON, or no tenant, type or event time."""
    return events_df.filter(
        F.col("tenant_id").isNotNull() & F.col("event_type").isNotNull() & F.col("occurred_at").isNotNull()
    )
