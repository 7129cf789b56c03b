"""Late hours: rebuild the event hours the hourly run's plan_late found (archived late, already served from Delta) —
write, audit, publish and reconcile Pinot, range by range, from the run's archive snapshot (lakepulse.batch.late)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from lakepulse.settings import get_settings
from spark_jobs import backfill
from spark_jobs.common import (
    ArchiveCutoffs,
    Lake,
    TimeRange,
    batch_spark,
    parse_archived_before,
    parse_flag,
    parse_time,
    stage_id_of,
)


def parse_ranges(text: str) -> list[TimeRange]:
    """--ranges: JSON [[start, end], ...] (plan_late's "ranges") → ranges; empty text or [] = none."""
    if not text.strip():
        return []
    try:
        given = json.loads(text)
        if not isinstance(given, list):
            raise ValueError("not a list")
        return [TimeRange(parse_time(start), parse_time(end)) for start, end in given]
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(f'expected JSON [["start", "end"], ...], got {text!r}') from err


def run(spark: SparkSession, lake: Lake, ranges: Sequence[TimeRange], stage_id: str,
        archived_before: ArchiveCutoffs | None = None, repair_pinot: bool = True) -> list[dict[str, Any]]:
    """Rebuild each range as a backfill does (gate first; a failure publishes nothing of that range and stops)."""
    results: list[dict[str, Any]] = []
    for rng in ranges:
        results += backfill.run(spark, lake, rng, True, repair_pinot, f"{stage_id}-late", archived_before)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """spark-submit entry point; starts no Spark session when there is nothing to rebuild."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranges", type=parse_ranges, default=[], help='JSON [["start", "end"], ...]')
    parser.add_argument("--archived-before", type=parse_archived_before, default=None,
                        help='the run\'s archive snapshot: {"topic:partition": offset, ...}')
    parser.add_argument("--stage-id", type=stage_id_of, required=True, help="the run's staging id")
    parser.add_argument("--lake-root", default="", help="isolated lake prefix (default: the production lake)")
    parser.add_argument("--reconcile", type=parse_flag, default=True, help="repair Pinot (true/false)")
    args = parser.parse_args(argv)
    if not args.ranges:
        print(json.dumps({"late_ranges": 0}))
        return
    lake = Lake.from_settings(get_settings(), args.lake_root or None)
    spark = batch_spark("lakepulse-late")
    try:
        print(json.dumps(run(spark, lake, args.ranges, args.stage_id, args.archived_before, args.reconcile),
                         indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
