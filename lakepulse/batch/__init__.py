"""Batch layer support code that needs no Spark at import: seam store, Trino views, Pinot, quality, Airflow."""
