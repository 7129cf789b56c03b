"""Hourly batch pipeline: plan the range → bronze → gold → quality gate → reconcile Pinot → advance the seam."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param

from lakepulse.batch.airflow import (
    ARCHIVED_BEFORE,
    DEFAULT_ARGS,
    HOURLY_END,
    PLANNED_END,
    PLANNED_START,
    advance_seam,
    plan_range,
    range_args,
    spark_job,
)

with DAG(
    dag_id="lakepulse_hourly",
    description=__doc__,
    # A point in time, not a 1h interval: a scheduled run at tick T and a REST trigger with logical_date=T then both
    # get logical date T and data interval [T, T]; plan_range turns T into [H - 1h - lookback, H), H the hour
    # boundary at or before T. With a 1h interval (interval= or CronDataIntervalTimetable) the run at T gets logical
    # date T-1h, a trigger at T covers that same hour but takes the next run's logical date, and the scheduler skips
    # that run as "already exists". Spelled out, not "@hourly": [scheduler] create_cron_data_intervals would turn
    # that into the interval kind. Five past the hour: by then the raw archive holds the hour's on-time events
    # (the speed layer's watermark lets them arrive up to ~2 min late, and Connect uploads within ~70 s), so the
    # snapshot plan_range takes is complete for the hour the seam moves over.
    schedule=CronTriggerTimetable("5 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "lookback_hours": Param(2, type="integer", minimum=0, maximum=48,
                                description="Also rebuild this many earlier hours (late arrivals)"),
        # After downtime or failed runs the seam lags: the run starts at the seam instead, up to this far back;
        # beyond it plan_range fails and names the backfill to run first.
        "max_catchup_hours": Param(48, type="integer", minimum=1,
                                   description="Catch up a lagging seam by at most this many hours before the tick"),
    },
    tags=["lakepulse", "batch", "hourly"],
):
    # Reads the seam and the archive's committed offsets at run time (no I/O at import); the range tasks and
    # advance_seam take its XCom.
    plan = PythonOperator(task_id="plan_range", python_callable=plan_range,
                          op_kwargs={"tick": HOURLY_END, "lookback_hours": "{{ params.lookback_hours }}",
                                     "max_catchup_hours": "{{ params.max_catchup_hours }}"})
    args = range_args(PLANNED_START, PLANNED_END)
    # bronze and the quality gate read the archive: both read plan_range's snapshot of it (gold and reconcile
    # read Delta only).
    archive_args = range_args(PLANNED_START, PLANNED_END, ["--archived-before", ARCHIVED_BEFORE])
    bronze = spark_job("bronze", "bronze", archive_args)
    gold = spark_job("gold", "gold", args)
    quality = spark_job("quality", "quality", archive_args)
    reconcile = spark_job("reconcile", "reconcile", args)
    seam = PythonOperator(task_id="advance_seam", python_callable=advance_seam,
                          op_kwargs={"start": PLANNED_START, "end": PLANNED_END})
    plan >> bronze >> gold >> quality >> reconcile >> seam
