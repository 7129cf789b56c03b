"""Lake init: create the batch layer's Delta tables (empty) and publish them and the seam views in Trino.

Run once by `lakepulse up` on a fresh lake, so an analyst sees every table and view before the first
hourly run: with no seam yet, every minute is served from Pinot. The schemas come from the batch jobs'
own transforms applied to no rows, so the first hourly run appends to exactly the tables it would have made.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from lakepulse.aggregations import filter_valid_events, with_normalized_events, with_order_state, with_rollup
from lakepulse.batch.seam import publish
from lakepulse.settings import get_settings
from spark_jobs.bronze import with_deduplicated_events
from spark_jobs.common import (
    EVENTS,
    GOLD_TABLES,
    ORDERS,
    USER_ACTIVITY,
    Lake,
    TableSpec,
    TimeRange,
    batch_spark,
    ensure_table,
)
from spark_jobs.gold import with_gold_minutes, with_user_activity_daily, with_window_date
from spark_jobs.raw import RAW_SCHEMA

_ANY_MINUTE = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC))


def empty_tables(spark: SparkSession) -> list[tuple[TableSpec, DataFrame]]:
    """Every batch table with the schema its job writes, as an empty DataFrame."""
    events_df = with_deduplicated_events(spark.createDataFrame([], RAW_SCHEMA))
    normalized_df = filter_valid_events(with_normalized_events(events_df))
    minutes_df = with_gold_minutes(normalized_df, _ANY_MINUTE)
    tables = [(EVENTS, events_df), (GOLD_TABLES["minute"], minutes_df)]
    for grain in ("hour", "day"):
        rolled_df = with_window_date(with_rollup(minutes_df.drop("window_date"), grain))
        tables.append((GOLD_TABLES[grain], rolled_df))
    tables.append((ORDERS, with_order_state(normalized_df, touched_by=F.lit(True))))
    tables.append((USER_ACTIVITY, with_user_activity_daily(normalized_df)))
    return tables


def run(spark: SparkSession, lake: Lake) -> dict[str, object]:
    """Create the tables that do not exist yet, then register them and (re)publish the views."""
    for spec, empty_df in empty_tables(spark):
        ensure_table(spark, empty_df, spec, lake.path(spec))
    return publish(get_settings(), lake.seam_uri, lake.trino_schema, lake.delta_root)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: prints the published seam."""
    del argv
    spark = batch_spark("lakepulse-init-lake")
    try:
        print(json.dumps(run(spark, Lake.from_settings(get_settings()))))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
