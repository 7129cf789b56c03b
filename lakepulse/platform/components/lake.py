"""The batch layer's lake as the stack sees it: its Delta tables and seam views exist from the first start."""

from __future__ import annotations

import sys

from lakepulse.batch.seam import TRINO_TABLES, production_seam_uri, read_seam
from lakepulse.catalog import get_catalog
from lakepulse.catalog.trino import DELTA_SCHEMA
from lakepulse.platform.components.base import Component, Context
from lakepulse.platform.proc import run_logged


def expected_relations() -> set[str]:
    """Every table and view an analyst finds in Trino's `delta.lakepulse` schema."""
    views = {"metrics_minute_all", *(f"metric_{m.name}" for m in get_catalog().metrics),
             "active_users_daily", "active_users_daily_by_dims"}
    return set(TRINO_TABLES) | views


def missing_relations(ctx: Context) -> set[str]:
    """The expected tables and views Trino does not show (all of them when the schema is missing)."""
    from lakepulse.platform.components.trino import query

    try:
        present = {str(row[0]) for row in query(ctx.settings, f"SHOW TABLES FROM {DELTA_SCHEMA}", 60)}
    except Exception:  # noqa: BLE001 - no schema yet reads as "nothing there"
        present = set()
    return expected_relations() - present


class Lake(Component):
    """No process of its own: its bootstrap creates the empty Delta tables and publishes them and the seam
    views in Trino (a short Spark job, only when something is missing); its status shows the seam."""

    name = "lake"
    bootstrap_needs = ("minio", "trino")

    def bootstrap(self, ctx: Context) -> None:
        if not missing_relations(ctx):
            return
        run_logged([sys.executable, "-m", "spark_jobs.init_lake"], ctx.logs / "lake-init.log",
                   "creating the Delta tables and Trino views (first start)", cwd=ctx.repo,
                   env={"PYTHONPATH": str(ctx.repo)}, timeout=900)
        if missing := missing_relations(ctx):
            raise RuntimeError(f"Trino still lacks {sorted(missing)} after the lake init "
                               f"(log: {ctx.logs / 'lake-init.log'})")

    def status(self, ctx: Context) -> dict[str, str]:
        try:
            seam = read_seam(ctx.settings, production_seam_uri(ctx.settings))
        except Exception as err:  # noqa: BLE001 - status reports, never raises
            return {"seam": f"unavailable ({type(err).__name__})"}
        return {"seam": seam.isoformat() if seam else "none yet (every minute from Pinot)"}
