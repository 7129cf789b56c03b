"""Daily maintenance: OPTIMIZE and VACUUM the Delta tables; enforce Pinot's retention."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from lakepulse.batch.airflow import DEFAULT_ARGS, pinot_retention, spark_job

with DAG(
    dag_id="lakepulse_maintenance",
    description=__doc__,
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lakepulse", "batch", "maintenance"],
):
    spark_job("delta_optimize_vacuum", "maintenance", ["--what", "delta"])
    PythonOperator(task_id="pinot_retention", python_callable=pinot_retention)
