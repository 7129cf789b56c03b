"""Trino answers SQL through both of its catalogs: Delta Lake on MinIO and Pinot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trino.exceptions

from lakepulse.platform.components.base import Context
from lakepulse.platform.components.trino import query

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Pinot table metadata reaches Trino through a cache (pinot.metadata-expiry, 2 min by default), and
# Pinot tables may be created after Trino started: retry that long before failing.
PINOT_WAIT_SECONDS = 150

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float, what: str) -> T:
    """Call `check` until it returns without raising AssertionError/TrinoError; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, trino.exceptions.TrinoQueryError) as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {timeout:.0f}s: {err}") from err
        time.sleep(3)


def pinot_tables() -> list[str]:
    """Names of the Pinot tables checked in under pinot_tables/ (Trino lowercases names)."""
    return sorted(
        json.loads(p.read_text())["tableName"].lower() for p in (REPO / "pinot_tables").glob("*/table.json")
    )


@pytest.mark.needs("trino")
def test_catalogs_are_served(stack: Context) -> None:
    catalogs = {row[0] for row in query(stack.settings, "SHOW CATALOGS")}
    assert {"delta", "pinot", "system"} <= catalogs


@pytest.mark.needs("trino", "minio")
def test_delta_table_round_trip_on_s3(stack: Context, run_id: str) -> None:
    settings = stack.settings
    schema = f"delta.it_trino_{run_id}"
    location = f"s3://{settings.s3_bucket}/tmp/it_trino_{run_id}/"
    table = f"{schema}.orders"
    query(settings, f"CREATE SCHEMA {schema} WITH (location = '{location}')", 120)
    try:
        query(settings, f"CREATE TABLE {table} (order_id varchar, amount decimal(12, 2), n bigint)", 120)
        values = "('o-1', 12.50, 1), ('o-2', 7.25, 3), ('o-3', 0, 2)"
        assert query(settings, f"INSERT INTO {table} VALUES {values}", 120) == [[3]]
        rows = query(settings, f"SELECT order_id, CAST(amount AS varchar), n FROM {table} ORDER BY order_id")
        assert rows == [["o-1", "12.50", 1], ["o-2", "7.25", 3], ["o-3", "0.00", 2]]
        totals = query(settings, f"SELECT CAST(sum(amount) AS varchar), sum(n) FROM {table}")
        assert totals == [["19.75", 6]]
        # The data really is on S3 (MinIO), under the schema's location, as a Delta table.
        paths = query(settings, f'SELECT DISTINCT "$path" FROM {table}')
        assert paths and all(str(p[0]).startswith(location) for p in paths)
        history = query(settings, f'SELECT operation FROM {schema}."orders$history" ORDER BY version')
        assert [h[0] for h in history] == ["CREATE TABLE", "WRITE"]
    finally:
        query(settings, f"DROP TABLE IF EXISTS {table}", 120)
        query(settings, f"DROP SCHEMA IF EXISTS {schema}", 120)


@pytest.mark.needs("trino", "minio")
def test_delta_schema_of_the_lake_exists(stack: Context) -> None:
    schemas = {row[0] for row in query(stack.settings, "SHOW SCHEMAS FROM delta")}
    assert "lakepulse" in schemas  # created by Trino's bootstrap on `lakepulse up`


@pytest.mark.needs("trino", "pinot")
def test_pinot_tables_are_queryable(stack: Context) -> None:
    expected = pinot_tables()
    assert expected, "pinot_tables/ holds no table"

    def listed() -> set[str]:
        tables = {row[0] for row in query(stack.settings, "SHOW TABLES FROM pinot.default")}
        assert set(expected) <= tables, f"Trino lists {sorted(tables)}"
        return tables

    eventually(listed, PINOT_WAIT_SECONDS, "Pinot tables visible in Trino")
    # count(*) is pushed down to the broker (forbid-segment-queries): a real Pinot query. A table
    # created moments ago may have no server assigned yet ("0 out of 0 servers responded"): retry.
    for table in expected:
        rows = eventually(
            lambda t=table: query(stack.settings, f'SELECT count(*) FROM pinot.default."{t}"', 60),
            PINOT_WAIT_SECONDS, f"count(*) of pinot.default.{table}",
        )
        assert len(rows) == 1 and int(rows[0][0]) >= 0  # type: ignore[call-overload]
