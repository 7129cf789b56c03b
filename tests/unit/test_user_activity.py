"""user_activity_daily (the exact route to distinct users in Trino): the gold transform against an independent
recount in plain Python, the gate's recount check, and the Trino views over the table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from lakepulse.batch.sample import raw_rows
from lakepulse.batch.seam import TRINO_TABLES, view_statements
from lakepulse.catalog import get_catalog
from lakepulse.catalog.generate import REPO_ROOT
from lakepulse.catalog.trino import activity_views, trino_views
from lakepulse.generator.scenario import GeneratorConfig
from spark_jobs.common import USER_ACTIVITY, USER_ACTIVITY_DIMS, TimeRange

MIDNIGHT = datetime(2026, 5, 2, tzinfo=UTC)
ACTIVITY_SCHEMA = ("tenant_id string, activity_date date, user_id string, country string, device string, "
                   "events long, first_seen timestamp, last_seen timestamp")

Row = dict[str, Any]


def raw(eid: str, at: datetime, tenant: str = "t1", event_type: str | None = "page_view",
        received: datetime | None = None, offset: int = 0, **props: Any) -> Row:
    """One archive row (RAW_SCHEMA) with JSON properties."""
    return {"event_id": eid, "tenant_id": tenant, "event_type": event_type, "occurred_at": at,
            "received_at": received or at, "source": "test", "device_family": None,
            "properties": orjson.dumps(props).decode(), "kafka_topic": "events.raw", "kafka_partition": 0,
            "kafka_offset": offset}


# Hand-picked cases: a resend of one event (its first received copy has another country), a late event of the day
# before midnight that arrives after it, a user with several countries and devices in one day, the same user id
# in two tenants, events without user (missing, empty) or without dimensions, and rows no metric can place.
HAND_ROWS = [
    raw("a", MIDNIGHT - timedelta(hours=3), user_id="u1", country="DE", device="ios", offset=1),
    raw("a", MIDNIGHT - timedelta(hours=3), user_id="u1", country="FR", device="ios", offset=7,
        received=MIDNIGHT - timedelta(hours=2)),
    raw("b", MIDNIGHT - timedelta(hours=2), user_id="u1", country="FR", device="ios", offset=2),
    raw("c", MIDNIGHT - timedelta(hours=1), user_id="u1", country="FR", device="web", offset=3),
    raw("d", MIDNIGHT - timedelta(seconds=20), user_id="u2", country="DE", device="android", offset=4,
        received=MIDNIGHT + timedelta(minutes=25)),
    raw("e", MIDNIGHT + timedelta(seconds=10), user_id="u2", country="DE", device="android", offset=5),
    raw("f", MIDNIGHT + timedelta(hours=1), user_id="u2", event_type="order_placed", country="DE",
        device="android", amount=12.5, offset=6),
    raw("g", MIDNIGHT - timedelta(hours=4), tenant="t2", user_id="u1", country="DE", device="ios", offset=8),
    raw("h", MIDNIGHT - timedelta(hours=4), tenant="t2", user_id="u3", offset=9),
    raw("i", MIDNIGHT - timedelta(hours=4), user_id="", country="DE", device="ios", offset=10),
    raw("j", MIDNIGHT - timedelta(hours=4), country="DE", device="ios", offset=11),
    raw("k", MIDNIGHT - timedelta(hours=4), user_id="u9", event_type=None, offset=12),
]


def recount(rows: list[Row]) -> dict[tuple[Any, ...], tuple[int, datetime, datetime]]:
    """Independent recount in plain Python: the first received copy of each event_id, events with a tenant, type
    and user id, per (tenant, UTC date, user, country or "", device or "") → (events, first seen, last seen)."""
    first: dict[str, Row] = {}
    for r in sorted(rows, key=lambda r: (r["received_at"], r["kafka_topic"], r["kafka_partition"],
                                         r["kafka_offset"])):
        first.setdefault(r["event_id"], r)
    out: dict[tuple[Any, ...], tuple[int, datetime, datetime]] = {}
    for r in first.values():
        p = orjson.loads(r["properties"])
        if not (r["tenant_id"] and r["event_type"] and p.get("user_id")):
            continue
        at = r["occurred_at"].astimezone(UTC)
        key = (r["tenant_id"], at.date(), p["user_id"], p.get("country") or "", p.get("device") or "")
        n, lo, hi = out.get(key, (0, at, at))
        out[key] = (n + 1, min(lo, at), max(hi, at))
    return out


def users_per_day(activity: dict[tuple[Any, ...], Any]) -> dict[tuple[str, date], int]:
    """Distinct users per (tenant, day) of activity rows keyed like `recount`."""
    users: dict[tuple[str, date], set[str]] = defaultdict(set)
    for tenant, day, user, *_ in activity:
        users[(tenant, day)].add(user)
    return {k: len(v) for k, v in users.items()}


def activity_of(spark: Any, rows: list[Row]) -> Any:
    """The gold job's chain without I/O: bronze dedup → normalized valid events → user_activity_daily rows."""
    from lakepulse.aggregations import filter_valid_events, with_normalized_events
    from spark_jobs.bronze import with_deduplicated_events
    from spark_jobs.gold import with_user_activity_daily
    from spark_jobs.raw import RAW_SCHEMA

    events_df = filter_valid_events(with_normalized_events(with_deduplicated_events(
        spark.createDataFrame(rows, RAW_SCHEMA))))
    return with_user_activity_daily(events_df)


