"""Pure parts of the batch layer: ranges, seam rule, view rendering, report text, dedup and Pinot diff."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lakepulse.batch.quality import Outcome, QualityError, gate
from lakepulse.batch.seam import SeamGapError, next_seam, view_statements
from spark_jobs.backfill import chunks
from spark_jobs.common import TimeRange, parse_time

H = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def test_time_range_widens_to_hours_and_days_and_lists_dates() -> None:
    rng = TimeRange(H + timedelta(minutes=15), H + timedelta(hours=14, minutes=1))
    assert rng.widened("hour") == TimeRange(H, H + timedelta(hours=15))
    assert rng.widened("day").start == H.replace(hour=0) and rng.widened("day").end == H.replace(day=3, hour=0)
    assert rng.dates() == ["2026-05-01", "2026-05-02"]
    with pytest.raises(ValueError):
        TimeRange(H, H)
    with pytest.raises(ValueError):
        TimeRange(H + timedelta(seconds=1), H + timedelta(hours=1))


def test_parse_time_accepts_z_and_naive_as_utc() -> None:
    assert parse_time("2026-05-01T10:00:00Z") == H == parse_time("2026-05-01T10:00:00")
    assert parse_time("2026-05-01T12:00:00+02:00") == H


def test_backfill_chunks_cover_the_range_without_overlap() -> None:
    rng = TimeRange(H, H + timedelta(days=2, hours=3))
    pieces = list(chunks(rng))
    assert [p.start for p in pieces] == [H, H + timedelta(days=1), H + timedelta(days=2)]
    assert pieces[-1].end == rng.end and all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))


def test_seam_only_moves_forward_over_checked_hours() -> None:
    end = H + timedelta(hours=1)
    assert next_seam(None, H, end) == end
    assert next_seam(H, H, end) == end
    assert next_seam(H + timedelta(minutes=30), H - timedelta(hours=2), end) == end  # lookback overlaps
    assert next_seam(end + timedelta(hours=3), H, end) is None  # history rerun: the seam stays
    with pytest.raises(SeamGapError):
        next_seam(H - timedelta(hours=1), H, end)  # an unchecked hour in between


def test_views_get_the_seam_literal_and_the_target_schema() -> None:
    statements = view_statements(H + timedelta(hours=1), "delta.it_x")
    seam_view = statements[0]
    assert "CREATE OR REPLACE VIEW delta.it_x.metrics_minute_all" in seam_view
    assert "TIMESTAMP '2026-05-01 11:00:00.000'" in seam_view and "${seam}" not in seam_view
    assert "delta.lakepulse." not in " ".join(statements)
    assert all(not s.lstrip().startswith("--") for s in statements)


def test_gate_report_lists_failures_first_and_raises() -> None:
    ok = Outcome("gold", "expect_column_values_to_not_be_null", {"column": "metric"}, True, unexpected_count=0)
    bad = Outcome("bronze", "expect_column_values_to_be_between", {"column": "amount", "min_value": 0}, False,
                  unexpected_count=2, examples=[-1.0, -3.5])
    with pytest.raises(QualityError) as failed:
        gate([ok, bad], "[a, b)")
    lines = str(failed.value).splitlines()
    assert lines[0] == "quality gate FAILED for [a, b): 1 of 2 checks failed"
    assert lines[1] == ("FAIL bronze   expect_column_values_to_be_between(column=amount, min_value=0): "
                        "2 unexpected, e.g. [-1.0, -3.5]")
    assert gate([ok], "[a, b)").startswith("quality gate passed")


@pytest.mark.spark
def test_dedup_keeps_the_first_received_copy(spark) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.bronze import with_deduplicated_events
    from spark_jobs.raw import RAW_SCHEMA

    def row(eid: str, received_s: int, offset: int) -> tuple:  # type: ignore[type-arg]
        return (eid, "t", "page_view", H, H + timedelta(seconds=received_s), "s", None, "{}", "events.raw", 0,
                offset)

    raw_df = spark.createDataFrame([row("a", 5, 2), row("a", 1, 9), row("b", 1, 3), row(None, 1, 4)], RAW_SCHEMA)
    rows = {r["event_id"]: r for r in with_deduplicated_events(raw_df).collect()}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["kafka_offset"] == 9 and rows["a"]["event_date"] == "2026-05-01"


@pytest.mark.spark
def test_minute_differences_classify_missing_extra_and_changed(spark) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.reconcile import with_minute_differences

    schema = ("tenant_id string, metric string, dims_key string, window_start timestamp, count long, "
              "sum double, min double, max double, buckets array<bigint>, hll_sketch binary")
    delta_df = spark.createDataFrame([
        ("t", "events", "", H, 3, None, None, None, None, None),
        ("t", "gross_sales", "", H, 2, 10.25, 1.0, 9.25, None, None),
        ("t", "orders_placed", "", H, 1, None, None, None, None, None),
    ], schema)
    pinot_df = spark.createDataFrame([
        ("t", "events", "", H, 3, 0.0, 0.0, 0.0, None, None),  # same (Pinot's 0.0 for null)
        ("t", "gross_sales", "", H, 2, 10.25 + 1e-12, 1.0, 9.25, None, None),  # same within tolerance
        ("t", "orders_placed", "", H, 2, 0.0, 0.0, 0.0, None, None),  # differs
        ("t", "app_errors", "", H, 1, 0.0, 0.0, 0.0, None, None),  # only in Pinot
    ], schema.replace("buckets array<bigint>", "buckets_json string"))
    found = {r["metric"]: r["difference"] for r in with_minute_differences(delta_df, pinot_df).collect()}
    assert found == {"orders_placed": "values_differ", "app_errors": "extra_in_pinot"}
    missing = with_minute_differences(delta_df, pinot_df.where("metric != 'events'")).collect()
    assert {r["metric"]: r["difference"] for r in missing}["events"] == "missing_in_pinot"


def test_archived_before_parses_plan_ranges_offsets() -> None:
    """--archived-before takes plan_range's "topic:partition" keys; absent or empty means no cutoff."""
    from lakepulse.platform.components.connect_sink import offset_key
    from spark_jobs.common import job_args

    base = ["--start", "2026-05-01T10:00:00Z", "--end", "2026-05-01T11:00:00Z"]
    offsets = {offset_key("events.raw", 0): 1234, offset_key("events.raw", 11): 0, offset_key("a:b", 2): 7}
    rng, _, args = job_args("test", [*base, "--archived-before", json.dumps(offsets)])
    assert rng == TimeRange(H, H + timedelta(hours=1))
    assert args.archived_before == {("events.raw", 0): 1234, ("events.raw", 11): 0, ("a:b", 2): 7}
    assert job_args("test", base)[2].archived_before is None
    assert job_args("test", [*base, "--archived-before", ""])[2].archived_before is None


