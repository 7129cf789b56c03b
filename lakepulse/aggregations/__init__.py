"""The one aggregation library both layers call: pure PySpark transforms, DataFrame in, DataFrame out."""

from lakepulse.aggregations.minute import (
    HLL_LG_CONFIG_K,
    THETA_LG_NOM_ENTRIES,
    dims_columns,
    split_by_sketch,
    with_minute_partials,
)
from lakepulse.aggregations.records import COURIER_KEY, ORDER_KEY, with_kafka_records
from lakepulse.aggregations.rollup import (
    GRANULARITIES,
    quantile_from_buckets,
    with_dims_projected,
    with_last_n_minutes,
    with_metric_value,
    with_rollup,
)
from lakepulse.aggregations.schema import (
    COURIER_STATE_SCHEMA,
    ORDER_STATE_SCHEMA,
    PARTIAL_COLUMNS,
    PARTIAL_KEY,
    PARTIAL_SCHEMA,
    PROPERTIES_SCHEMA,
    RAW_EVENT_SCHEMA,
    filter_valid_events,
    with_normalized_events,
    with_parsed_events,
)
from lakepulse.aggregations.state import (
    COURIER_STATUSES,
    ORDER_STATUSES,
    explode_prep_time_events,
    with_courier_state,
    with_order_state,
)

__all__ = [
    "COURIER_STATE_SCHEMA",
    "ORDER_STATE_SCHEMA",
    "COURIER_KEY",
    "COURIER_STATUSES",
    "GRANULARITIES",
    "HLL_LG_CONFIG_K",
    "ORDER_KEY",
    "ORDER_STATUSES",
    "PARTIAL_COLUMNS",
    "PARTIAL_KEY",
    "PARTIAL_SCHEMA",
    "PROPERTIES_SCHEMA",
    "RAW_EVENT_SCHEMA",
    "THETA_LG_NOM_ENTRIES",
    "dims_columns",
    "split_by_sketch",
    "explode_prep_time_events",
    "filter_valid_events",
    "quantile_from_buckets",
    "with_courier_state",
    "with_dims_projected",
    "with_kafka_records",
    "with_last_n_minutes",
    "with_metric_value",
    "with_minute_partials",
    "with_normalized_events",
    "with_order_state",
    "with_parsed_events",
    "with_rollup",
]