def expected_df(spark: Any, rows: list[Row]) -> Any:
    """The recount as a DataFrame with the table's schema."""
    data = [(*k, n, lo, hi) for k, (n, lo, hi) in recount(rows).items()]
    return spark.createDataFrame(data, ACTIVITY_SCHEMA)


@pytest.mark.spark
def test_hand_picked_cases_equal_the_recount(spark) -> None:  # type: ignore[no-untyped-def]
    from chispa import assert_df_equality

    activity_df = activity_of(spark, HAND_ROWS)
    assert activity_df.columns == [*USER_ACTIVITY.keys, "events", "first_seen", "last_seen"]
    assert_df_equality(activity_df, expected_df(spark, HAND_ROWS), ignore_row_order=True, ignore_nullable=True)
    # What the recount says, spelled out: the resend counts once with its first copy's country, the late event
    # stays on its own (earlier) day, a user with three (country, device) tuples is one user of that day.
    got = {(r["tenant_id"], r["activity_date"], r["user_id"], r["country"], r["device"]): r["events"]
           for r in activity_df.collect()}
    day1, day2 = date(2026, 5, 1), date(2026, 5, 2)
    assert got == {
        ("t1", day1, "u1", "DE", "ios"): 1, ("t1", day1, "u1", "FR", "ios"): 1, ("t1", day1, "u1", "FR", "web"): 1,
        ("t1", day1, "u2", "DE", "android"): 1, ("t1", day2, "u2", "DE", "android"): 2,
        ("t2", day1, "u1", "DE", "ios"): 1, ("t2", day1, "u3", "", ""): 1,
    }
    assert users_per_day(got) == {("t1", day1): 2, ("t1", day2): 1, ("t2", day1): 2}


@pytest.mark.spark
def test_generated_traffic_across_midnight_equals_the_recount(spark) -> None:  # type: ignore[no-untyped-def]
    """Generated traffic (duplicates, late and out-of-order sends, users on several devices) over midnight."""
    from chispa import assert_df_equality

    config = GeneratorConfig(rate=2.0, duration_s=1800, seed=3, tenants=2, start=MIDNIGHT - timedelta(minutes=15),
                             late_fraction=0.1, lateness_s=600, duplicate_fraction=0.1, out_of_order_fraction=0.05,
                             run_id="ua")
    rows = list(raw_rows(config))
    expected = recount(rows)
    # The scenario really has what the test is about.
    assert len(rows) > len({r["event_id"] for r in rows})
    assert any(r["received_at"].date() > r["occurred_at"].date() for r in rows)
    assert len({k[:3] for k in expected}) < len(expected)  # some user has several (country, device) in a day
    assert {k[1] for k in expected} == {date(2026, 5, 1), date(2026, 5, 2)}

    activity_df = activity_of(spark, rows).cache()
    assert_df_equality(activity_df, expected_df(spark, rows), ignore_row_order=True, ignore_nullable=True)
    import pyspark.sql.functions as F

    per_day = {(r[0], r[1]): r[2] for r in activity_df.groupBy("tenant_id", "activity_date")
               .agg(F.countDistinct("user_id")).collect()}
    assert per_day == users_per_day(expected) and min(per_day.values()) > 10
    activity_df.unpersist()


