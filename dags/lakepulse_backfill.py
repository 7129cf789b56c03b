"""Backfill: rebuild [start, end) from the raw archive day by day (stage bronze and gold, quality gate on the stage,
publish, optional Pinot repair)."""

from datetime import UTC, datetime

from airflow.sdk import DAG, Param

from lakepulse.batch.airflow import DEFAULT_ARGS, range_args, spark_job

with DAG(
    dag_id="lakepulse_backfill",
    description=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # Two backfills may overlap: each stages under its own run id, and publishing rebuilds a stage the other one made
    # stale (Delta's conflict detection, spark_jobs.staging), so every row ends up once.
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    params={
        "start": Param("2026-01-01T00:00:00Z", type="string", description="Inclusive, RFC 3339 (UTC)"),
        "end": Param("2026-01-02T00:00:00Z", type="string", description="Exclusive, RFC 3339 (UTC)"),
        "metrics": Param([], type="array", items={"type": "string"}, description="Metric names; empty = all"),
        "reconcile": Param(True, type="boolean", description="Repair Pinot rows of the range"),
        "lake_root": Param("", type="string", description="Isolated lake prefix (empty: the production lake)"),
    },
    tags=["lakepulse", "batch", "backfill"],
):
    spark_job("rebuild", "backfill", range_args(
        "{{ params.start }}", "{{ params.end }}",
        ["--metrics", "{{ params.metrics | join(',') }}", "--reconcile", "{{ params.reconcile }}",
         "--lake-root", "{{ params.lake_root }}", "--stage-id", "{{ run_id }}"],
    ))
