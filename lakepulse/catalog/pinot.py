"""Pinot schemas and REALTIME upsert table configs, derived from the row contracts (`rows.py`) the aggregation
library produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
)

from lakepulse.catalog.rows import (
    COURIER_KEY,
    COURIER_STATE_SCHEMA,
    ORDER_KEY,
    ORDER_STATE_SCHEMA,
    PARTIAL_KEY,
    PARTIAL_SCHEMA,
)
from lakepulse.settings import Settings

KAFKA30_CONSUMER_FACTORY = "org.apache.pinot.plugin.stream.kafka30.KafkaConsumerFactory"
KAFKA_JSON_DECODER = "org.apache.pinot.plugin.stream.kafka.KafkaJSONMessageDecoder"


@dataclass(frozen=True)
class PinotTable:
    """One REALTIME upsert table fed by one Kafka topic keyed by the primary key."""

    name: str
    topic_setting: str  # the Settings field naming the topic
    schema: StructType
    primary_key: tuple[str, ...]
    time_column: str
    metric_columns: tuple[str, ...] = ()
    inverted_index: tuple[str, ...] = ()
    json_index: tuple[str, ...] = ()
    retention_days: int = 7


TABLES: tuple[PinotTable, ...] = (
    PinotTable(
        name="metrics_minute",
        topic_setting="topic_metrics_minute",
        schema=PARTIAL_SCHEMA,
        primary_key=PARTIAL_KEY,
        time_column="window_start",
        metric_columns=("count", "sum", "min", "max"),
        inverted_index=("tenant_id", "metric", "dims_key"),
        json_index=("dims",),
    ),
    PinotTable(
        name="orders_live",
        topic_setting="topic_orders_live",
        schema=ORDER_STATE_SCHEMA,
        primary_key=ORDER_KEY,
        time_column="last_event_at",
        metric_columns=("amount", "prep_seconds"),
        inverted_index=("tenant_id", "status"),
    ),
    PinotTable(
        name="couriers_live",
        topic_setting="topic_couriers_live",
        schema=COURIER_STATE_SCHEMA,
        primary_key=COURIER_KEY,
        time_column="last_event_at",
        inverted_index=("tenant_id", "status"),
    ),
)


def _default(setting: str) -> Any:
    # Checked-in configs use the local defaults of settings.py (env overrides would make them drift).
    return Settings.model_fields[setting].default


def _pinot_type(data_type: DataType) -> str:
    """The Pinot data type that holds what records.with_kafka_records writes for a Spark type."""
    if isinstance(data_type, StringType):
        return "STRING"
    if isinstance(data_type, LongType):
        return "LONG"
    if isinstance(data_type, DoubleType):
        return "DOUBLE"
    if isinstance(data_type, BooleanType):
        return "BOOLEAN"
    if isinstance(data_type, TimestampType):
        return "TIMESTAMP"
    if isinstance(data_type, BinaryType):
        return "BYTES"
    if isinstance(data_type, MapType):
        return "JSON"
    if isinstance(data_type, ArrayType):
        # Bucket counters travel as JSON text; Pinot multi-value columns cannot hold "absent" cleanly.
        return "STRING"
    raise TypeError(f"no Pinot type for Spark type {data_type}")


def pinot_schema(table: PinotTable) -> dict[str, Any]:
    """The Pinot schema JSON for one table."""
    dimensions: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    date_times: list[dict[str, Any]] = []
    for field in table.schema.fields:
        pinot_type = _pinot_type(field.dataType)
        spec: dict[str, Any] = {"name": field.name, "dataType": pinot_type}
        if not field.nullable:
            spec["notNull"] = True
        if pinot_type == "TIMESTAMP":
            spec["format"] = "1:MILLISECONDS:TIMESTAMP"
            spec["granularity"] = (
                "1:MINUTES" if field.name in ("window_start", "window_end") else "1:MILLISECONDS"
            )
            date_times.append(spec)
        elif field.name in table.metric_columns:
            metrics.append(spec)
        else:
            dimensions.append(spec)
    return {
        "schemaName": table.name,
        "enableColumnBasedNullHandling": True,
        "primaryKeyColumns": list(table.primary_key),
        "dimensionFieldSpecs": dimensions,
        "metricFieldSpecs": metrics,
        "dateTimeFieldSpecs": date_times,
    }


def pinot_table(table: PinotTable, kafka_bootstrap: str | None = None) -> dict[str, Any]:
    """The Pinot REALTIME upsert table config JSON for one table."""
    no_dictionary = [
        f.name for f in table.schema.fields if isinstance(f.dataType, BinaryType | ArrayType | MapType)
    ]
    stream = {
        "streamType": "kafka",
        "stream.kafka.topic.name": _default(table.topic_setting),
        "stream.kafka.broker.list": kafka_bootstrap or _default("kafka_bootstrap"),
        "stream.kafka.consumer.factory.class.name": KAFKA30_CONSUMER_FACTORY,
        "stream.kafka.decoder.class.name": KAFKA_JSON_DECODER,
        "stream.kafka.consumer.prop.auto.offset.reset": "smallest",
        # Segments seal by size or after 6 h, never by a tiny row count (consuming segments are queryable).
        "realtime.segment.flush.threshold.rows": "0",
        "realtime.segment.flush.threshold.time": "6h",
        "realtime.segment.flush.threshold.segment.size": "100M",
    }
    return {
        "tableName": table.name,
        "tableType": "REALTIME",
        "segmentsConfig": {
            "schemaName": table.name,
            "timeColumnName": table.time_column,
            "replication": "1",
            "retentionTimeUnit": "DAYS",
            "retentionTimeValue": str(table.retention_days),
        },
        "tenants": {"broker": "DefaultTenant", "server": "DefaultTenant"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "invertedIndexColumns": list(table.inverted_index),
            "jsonIndexColumns": list(table.json_index),
            "noDictionaryColumns": no_dictionary,
        },
        "routing": {"instanceSelectorType": "strictReplicaGroup"},
        "upsertConfig": {"mode": "FULL", "comparisonColumns": ["updated_at"]},
        "ingestionConfig": {"streamIngestionConfig": {"streamConfigMaps": [stream]}},
        "metadata": {"customConfigs": {"generated_by": "lakepulse.catalog.generate"}},
    }


def table_by_name(name: str) -> PinotTable:
    """The PinotTable called `name`."""
    for table in TABLES:
        if table.name == name:
            return table
    raise KeyError(f"unknown Pinot table {name!r}; known: {[t.name for t in TABLES]}")