@pytest.mark.spark
def test_gate_recount_finds_a_day_that_differs_from_bronze(spark) -> None:  # type: ignore[no-untyped-def]
    import pyspark.sql.functions as F

    from lakepulse.aggregations import filter_valid_events, with_normalized_events
    from spark_jobs.bronze import with_deduplicated_events
    from spark_jobs.gold import with_user_activity_daily
    from spark_jobs.quality import user_activity_rows, with_user_activity_recount
    from spark_jobs.raw import RAW_SCHEMA

    events_df = filter_valid_events(with_normalized_events(with_deduplicated_events(
        spark.createDataFrame(HAND_ROWS, RAW_SCHEMA))))
    activity_df = with_user_activity_daily(events_df)
    assert [(r[1], r[2]) for r in user_activity_rows(with_user_activity_recount(activity_df, events_df))] == [
        (5, 5), (8, 8), (0, 0)]
    # A stale table: u2's day-2 rows were lost, so that tenant-day's users and events no longer match.
    stale_df = activity_df.where(~((F.col("user_id") == "u2") & (F.col("activity_date") == F.lit("2026-05-02"))))
    rows = user_activity_rows(with_user_activity_recount(stale_df, events_df))
    assert [(r[1], r[2]) for r in rows] == [(4, 5), (6, 8), (1, 0)]
    assert all(r[0].startswith("user_activity ") for r in rows)


@pytest.mark.spark
def test_transform_refuses_a_catalog_whose_active_users_differs(spark) -> None:  # type: ignore[no-untyped-def]
    from lakepulse.catalog import Catalog
    from spark_jobs.gold import with_user_activity_daily

    catalog = get_catalog()
    changed = replace(catalog.metric("active_users"), dimensions=("country",))
    other = Catalog(catalog.dimensions, tuple(changed if m.name == "active_users" else m for m in catalog.metrics))
    with pytest.raises(ValueError, match="user_activity_daily"):
        with_user_activity_daily(spark.createDataFrame([], "tenant_id string"), other)


def test_table_keys_follow_the_catalog_and_the_range_scope_selects_whole_days() -> None:
    from spark_jobs.gold import activity_scope, rebuilds_user_activity

    assert sorted(USER_ACTIVITY_DIMS) == sorted(get_catalog().metric("active_users").dimensions)
    assert USER_ACTIVITY.partition_by == ("activity_date",)
    assert USER_ACTIVITY.keys == ("tenant_id", "activity_date", "user_id", "country", "device")
    rng = TimeRange(MIDNIGHT - timedelta(hours=2), MIDNIGHT + timedelta(hours=1))
    assert activity_scope(rng) == "t.activity_date IN (DATE '2026-05-01', DATE '2026-05-02')"
    assert activity_scope(rng, None) == "activity_date IN (DATE '2026-05-01', DATE '2026-05-02')"
    assert rebuilds_user_activity(rng) and rebuilds_user_activity(replace(rng, metrics=("active_users", "events")))
    assert not rebuilds_user_activity(replace(rng, metrics=("events",)))


def test_checked_in_activity_views_equal_the_generated_ones() -> None:
    for name, sql in activity_views().items():
        path = REPO_ROOT / "trino_catalogs" / "views" / name
        assert path.is_file() and path.read_text(encoding="utf-8") == sql, f"stale: {path}"
    assert not set(activity_views()) & set(trino_views(get_catalog()))


def test_views_publish_the_exact_counts_after_their_table_with_the_seam() -> None:
    statements = view_statements(datetime(2026, 5, 2, 1, tzinfo=UTC), "delta.it_x")
    daily = next(s for s in statements if "VIEW delta.it_x.active_users_daily AS" in s)
    by_dims = next(s for s in statements if "VIEW delta.it_x.active_users_daily_by_dims AS" in s)
    assert statements.index(daily) > statements.index(next(s for s in statements if "metric_active_users" in s))
    for view in (daily, by_dims):
        assert "FROM delta.it_x.user_activity_daily" in view and "count(DISTINCT user_id) AS active_users" in view
        assert "activity_date < CAST(TIMESTAMP '2026-05-02 01:00:00.000' AS date) AS is_final" in view
    assert "GROUP BY tenant_id, activity_date\n" in daily + "\n"
    assert "GROUP BY tenant_id, activity_date, country, device" in by_dims
    assert "user_activity_daily" in TRINO_TABLES
    # The minute view keeps active_users' value NULL (minute distincts do not add); its file says where to go.
    metric_view = trino_views(get_catalog())["10_metric_active_users.sql"]
    assert "CAST(NULL AS double) AS value" in metric_view and "active_users_daily" in metric_view
