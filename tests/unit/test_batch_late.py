"""The late-data loop's pure parts: archive object names, which hours are late, how they become ranges."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from lakepulse.archive import ArchiveObject, parse_object
from lakepulse.batch.late import LATE_HOURS_PER_RUN, hour_ranges, late_hours, listing_dates, take_hours

H = datetime(2026, 12, 1, 10, tzinfo=UTC)  # the hour boundary the run rebuilt up to (and the seam after it)
RUN = (H - timedelta(hours=3), H)  # lookback 2: [07:00, 10:00)
P0, P1 = "events.raw:0", "events.raw:1"


def obj(hours_back: float, partition: int, offset: int) -> ArchiveObject:
    """An object of event hour H - hours_back starting at `offset` of events.raw's `partition`."""
    return ArchiveObject(H - timedelta(hours=hours_back), "events.raw", partition, offset)


def test_object_names_give_the_hour_and_the_first_offset() -> None:
    """The sink's names: hive partitions, then <topic>+<partition>+<zero-padded first offset>.parquet."""
    path = "lake/raw/event_date=2026-12-01/event_hour=04/events.raw+3+00000000000000001234.parquet"
    assert parse_object(path) == ArchiveObject(H - timedelta(hours=6), "events.raw", 3, 1234)
    assert parse_object(path).offset_key == "events.raw:3"  # type: ignore[union-attr]
    # Topic names may hold dots and pluses' neighbours; anything not in the layout is no object.
    assert parse_object("raw/event_date=2026-12-01/event_hour=4/my.topic+0+7.parquet") == ArchiveObject(
        H - timedelta(hours=6), "my.topic", 0, 7)
    for other in ("raw/event_date=2026-12-01/event_hour=04/_tmp.parquet",
                  "raw/event_date=2026-12-01/events.raw+0+1.parquet",
                  "raw/event_date=2026-13-01/event_hour=04/events.raw+0+1.parquet",
                  "raw/event_date=2026-12-01/event_hour=04/events.raw+0+1.json"):
        assert parse_object(other) is None, other


def test_an_hour_six_hours_back_committed_since_the_cursor_is_late() -> None:
    """Objects committed between the cursor and this run's snapshot, before the seam, outside the run's range."""
    objects = [obj(6, 0, 500), obj(6, 1, 40), obj(9, 0, 520)]
    assert late_hours(objects, {P0: 400, P1: 30}, {P0: 600, P1: 50}, RUN, H) == [H - timedelta(hours=9),
                                                                               H - timedelta(hours=6)]


def test_objects_outside_the_cursor_window_are_not_late() -> None:
    """Below the cursor: built by an earlier run; at or above the snapshot: not committed, the next run's."""
    objects = [obj(6, 0, 399), obj(6, 0, 600), obj(6, 0, 650), obj(7, 1, 10)]
    assert late_hours(objects, {P0: 400, P1: 30}, {P0: 600, P1: 50}, RUN, H) == []


def test_the_runs_own_range_and_hours_after_the_seam_are_not_late() -> None:
    """Hours this run rebuilt from the same snapshot, and hours still served by Pinot (the seam only moves over
    hours an hourly run rebuilt later), are left out; an hour the range covers only partly is late."""
    objects = [obj(3, 0, 500), obj(1, 0, 501), obj(0, 0, 502), obj(-5, 0, 503)]
    assert late_hours(objects, {P0: 400}, {P0: 600}, RUN, H) == []
    partial = (H - timedelta(hours=2, minutes=30), H)  # a lagging seam's minute widened the run's start
    assert late_hours([obj(3, 0, 500)], {P0: 400}, {P0: 600}, partial, H) == [H - timedelta(hours=3)]


def test_an_old_tick_rerun_still_repairs_hours_between_its_range_and_the_seam() -> None:
    """A run for an old tick rebuilds [tick - 3h, tick) while the seam is hours ahead: later hours are late too."""
    old_run = (H - timedelta(hours=10), H - timedelta(hours=7))
    assert late_hours([obj(6, 0, 500), obj(8, 0, 501)], {P0: 400}, {P0: 600}, old_run, H) == [
        H - timedelta(hours=6)]


def test_no_cursor_new_partitions_and_reset_offsets_count_from_zero() -> None:
    """The first run, a partition the cursor lacks and offsets that went backwards read every committed object;
    a partition missing from the snapshot has nothing committed."""
    objects = [obj(6, 0, 0), obj(7, 1, 3), obj(8, 2, 0)]
    everything = [H - timedelta(hours=7), H - timedelta(hours=6)]
    assert late_hours(objects, None, {P0: 10, P1: 10}, RUN, H) == everything
    assert late_hours(objects, {P0: 0}, {P0: 10, P1: 10}, RUN, H) == everything
    assert late_hours(objects, {P0: 50, P1: 70}, {P0: 10, P1: 10}, RUN, H) == everything


def test_before_the_first_seam_nothing_is_late() -> None:
    """Without a seam every minute is served from Pinot: there is no history to repair yet."""
    assert late_hours([obj(6, 0, 1)], None, {P0: 10}, RUN, None) == []


def test_a_run_takes_at_most_its_share_of_late_hours_oldest_first_and_carries_the_rest() -> None:
    """A first run (no cursor) over a month of archive finds many hours: it rebuilds the oldest ones, the rest wait in
    the cursor; pending hours the run rebuilt itself, or no longer behind the seam, are dropped."""
    found = [H - timedelta(hours=n) for n in range(4, 4 + LATE_HOURS_PER_RUN + 5)]
    now, later = take_hours(found, [], RUN, H)
    assert now == sorted(found)[:LATE_HOURS_PER_RUN] and later == sorted(found)[LATE_HOURS_PER_RUN:]
    # The next run: its own finds and the carried ones together, oldest first again.
    fresh = [H - timedelta(hours=5)]
    assert take_hours(fresh, later, RUN, H) == (sorted({*later, *fresh}), [])
    # A pending hour inside the run's own range, or at/after the seam, needs nothing more.
    assert take_hours([], [H - timedelta(hours=2), H, H - timedelta(hours=30)], RUN, H) == (
        [H - timedelta(hours=30)], [])
    assert take_hours(found, [], RUN, None) == ([], [])


def test_hours_become_the_fewest_exact_ranges() -> None:
    hours = [H - timedelta(hours=n) for n in (9, 6, 5, 4, 5)]
    assert hour_ranges(hours) == [(H - timedelta(hours=9), H - timedelta(hours=8)),
                                  (H - timedelta(hours=6), H - timedelta(hours=3))]
    assert hour_ranges([]) == []


def test_listing_covers_the_dates_ingest_still_accepts() -> None:
    now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    assert listing_dates(now, 2) == ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert listing_dates(now, None) is None


def test_late_job_parses_plan_lates_ranges() -> None:
    """--ranges takes plan_late's JSON; nothing to do is [] (the job then starts no Spark session)."""
    from spark_jobs.common import TimeRange
    from spark_jobs.late import parse_ranges

    text = '[["2026-12-01T04:00:00+00:00", "2026-12-01T06:00:00+00:00"]]'
    assert parse_ranges(text) == [TimeRange(H - timedelta(hours=6), H - timedelta(hours=4))]
    assert parse_ranges("[]") == [] and parse_ranges("") == []
    for bad in ('{"a": 1}', '[["2026-12-01T04:00:00Z"]]', '[["2026-12-01T04:00:00Z", "2026-12-01T03:00:00Z"]]'):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ranges(bad)
