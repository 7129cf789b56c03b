"""The row contracts of the tables the aggregation library writes and the serving layer reads: the minute
partial-aggregate row (Kafka `metrics.minute`, Pinot `metrics_minute`, Delta) and the live order and courier
state rows (Pinot upsert tables), each with its primary key.

They live in the catalog, beside the table definitions derived from them (`pinot.py`); the aggregation library
(lakepulse.aggregations, which depends on the catalog) produces rows of exactly these schemas and re-exports them.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakepulse.events import ORDER_STATUSES

DIMS_TYPE = MapType(StringType(), StringType())

# The minute partial-aggregate row contract, shared by Kafka `metrics.minute`, Pinot and Delta.
PARTIAL_SCHEMA = StructType(
    [
        StructField("tenant_id", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("dims_key", StringType(), False),
        StructField("dims", DIMS_TYPE, False),
        StructField("window_start", TimestampType(), False),
        StructField("window_end", TimestampType(), False),
        StructField("count", LongType(), False),
        StructField("sum", DoubleType()),
        StructField("min", DoubleType()),
        StructField("max", DoubleType()),
        StructField("hll_sketch", BinaryType()),
        StructField("theta_sketch", BinaryType()),
        StructField("buckets", ArrayType(LongType())),
        StructField("updated_at", TimestampType(), False),
    ]
)

PARTIAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in PARTIAL_SCHEMA.fields)
PARTIAL_KEY: tuple[str, ...] = ("tenant_id", "metric", "dims_key", "window_start")


ORDER_STATE_SCHEMA = StructType(
    [
        StructField("tenant_id", StringType(), False),
        StructField("order_id", StringType(), False),
        StructField("status", StringType()),
        StructField("status_at", TimestampType()),
        *[StructField(f"{s}_at", TimestampType()) for s in ORDER_STATUSES],
        StructField("amount", DoubleType()),
        StructField("currency", StringType()),
        StructField("prep_seconds", DoubleType()),
        StructField("food_rating", DoubleType()),
        StructField("delivery_rating", DoubleType()),
        StructField("rated_at", TimestampType()),
        StructField("last_event_at", TimestampType(), False),
        StructField("updated_at", TimestampType(), False),
    ]
)

COURIER_STATE_SCHEMA = StructType(
    [
        StructField("tenant_id", StringType(), False),
        StructField("courier_id", StringType(), False),
        StructField("status", StringType()),
        StructField("order_id", StringType()),
        StructField("status_at", TimestampType()),
        StructField("is_waiting", BooleanType()),
        StructField("last_event_at", TimestampType(), False),
        StructField("updated_at", TimestampType(), False),
    ]
)

ORDER_KEY: tuple[str, ...] = ("tenant_id", "order_id")
COURIER_KEY: tuple[str, ...] = ("tenant_id", "courier_id")
