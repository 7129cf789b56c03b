"""Rows → Kafka (key, value) JSON records in the form the Pinot tables generated from the catalog ingest."""

from __future__ import annotations

from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql.types import ArrayType, BinaryType, DataType, MapType, StructType, TimestampType

from lakepulse.catalog.rows import COURIER_KEY as COURIER_KEY
from lakepulse.catalog.rows import ORDER_KEY as ORDER_KEY
from lakepulse.catalog.rows import PARTIAL_KEY


def _pinot_encoded(name: str, data_type: DataType) -> Column:
    col = F.col(name)
    if isinstance(data_type, TimestampType):
        # Pinot TIMESTAMP columns take epoch milliseconds.
        return F.unix_millis(col).alias(name)
    if isinstance(data_type, BinaryType):
        # Pinot's JSON decoder reads BYTES columns as hex strings.
        return F.lower(F.hex(col)).alias(name)
    if isinstance(data_type, MapType | ArrayType | StructType):
        # Complex values travel as JSON text into Pinot JSON/STRING columns.
        return F.to_json(col).alias(name)
    return col.alias(name)


def with_kafka_records(rows_df: DataFrame, key_columns: Sequence[str] = PARTIAL_KEY) -> DataFrame:
    """Rows → `key` (the primary key as JSON, so the topic is partitioned by it, as Pinot upsert needs)
    and `value` (the whole row as JSON, Pinot-encoded), both strings, ready for the Kafka sink."""
    encoded = [_pinot_encoded(f.name, f.dataType) for f in rows_df.schema.fields]
    encoded_df = rows_df.select(*encoded)
    return encoded_df.select(
        F.to_json(F.struct(*[F.col(c) for c in key_columns])).alias("key"),
        F.to_json(F.struct(*[F.col(f.name) for f in rows_df.schema.fields])).alias("value"),
    )