@pytest.mark.parametrize("bad", ['{"events.raw": 3}', '{"events.raw:x": 3}', '{":0": 3}', '{"events.raw:0": -1}',
                                 '{"events.raw:0": 1.5}', '{"events.raw:0": true}', "[1]", "null", "{"])
def test_archived_before_refuses_what_is_not_a_snapshot(bad: str) -> None:
    """Anything but {"topic:partition": offset >= 0} stops the job at argument parsing."""
    from spark_jobs.common import job_args

    with pytest.raises(SystemExit):
        job_args("test", ["--start", "2026-05-01T10:00:00Z", "--end", "2026-05-01T11:00:00Z",
                          "--archived-before", bad])


def _raw_row(eid: str, topic: str | None, partition: int | None, offset: int | None,
             occurred: datetime = H) -> tuple:  # type: ignore[type-arg]
    return (eid, "t", "page_view", occurred, occurred, "s", None, "{}", topic, partition, offset)


@pytest.mark.spark
def test_filter_archived_before_keeps_rows_below_their_partitions_cutoff(spark) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.raw import RAW_SCHEMA, filter_archived_before

    raw_df = spark.createDataFrame([
        _raw_row("below", "events.raw", 0, 9),
        _raw_row("at", "events.raw", 0, 10),  # the committed offset is the next record to archive: excluded
        _raw_row("above", "events.raw", 0, 11),
        _raw_row("other-partition-below", "events.raw", 1, 2),
        _raw_row("other-partition-at", "events.raw", 1, 3),
        _raw_row("uncommitted-partition", "events.raw", 2, 0),  # cutoff 0: nothing of it is in the snapshot
        _raw_row("absent-partition", "events.raw", 3, 0),
        _raw_row("absent-topic", "other", 0, 0),
        _raw_row("no-position", None, None, None),
    ], RAW_SCHEMA)
    cutoffs = {("events.raw", 0): 10, ("events.raw", 1): 3, ("events.raw", 2): 0}
    kept = {r["event_id"] for r in filter_archived_before(raw_df, cutoffs).collect()}
    assert kept == {"below", "other-partition-below"}
    assert filter_archived_before(raw_df, {}).count() == raw_df.count()  # an empty mapping is no cutoff


@pytest.mark.spark
def test_read_raw_applies_the_cutoff_only_when_given(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """read_raw on an archive laid out as the sink writes it: the range filter, then the snapshot filter."""
    import pyspark.sql.functions as F

    from spark_jobs.raw import RAW_SCHEMA, read_raw

    rows = [_raw_row(f"e{i}", "events.raw", i % 2, i) for i in range(6)]
    rows.append(_raw_row("before-the-range", "events.raw", 0, 0, H - timedelta(minutes=1)))
    (spark.createDataFrame(rows, RAW_SCHEMA)
     .withColumn("event_date", F.to_date("occurred_at").cast("string"))
     .withColumn("event_hour", F.hour("occurred_at"))
     .write.partitionBy("event_date", "event_hour").parquet(str(tmp_path / "raw")))
    rng = TimeRange(H, H + timedelta(hours=1))
    everything = read_raw(spark, str(tmp_path / "raw"), rng)
    assert sorted(r["event_id"] for r in everything.collect()) == [f"e{i}" for i in range(6)]
    snapshot = read_raw(spark, str(tmp_path / "raw"), rng, {("events.raw", 0): 3, ("events.raw", 1): 2})
    assert sorted(r["event_id"] for r in snapshot.collect()) == ["e0", "e1", "e2"]


@pytest.mark.spark
def test_no_archive_yet_is_empty_only_when_the_snapshot_says_nothing_was_archived(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fresh stack's first hourly run may start before the sink's first upload (its snapshot: every offset
    0); any other run that finds no archive fails, as a missing archive is then lost data or a wrong path."""
    from pyspark.errors import AnalysisException

    from spark_jobs.raw import RAW_COLUMNS, read_raw

    missing, rng = str(tmp_path / "raw"), TimeRange(H, H + timedelta(hours=1))
    nothing = read_raw(spark, missing, rng, {("events.raw", 0): 0, ("events.raw", 1): 0})
    assert nothing.count() == 0 and tuple(nothing.columns) == RAW_COLUMNS
    for snapshot in (None, {}, {("events.raw", 0): 0, ("events.raw", 1): 5}):
        with pytest.raises(AnalysisException):
            read_raw(spark, missing, rng, snapshot)
