"""The hourly pipeline in one process (stage bronze and gold → quality gate → publish → reconcile → seam), as the
hourly DAG runs it."""

from __future__ import annotations

import uuid
from typing import Any

from pyspark.sql import SparkSession

from lakepulse.batch.seam import advance
from lakepulse.settings import Settings
from spark_jobs import publish, reconcile
from spark_jobs.common import EVENTS, Lake, TimeRange
from spark_jobs.gold import GRAINS


def run(spark: SparkSession, lake: Lake, rng: TimeRange, settings: Settings,
        tenant_prefix: str = "", stage_id: str = "") -> dict[str, Any]:
    """Every step in order; a failing quality gate raises before anything is published (the stage is kept)."""
    rebuilt = publish.rebuild(spark, lake, rng, stage_id or f"pipeline-{uuid.uuid4().hex[:12]}")
    tables = rebuilt["published"]["tables"]
    return {
        "bronze": tables[EVENTS.name],
        "gold": {GRAINS[name]: counts for name, counts in tables.items() if name != EVENTS.name},
        "quality": rebuilt["quality"],
        "published": rebuilt["published"],
        "reconcile": reconcile.run(spark, lake, rng, settings, tenant_prefix),
        "seam": advance(settings, lake.seam_uri, lake.trino_schema, lake.delta_root, rng.start, rng.end),
    }
