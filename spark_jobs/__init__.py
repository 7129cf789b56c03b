"""Batch layer Spark jobs: raw archive → Delta bronze → gold aggregates, quality, reconcile, maintenance.

Each module is a `spark-submit`-able script (`spark-submit spark_jobs/<job>.py --start ... --end ...`)
and a `python -m spark_jobs.<job>` entry point; its `run(spark, config, ...)` is what tests call.
"""
