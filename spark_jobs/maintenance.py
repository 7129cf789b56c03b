"""Maintenance: OPTIMIZE (compaction) and VACUUM of the batch layer's Delta tables, old stages of runs whose gate
failed; Pinot retention."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from lakepulse.batch.pinot import enforce_retention
from lakepulse.settings import get_settings
from spark_jobs.common import EVENTS, GOLD_TABLES, ORDERS, USER_ACTIVITY, Lake, TableSpec, batch_spark
from spark_jobs.staging import purge_stages

TABLES: tuple[TableSpec, ...] = (EVENTS, *GOLD_TABLES.values(), ORDERS, USER_ACTIVITY)
# Readers (Trino, time travel) may hold snapshots for a while: keep a week of old files.
VACUUM_HOURS = 168


def run(spark: SparkSession, lake: Lake, vacuum_hours: int = VACUUM_HOURS) -> dict[str, Any]:
    """Compact and vacuum every existing table, delete stages kept longer than STAGING_KEEP; returns per-table file
    counts and the deleted stages."""
    from delta.tables import DeltaTable

    report: dict[str, Any] = {}
    for spec in TABLES:
        path = lake.path(spec)
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        table = DeltaTable.forPath(spark, path)
        optimized = table.optimize().executeCompaction().collect()[0]["metrics"]
        table.vacuum(vacuum_hours)
        report[spec.name] = {"files_added": optimized["numFilesAdded"],
                             "files_removed": optimized["numFilesRemoved"]}
    # A failed gate keeps its stage for inspection; a week later nobody is looking at it any more.
    report["stages_deleted"] = purge_stages(spark, lake)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: --what delta|pinot|all."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--what", choices=("delta", "pinot", "all"), default="all")
    parser.add_argument("--lake-root", default="")
    parser.add_argument("--vacuum-hours", type=int, default=VACUUM_HOURS)
    args = parser.parse_args(argv)
    settings = get_settings()
    report: dict[str, Any] = {}
    if args.what in ("pinot", "all"):
        report["pinot"] = enforce_retention(settings.pinot_controller_url)
    if args.what in ("delta", "all"):
        spark = batch_spark("lakepulse-maintenance")
        try:
            report["delta"] = run(spark, Lake.from_settings(settings, args.lake_root or None), args.vacuum_hours)
        finally:
            spark.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
