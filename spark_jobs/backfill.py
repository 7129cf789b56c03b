"""Backfill: rebuild any [start, end) from the raw archive day by day — stage bronze and gold, run the quality gate on
the stage, publish, reconcile Pinot."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from pyspark.sql import SparkSession

from lakepulse.settings import get_settings
from spark_jobs import publish, reconcile
from spark_jobs.common import ArchiveCutoffs, Lake, TimeRange, batch_spark, job_args

CHUNK = timedelta(days=1)


def chunks(rng: TimeRange, size: timedelta = CHUNK) -> Iterator[TimeRange]:
    """The range cut into consecutive pieces of at most `size` (bounded work per Spark job)."""
    start = rng.start
    while start < rng.end:
        end = min(start + size, rng.end)
        yield TimeRange(start, end, rng.metrics)
        start = end


def run(spark: SparkSession, lake: Lake, rng: TimeRange, check: bool = True, repair_pinot: bool = True,
        stage_id: str = "", archived_before: ArchiveCutoffs | None = None) -> list[dict[str, Any]]:
    """Write, audit and publish chunk by chunk (each under its own stage `<stage_id>-<chunk start>`); a failed gate
    (QualityError) publishes nothing of that chunk and stops before reconciling it."""
    stage_id = stage_id or f"backfill-{uuid.uuid4().hex[:12]}"
    results = []
    for piece in chunks(rng):
        result: dict[str, Any] = {"range": [piece.start.isoformat(), piece.end.isoformat()]}
        result.update(publish.rebuild(spark, lake, piece, f"{stage_id}-{piece.start:%Y%m%dT%H%M}", archived_before,
                                      check))
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
        print(json.dumps(run(spark, lake, rng, args.quality, args.reconcile, args.stage_id, args.archived_before),
                         indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
