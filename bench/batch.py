"""Batch rebuild benchmark: one day of raw events (default 10M) → bronze → gold, wall time per step.

Generating 10M events with the Python generator would take longer than the rebuild itself, so the raw
archive is synthesised with Spark at scale in the archive's exact layout (event_date=/event_hour=
Parquet, RAW_SCHEMA columns, ~1 % duplicate sends) with the generator's event mix and property shapes.

    .venv/bin/python -m bench.batch --events 10000000 [--append BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, SparkSession

from lakepulse.platform.components.minio import s3_client
from lakepulse.settings import Settings, get_settings
from spark_jobs import bronze, gold, quality
from spark_jobs.common import Lake, TimeRange, batch_spark
from spark_jobs.raw import RAW_COLUMNS

DAY = datetime(2026, 3, 2, tzinfo=UTC)
TENANTS = 200
STATUSES = ("confirmed", "in_kitchen", "ready_for_pickup", "picked_up", "delivered", "cancelled")


def _pick(options: tuple[str, ...], seed: Column) -> Column:
    return F.element_at(F.array(*[F.lit(o) for o in options]), (F.abs(seed) % len(options) + 1).cast("int"))


def synthetic_raw(spark: SparkSession, events: int, duplicate_fraction: float = 0.01) -> DataFrame:
    """`events` raw rows spread over DAY (plus duplicate sends), shaped like the generator's traffic."""
    ids = spark.range(events, numPartitions=max(4, events // 500_000))
    h = F.xxhash64("id")
    kind = F.abs(h) % 100
    order = F.concat(F.lit("o-"), (F.col("id") / 11).cast("long").cast("string"))
    user = F.concat(F.lit("user-"), (F.abs(F.xxhash64(F.col("id") / 7)) % 50_000).cast("string"))
    country, device = _pick(("SE", "DE", "FR", "ES", "GB"), h / 7), _pick(("ios", "android", "web"), h / 13)
    item = F.struct(F.concat(F.lit("item-"), (F.abs(h) % 40).cast("string")).alias("item_id"),
                    F.lit("dish").alias("name"), _pick(("pizza", "sushi", "indian"), h / 17).alias("category"),
                    (F.abs(h) % 3 + 1).alias("quantity"), F.lit(9.5).alias("unit_price"))
    props = (
        F.when(kind < 8, F.to_json(F.struct(order.alias("order_id"), user.alias("user_id"),
                                            (F.abs(h) % 5000 / 100).alias("amount"), F.lit("EUR").alias("currency"),
                                            _pick(("app", "web", "partner"), h / 3).alias("channel"),
                                            country.alias("country"), device.alias("device"),
                                            F.array(item).alias("items"))))
        .when(kind < 40, F.to_json(F.struct(order.alias("order_id"), _pick(STATUSES, h / 5).alias("status"))))
        .when(kind < 55, F.to_json(F.struct(F.lit("c-1").alias("courier_id"), order.alias("order_id"),
                                            F.lit("assigned").alias("status"))))
        .when(kind < 58, F.to_json(F.struct(order.alias("order_id"), user.alias("user_id"),
                                            (F.abs(h) % 5 + 1).alias("food_rating"),
                                            (F.abs(h) % 5 + 1).alias("delivery_rating"))))
        .when(kind < 59, F.to_json(F.struct(F.lit("checkout").alias("service"), F.lit("TIMEOUT").alias("code"))))
        .otherwise(F.to_json(F.struct(user.alias("user_id"), F.lit("home").alias("page"), country.alias("country"),
                                      device.alias("device"), F.lit("pizza").alias("category"))))
    )
    event_type = (F.when(kind < 8, "order_placed").when(kind < 40, "order_status_changed")
                  .when(kind < 55, "courier_status_changed").when(kind < 58, "rating_submitted")
                  .when(kind < 59, "app_error").otherwise("page_view"))
    occurred = F.timestamp_micros(F.lit(int(DAY.timestamp() * 1e6)) + (F.col("id") * (86_400_000_000 // events)))
    rows = ids.select(
        F.concat(F.lit("bench-"), F.col("id").cast("string")).alias("event_id"),
        F.concat(F.lit("bench-rest-"), F.lpad((F.abs(h) % TENANTS).cast("string"), 4, "0")).alias("tenant_id"),
        event_type.alias("event_type"), occurred.alias("occurred_at"),
        (occurred + F.expr("INTERVAL 1 SECOND")).alias("received_at"), F.lit("bench").alias("source"),
        F.lit(None).cast("string").alias("device_family"), props.alias("properties"),
        F.lit("events.raw").alias("kafka_topic"), (F.abs(h) % 6).cast("int").alias("kafka_partition"),
        F.col("id").alias("kafka_offset"),
    )
    dups = rows.where(F.abs(F.xxhash64("event_id", F.lit(1))) % 10_000 < int(duplicate_fraction * 10_000))
    dups = dups.withColumn("kafka_offset", F.col("kafka_offset") + events)
    return rows.unionByName(dups).select(*RAW_COLUMNS)


def delete_prefix(settings: Settings, root: str) -> None:
    """Delete every object under an s3a:// root of the lake bucket (a day of events is gigabytes)."""
    client = s3_client(settings)
    prefix = root.removeprefix(f"s3a://{settings.s3_bucket}/").rstrip("/") + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys})


def main() -> None:
    """Generate, rebuild, report (and optionally append to BENCHMARKS.md)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--quality", action="store_true", help="also time the quality gate")
    parser.add_argument("--append", type=Path, default=None, help="append the result to this markdown file")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's lake (default: delete it)")
    args = parser.parse_args()
    # local[2] runs every task in the driver JVM; the default 1 GB heap is too small for a day of events.
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 6g pyspark-shell")
    settings = get_settings()
    lake = Lake.from_settings(settings, f"s3a://{settings.s3_bucket}/tmp/bench_batch_{uuid.uuid4().hex[:8]}")
    spark = batch_spark("lakepulse-bench-batch")
    rng = TimeRange(DAY, DAY + timedelta(days=1))
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        raw_df = synthetic_raw(spark, args.events)
        (raw_df.withColumn("event_date", F.date_format("occurred_at", "yyyy-MM-dd"))
         .withColumn("event_hour", F.date_format("occurred_at", "HH"))
         .repartition("event_date", "event_hour").write.partitionBy("event_date", "event_hour")
         .parquet(lake.raw_root))
        timings["generate raw archive"] = time.monotonic() - t0
        t1 = time.monotonic()
        bronze_rows = bronze.run(spark, lake, rng)["numTargetRowsInserted"]
        timings["bronze"] = time.monotonic() - t1
        t2 = time.monotonic()
        gold_counts = gold.run(spark, lake, rng)
        timings["gold (minute, hour, day, orders)"] = time.monotonic() - t2
        if args.quality:
            t3 = time.monotonic()
            quality.run(spark, lake, rng)
            timings["quality gate"] = time.monotonic() - t3
        timings["raw → gold (bronze + gold)"] = timings["bronze"] + timings["gold (minute, hour, day, orders)"]
    finally:
        spark.stop()
        if not args.keep:
            delete_prefix(settings, lake.raw_root.rsplit("/", 1)[0])
    result = {"events": args.events, "bronze_rows": bronze_rows,
              "minute_rows": gold_counts["minute"]["numTargetRowsInserted"], "seconds": timings}
    print(json.dumps(result, indent=2))
    if args.append:
        lines = [
            f"\n## Batch rebuild: one day of raw events → Delta gold ({datetime.now(UTC):%Y-%m-%d})\n",
            f"`python -m bench.batch --events {args.events}` on {platform.node()} (2 cores, shared, local[2]); "
            f"raw archive synthesised with Spark in the archive layout ({bronze_rows} distinct events + 1 % "
            f"duplicate sends), {result['minute_rows']} minute rows. Target: < 5 min for 10M.\n",
            "| step | wall time (s) |", "|---|---|",
            *[f"| {k} | {v:.0f} |" for k, v in timings.items()], "",
        ]
        with args.append.open("a") as out:
            out.write("\n".join(lines))


if __name__ == "__main__":
    main()
