"""Reconcile: compare Pinot's minute rows with Delta for a range, report, republish corrections to Kafka."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, SparkSession

from lakepulse.aggregations import PARTIAL_COLUMNS, PARTIAL_KEY, PARTIAL_SCHEMA, with_kafka_records
from lakepulse.batch.pinot import minute_rows, retention_start
from lakepulse.settings import Settings, get_settings
from spark_jobs.common import GOLD_TABLES, Lake, TimeRange, batch_spark, job_args
from spark_jobs.gold import partial_scope

PINOT_SCHEMA = (
    "tenant_id string, metric string, dims_key string, dims string, window_start long, count long, sum double, "
    "min double, max double, buckets string, hll_sketch string, theta_sketch string, updated_at long"
)
SUM_TOLERANCE = 1e-9
SAMPLE = 20


def with_pinot_partials(pinot_df: DataFrame) -> DataFrame:
    """Broker rows (epoch millis, hex sketches, JSON text) → the partial-row types Delta holds."""
    def sketch(col: str) -> Column:
        # Pinot fills a null BYTES column with empty bytes: no sketch.
        return F.when(F.length(col) > 0, F.unhex(col))

    return pinot_df.select(
        "tenant_id", "metric", "dims_key",
        F.from_json("dims", "map<string,string>").alias("dims"),
        F.timestamp_millis("window_start").alias("window_start"),
        "count", "sum", "min", "max",
        F.when(F.col("buckets").isin("null", ""), None).otherwise(F.col("buckets")).alias("buckets_json"),
        sketch("hll_sketch").alias("hll_sketch"),
        sketch("theta_sketch").alias("theta_sketch"),
    )


def _sum_differs(a: Column, b: Column) -> Column:
    a, b = F.coalesce(a, F.lit(0.0)), F.coalesce(b, F.lit(0.0))
    return F.abs(a - b) > F.lit(SUM_TOLERANCE) * F.greatest(F.lit(1.0), F.abs(b))


def with_minute_differences(delta_df: DataFrame, pinot_df: DataFrame) -> DataFrame:
    """Delta partial rows vs Pinot partial rows (with_pinot_partials) → one row per differing key:
    PARTIAL_KEY + `difference` (missing_in_pinot, extra_in_pinot, values_differ) + both counts."""
    d = delta_df.select(*PARTIAL_KEY, "count", "sum", "min", "max",
                        F.to_json("buckets").alias("buckets_json"),
                        F.hll_sketch_estimate("hll_sketch").alias("hll"), F.lit(True).alias("_in_delta"))
    p = pinot_df.select(*PARTIAL_KEY, *[F.col(c).alias(f"p_{c}") for c in ("count", "sum", "min", "max",
                                                                              "buckets_json")],
                        F.hll_sketch_estimate("hll_sketch").alias("p_hll"), F.lit(True).alias("_in_pinot"))
    joined = d.join(p, list(PARTIAL_KEY), "full_outer")
    # Only the partial values matter; nulls Pinot stores as defaults (0) compare equal to Delta's nulls.
    differs = (
        ~F.col("count").eqNullSafe(F.col("p_count"))
        | _sum_differs(F.col("sum"), F.col("p_sum"))
        | _sum_differs(F.col("min"), F.col("p_min"))
        | _sum_differs(F.col("max"), F.col("p_max"))
        | ~F.col("buckets_json").eqNullSafe(F.col("p_buckets_json"))
        | ~F.col("hll").eqNullSafe(F.col("p_hll"))
    )
    difference = (
        F.when(F.col("_in_pinot").isNull(), "missing_in_pinot")
        .when(F.col("_in_delta").isNull(), F.when(F.col("p_count") != 0, "extra_in_pinot"))
        .when(differs, "values_differ")
    )
    return joined.select(*PARTIAL_KEY, difference.alias("difference"), F.col("count").alias("delta_count"),
                         F.col("p_count").alias("pinot_count")).where(F.col("difference").isNotNull())


def with_corrections(delta_df: DataFrame, pinot_df: DataFrame, diff_df: DataFrame, now: datetime) -> DataFrame:
    """The rows to republish: Delta's row for missing/differing keys, a zero row (count 0) for keys only
    Pinot has (an upsert table cannot delete), all with updated_at = now so the upsert takes them."""
    stamp = F.lit(now).cast("timestamp")
    fixes_df = delta_df.join(diff_df.where("difference != 'extra_in_pinot'").select(*PARTIAL_KEY),
                             list(PARTIAL_KEY), "left_semi").select(
        *[stamp.alias(c) if c == "updated_at" else F.col(c) for c in PARTIAL_COLUMNS])
    zero = {"count": F.lit(0).cast("long"), "updated_at": stamp,
            "window_end": F.col("window_start") + F.expr("INTERVAL 1 MINUTE")}
    extra_df = pinot_df.join(diff_df.where("difference = 'extra_in_pinot'").select(*PARTIAL_KEY),
                             list(PARTIAL_KEY), "left_semi").select(
        *[zero.get(f.name, F.col(f.name) if f.name in PARTIAL_KEY or f.name == "dims"
                   else F.lit(None)).cast(f.dataType).alias(f.name) for f in PARTIAL_SCHEMA.fields])
    return fixes_df.unionByName(extra_df)


def run(spark: SparkSession, lake: Lake, rng: TimeRange, settings: Settings | None = None,
        tenant_prefix: str = "", republish: bool = True) -> dict[str, Any]:
    """Compare the range (clipped to what Pinot retains), republish corrections, return the report."""
    settings = settings or get_settings()
    start = max(rng.start, retention_start())
    report: dict[str, Any] = {"range": [rng.start.isoformat(), rng.end.isoformat()], "compared_from":
                              start.isoformat()}
    if start >= rng.end:
        return {**report, "skipped": "range is older than Pinot's retention"}
    window = TimeRange(start, rng.end, rng.metrics)
    delta_df = (spark.read.format("delta").load(lake.path(GOLD_TABLES["minute"]))
                .where(partial_scope(window, rng.metrics, None)).drop("window_date"))
    if tenant_prefix:
        delta_df = delta_df.where(F.col("tenant_id").startswith(tenant_prefix))
    delta_df = delta_df.cache()
    rows = minute_rows(settings.pinot_broker_url, start, rng.end, tenant_prefix)
    raw_pinot_df = spark.createDataFrame(
        [tuple(r.get(c) for c in PINOT_SCHEMA_COLUMNS) for r in rows], PINOT_SCHEMA)
    if rng.metrics:
        raw_pinot_df = raw_pinot_df.where(F.col("metric").isin(list(rng.metrics)))
    pinot_df = with_pinot_partials(raw_pinot_df).cache()
    try:
        diff_df = with_minute_differences(delta_df, pinot_df).cache()
        by_kind = {r["difference"]: r["n"] for r in diff_df.groupBy("difference").agg(F.count("*").alias("n"))
                   .collect()}
        report.update({
            "delta_rows": delta_df.count(),
            "pinot_rows": len(rows),
            "differences": {k: int(by_kind.get(k, 0)) for k in ("missing_in_pinot", "extra_in_pinot",
                                                                 "values_differ")},
            "sample": [{**r.asDict(), "window_start": r["window_start"].isoformat()}
                       for r in diff_df.orderBy(*PARTIAL_KEY).limit(SAMPLE).collect()],
        })
        republished = 0
        if republish and sum(report["differences"].values()):
            records_df = with_kafka_records(with_corrections(delta_df, pinot_df, diff_df, datetime.now(UTC)))
            records_df = records_df.cache()
            republished = records_df.count()
            (records_df.write.format("kafka")
             .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
             .option("topic", settings.topic_metrics_minute).save())
            records_df.unpersist()
        report["republished"] = republished
    finally:
        delta_df.unpersist()
        pinot_df.unpersist()
        spark.catalog.clearCache()
    return report


PINOT_SCHEMA_COLUMNS = tuple(c.split()[0] for c in PINOT_SCHEMA.split(", "))


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: prints the report as JSON."""
    rng, lake, _ = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-reconcile")
    try:
        print(json.dumps(run(spark, lake, rng), indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
