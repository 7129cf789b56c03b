"""Backfill: rebuild any [start, end) from the raw archive — bronze, gold, quality gate, reconcile — day by day."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from pyspark.sql import SparkSession

from lakepulse.settings import get_settings
from spark_jobs import bronze, gold, quality, reconcile
from spark_jobs.common import Lake, TimeRange, batch_spark, job_args

CHUNK = timedelta(days=1)


def chunks(rng: TimeRange, size: timedelta = CHUNK) -> Iterator[TimeRange]:
    """The range cut into consecutive pieces of at most `size` (bounded work per Spark job)."""
    start = rng.start
    while start < rng.end:
        end = min(start + size, rng.end)
        yield TimeRange(start, end, rng.metrics)
        start = end


def run(spark: SparkSession, lake: Lake, rng: TimeRange, check: bool = True,
        repair_pinot: bool = True) -> list[dict[str, Any]]:
    """Rebuild chunk by chunk; a failed gate (QualityError) stops before reconciling that chunk."""
    results = []
    for piece in chunks(rng):
        result: dict[str, Any] = {"range": [piece.start.isoformat(), piece.end.isoformat()]}
        result["bronze"] = bronze.run(spark, lake, piece)
        result["gold"] = gold.run(spark, lake, piece)
        if check:
            result["quality"] = quality.run(spark, lake, piece).splitlines()[0]
        if repair_pinot:
            repaired = reconcile.run(spark, lake, piece, get_settings())
            result["reconcile"] = repaired.get("differences", repaired.get("skipped"))
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point."""
    rng, lake, args = job_args(__doc__ or "", argv)
    spark = batch_spark("lakepulse-backfill")
    try:
        print(json.dumps(run(spark, lake, rng, args.quality, args.reconcile), indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
