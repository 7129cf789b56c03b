"""The hourly pipeline in one process (bronze → gold → quality → reconcile → seam), as the hourly DAG runs it."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from lakepulse.batch.seam import advance
from lakepulse.settings import Settings
from spark_jobs import bronze, gold, quality, reconcile
from spark_jobs.common import Lake, TimeRange


def run(spark: SparkSession, lake: Lake, rng: TimeRange, settings: Settings,
        tenant_prefix: str = "") -> dict[str, Any]:
    """Every step in order; a failing quality gate raises before anything is published."""
    return {
        "bronze": bronze.run(spark, lake, rng),
        "gold": gold.run(spark, lake, rng),
        "quality": quality.run(spark, lake, rng),
        "reconcile": reconcile.run(spark, lake, rng, settings, tenant_prefix),
        "seam": advance(settings, lake.seam_uri, lake.trino_schema, lake.delta_root, rng.start, rng.end),
    }
