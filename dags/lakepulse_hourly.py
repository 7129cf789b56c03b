"""Hourly batch pipeline: plan the range → stage bronze → stage gold → quality gate on the stage → publish → reconcile
Pinot → advance the seam → rebuild late hours (events archived behind the seam since the last run) → record the
late cursor."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param

from lakepulse.batch.airflow import (
    ARCHIVED_BEFORE,
    DEFAULT_ARGS,
    HOURLY_END,
    LATE_CARRIED,
    LATE_RANGES,
    PLANNED_END,
    PLANNED_START,
    STAGE_ID,
    advance_seam,
    plan_late,
    plan_range,
    range_args,
    record_late_cursor,
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
    # One run at a time: the late cursor is read by one run and moved by the same run.
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
    # Write, audit, publish: bronze and gold write the run's stage, the gate checks it, publish MERGEs it into the
    # served tables (spark_jobs.staging). Every step that reads the archive reads plan_range's snapshot of it
    # (publish too: it rebuilds the stage if another writer moved the served tables under it).
    stage_args = range_args(PLANNED_START, PLANNED_END, ["--stage-id", STAGE_ID])
    archive_args = range_args(PLANNED_START, PLANNED_END,
                              ["--archived-before", ARCHIVED_BEFORE, "--stage-id", STAGE_ID])
    bronze = spark_job("bronze", "bronze", archive_args)
    gold = spark_job("gold", "gold", stage_args)
    quality = spark_job("quality", "quality", archive_args)
    publish = spark_job("publish", "publish", archive_args)
    reconcile = spark_job("reconcile", "reconcile", args)
    seam = PythonOperator(task_id="advance_seam", python_callable=advance_seam,
                          op_kwargs={"start": PLANNED_START, "end": PLANNED_END})
    # The late-data loop (lakepulse.batch.late): after the seam moved, the hours behind it that received archived
    # events since the last run's snapshot, rebuilt from this run's; the cursor moves only once they are published.
    late_plan = PythonOperator(task_id="plan_late", python_callable=plan_late,
                               op_kwargs={"start": PLANNED_START, "end": PLANNED_END, "offsets": ARCHIVED_BEFORE})
    late = spark_job("late_hours", "late", ["--ranges", LATE_RANGES, "--archived-before", ARCHIVED_BEFORE,
                                            "--stage-id", STAGE_ID])
    cursor = PythonOperator(task_id="record_late_cursor", python_callable=record_late_cursor,
                            op_kwargs={"offsets": ARCHIVED_BEFORE, "carried": LATE_CARRIED})
    plan >> bronze >> gold >> quality >> publish >> reconcile >> seam >> late_plan >> late >> cursor
