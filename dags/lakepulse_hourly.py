"""Hourly batch pipeline: bronze → gold → quality gate → reconcile Pinot → advance the seam."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from lakepulse.batch.airflow import DEFAULT_ARGS, HOURLY_END, HOURLY_START, advance_seam, range_args, spark_job

with DAG(
    dag_id="lakepulse_hourly",
    description=__doc__,
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"lookback_hours": Param(2, type="integer", minimum=0, maximum=48,
                                    description="Also rebuild this many earlier hours (late arrivals)")},
    tags=["lakepulse", "batch", "hourly"],
):
    args = range_args(HOURLY_START, HOURLY_END)
    bronze = spark_job("bronze", "bronze", args)
    gold = spark_job("gold", "gold", args)
    quality = spark_job("quality", "quality", args)
    reconcile = spark_job("reconcile", "reconcile", args)
    seam = PythonOperator(task_id="advance_seam", python_callable=advance_seam,
                          op_kwargs={"start": HOURLY_START, "end": HOURLY_END})
    bronze >> gold >> quality >> reconcile >> seam
