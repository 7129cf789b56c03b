"""Shared unit-test fixtures: one small local Spark session for the whole run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator:
    """A local[2] SparkSession (UI off, 2 shuffle partitions, UTC); stopped at the end of the session."""
    from pyspark.sql import SparkSession

    # Python workers must run the same interpreter as the driver (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("lakepulse-unit")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        # Listen on loopback only (by default the driver binds the machine's address).
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def make_events(spark):
    """Builder: a list of envelope dicts → an events DataFrame, parsed the way `events.raw` JSON is."""
    import json

    from lakepulse.aggregations import filter_valid_events, with_parsed_events

    def build(events: list[dict]):
        raw_df = spark.createDataFrame([(json.dumps(e),) for e in events], "value string")
        return filter_valid_events(with_parsed_events(raw_df))

    return build
