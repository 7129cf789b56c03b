"""Write, audit, publish — the pure parts: where a run stages, which rows each staged table replaces, and how the
publish step reads Delta's commits to tell whether its stage went stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from spark_jobs.common import (
    EVENTS,
    GOLD_TABLES,
    ORDERS,
    USER_ACTIVITY,
    Lake,
    TimeRange,
    rebuilt_tables,
    stage_id_of,
    table_scope,
)
from spark_jobs.staging import commit_actions, touches

H = datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
RNG = TimeRange(H, H + timedelta(hours=1))


def test_stages_live_next_to_the_served_tables_never_inside_them() -> None:
    lake = Lake.from_settings(None, "s3a://lake/tmp/it_x")  # type: ignore[arg-type]
    assert lake.staging_root == "s3a://lake/tmp/it_x/staging"
    assert not lake.staging_root.startswith(lake.delta_root + "/")  # Trino's schema location holds served tables
    assert lake.late_cursor_uri == "s3a://lake/tmp/it_x/batch/late_cursor.json"


def test_stage_ids_are_path_safe_airflow_run_ids() -> None:
    assert stage_id_of("scheduled__2026-12-01T10:05:00+00:00") == "scheduled__2026-12-01T10_05_00_00_00"
    assert stage_id_of("manual__2026-12-01T12:55:18.718779+00:00").startswith("manual__2026-12-01T12_55_18.718779")
    assert stage_id_of("  ") == "" and "/" not in stage_id_of("../../delta/events")


def test_a_rebuild_writes_every_table_it_owns_events_first() -> None:
    assert rebuilt_tables(RNG) == (EVENTS, *GOLD_TABLES.values(), USER_ACTIVITY, ORDERS)
    # Some metrics only: no order history; user activity only when active_users is among them.
    assert rebuilt_tables(TimeRange(H, H + timedelta(hours=1), ("events",))) == (EVENTS, *GOLD_TABLES.values())
    assert USER_ACTIVITY in rebuilt_tables(TimeRange(H, H + timedelta(hours=1), ("active_users",)))


def test_each_staged_table_replaces_its_scope() -> None:
    """Minutes of the range, whole hours and days for the rollups, whole days of activity, orders by key."""
    assert "t.occurred_at >= TIMESTAMP '2026-05-01 10:15:00'" in table_scope(EVENTS, RNG)  # type: ignore[operator]
    minute = table_scope(GOLD_TABLES["minute"], RNG, None)
    assert minute is not None and "window_start >= TIMESTAMP '2026-05-01 10:15:00'" in minute
    hour = table_scope(GOLD_TABLES["hour"], RNG, None)
    assert hour is not None and "window_start >= TIMESTAMP '2026-05-01 10:00:00'" in hour
    assert "window_start < TIMESTAMP '2026-05-01 12:00:00'" in hour
    day = table_scope(GOLD_TABLES["day"], RNG, None)
    assert day is not None and "window_start >= TIMESTAMP '2026-05-01 00:00:00'" in day
    assert table_scope(USER_ACTIVITY, RNG, None) == "activity_date IN (DATE '2026-05-01')"
    assert table_scope(ORDERS, RNG) is None
    assert "metric IN ('events')" in (table_scope(GOLD_TABLES["minute"], TimeRange(H, RNG.end, ("events",))) or "")


def _commit(*actions: dict[str, object]) -> str:
    return "\n".join(json.dumps(a) for a in actions) + "\n"


def test_commit_actions_keep_only_data_changes() -> None:
    """OPTIMIZE rewrites files without changing data (dataChange false): not a reason to rebuild."""
    merge = _commit({"commitInfo": {"operation": "MERGE"}},
                    {"add": {"path": "a", "partitionValues": {"event_date": "2026-05-01"}, "dataChange": True}},
                    {"remove": {"path": "b", "partitionValues": {"event_date": "2026-04-30"}, "dataChange": True}})
    operation, changes = commit_actions(merge)
    assert operation == "MERGE" and [c["path"] for c in changes] == ["a", "b"]
    optimize = _commit({"commitInfo": {"operation": "OPTIMIZE"}},
                       {"add": {"path": "c", "partitionValues": {"event_date": "2026-05-01"}, "dataChange": False}},
                       {"remove": {"path": "a", "partitionValues": {"event_date": "2026-05-01"}, "dataChange": False}})
    assert commit_actions(optimize) == ("OPTIMIZE", [])
    assert commit_actions(_commit({"metaData": {"id": "x"}})) == ("?", [])


def test_a_change_matters_only_in_the_partitions_the_run_read() -> None:
    _, changes = commit_actions(_commit(
        {"add": {"path": "a", "partitionValues": {"event_date": "2026-05-03"}, "dataChange": True}}))
    assert touches(changes, "event_date", ["2026-05-03"])
    assert not touches(changes, "event_date", ["2026-04-30", "2026-05-01", "2026-05-02"])
    assert touches(changes, None, [])  # an unpartitioned table: any data change
    assert not touches([], None, [])
