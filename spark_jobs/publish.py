"""Publish: a run's staged and checked tables → the served Delta tables, one MERGE (one transaction) per table.

The last step of write → audit → publish (see spark_jobs.staging): the hourly DAG runs it after the quality gate
passed on the stage its bronze and gold tasks wrote. If another writer changed what the stage read in the meantime,
the range is rebuilt here (stage + gate again, from the tables as they are now) before anything is published.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from spark_jobs import bronze, gold, quality
from spark_jobs.common import ArchiveCutoffs, Lake, TableSpec, TimeRange, batch_spark, job_args
from spark_jobs.staging import Published, Stage, publish


def read_partitions(rng: TimeRange) -> dict[TableSpec, list[str]]:
    """The served partitions a rebuild of the range reads (bronze reads its own scope of events: inside gold's)."""
    return gold.input_partitions(rng)


def stage_and_check(spark: SparkSession, into: Stage, archived_before: ArchiveCutoffs | None = None,
                    check: bool = True) -> dict[str, Any]:
    """Write and audit: stage the range (bronze, then gold) and run the quality gate on the staged tables (raises
    QualityError, leaving the stage for inspection)."""
    result: dict[str, Any] = {"staged": {**bronze.stage(spark, into, archived_before), **gold.stage(spark, into)}}
    if check:
        result["quality"] = quality.run(spark, into.lake, into.rng, archived_before, into).splitlines()[0]
    return result


def run(spark: SparkSession, into: Stage, archived_before: ArchiveCutoffs | None = None,
        check: bool = True) -> Published:
    """Publish a staged (and checked) range; rebuilds it first if the served tables moved under it."""
    return publish(spark, into, read_partitions(into.rng),
                   rebuild=lambda: stage_and_check(spark, into, archived_before, check))


def rebuild(spark: SparkSession, lake: Lake, rng: TimeRange, stage_id: str,
            archived_before: ArchiveCutoffs | None = None, check: bool = True) -> dict[str, Any]:
    """Write, audit, publish one range in this process (backfill, late hours, the in-process pipeline)."""
    into = Stage(lake, stage_id, rng)
    result = stage_and_check(spark, into, archived_before, check)
    result["published"] = run(spark, into, archived_before, check).report()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point: --stage-id names the run whose stage is published; prints what was written."""
    rng, lake, args = job_args(__doc__ or "", argv)
    if not args.stage_id:
        raise SystemExit("publish needs --stage-id (the run whose staged tables to publish)")
    spark = batch_spark("lakepulse-publish")
    try:
        print(json.dumps(run(spark, Stage(lake, args.stage_id, rng), args.archived_before, args.quality).report(),
                         indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
