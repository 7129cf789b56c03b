"""The hourly run's range: the normal [H - 1h - lookback, H), widened back to a lagging seam, capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakepulse.batch.seam import CatchupTooLongError, SeamGapError, hourly_range, next_seam

H = datetime(2026, 12, 1, 10, tzinfo=UTC)


def hours(n: float) -> timedelta:
    """n hours."""
    return timedelta(hours=n)


def test_no_seam_is_the_normal_range() -> None:
    """Before the first advance there is nothing to catch up."""
    assert hourly_range(H, 2, None, 48) == (H - hours(3), H)


@pytest.mark.parametrize("seam", [H - hours(3), H - hours(2), H - hours(1), H - timedelta(minutes=1)])
def test_seam_inside_the_normal_range_keeps_it(seam: datetime) -> None:
    """The previous run advanced the seam into this run's range: the normal range already covers it."""
    assert hourly_range(H, 2, seam, 48) == (H - hours(3), H)


def test_lagging_seam_widens_the_range_to_it() -> None:
    """Seam 5 h behind with lookback 2 (the normal range starts 3 h back): start at the seam, no gap."""
    seam = H - hours(5)
    start, end = hourly_range(H, 2, seam, 48)
    assert (start, end) == (seam, H)
    assert next_seam(seam, start, end) == H  # what advance_seam then does, instead of SeamGapError


def test_seam_exactly_at_the_cap_is_caught_up() -> None:
    """The cap is inclusive: a seam max_catchup_hours before the tick is still one run's work."""
    assert hourly_range(H, 2, H - hours(48), 48) == (H - hours(48), H)


def test_seam_beyond_the_cap_names_the_backfill() -> None:
    """A seam more than max_catchup_hours back fails with the seam and the exact backfill command."""
    seam = H - hours(49)
    with pytest.raises(CatchupTooLongError) as caught:
        hourly_range(H, 2, seam, 48)
    message = str(caught.value)
    assert seam.isoformat() in message
    assert "lakepulse backfill --start 2026-11-29T09:00:00Z --end 2026-12-01T07:00:00Z" in message
    assert "max_catchup_hours=48" in message
    assert isinstance(caught.value, SeamGapError)  # still a gap, for callers that catch those


def test_small_cap_fails_only_when_there_is_a_gap() -> None:
    """A cap below the normal range only bites when the seam lags behind it."""
    assert hourly_range(H, 2, H - hours(2), 1) == (H - hours(3), H)
    with pytest.raises(CatchupTooLongError):
        hourly_range(H, 2, H - hours(4), 1)


@pytest.mark.parametrize("seam", [H, H + hours(1), H + hours(30)])
def test_seam_at_or_after_the_tick_is_the_normal_range(seam: datetime) -> None:
    """A rerun of history already behind the seam: nothing to catch up (advance_seam then leaves the seam)."""
    assert hourly_range(H, 2, seam, 48) == (H - hours(3), H)
    assert hourly_range(H, 2, seam, 1) == (H - hours(3), H)  # never a cap error ahead of the tick


def test_lookback_zero() -> None:
    """Lookback 0 is the hour that ended; a lagging seam still widens it."""
    assert hourly_range(H, 0, None, 48) == (H - hours(1), H)
    assert hourly_range(H, 0, H - hours(1), 48) == (H - hours(1), H)
    assert hourly_range(H, 0, H - hours(2), 48) == (H - hours(2), H)


def test_times_come_back_in_utc_and_minute_aligned() -> None:
    """Other zones and naive times (read as UTC) give UTC bounds; a seam's seconds only widen the range."""
    from zoneinfo import ZoneInfo

    tick = H.astimezone(ZoneInfo("Europe/Berlin"))
    start, end = hourly_range(tick, 2, datetime(2026, 12, 1, 4, 0, 30), 48)
    assert (start, end) == (H - hours(6), H)
    assert start.tzinfo == UTC and end.tzinfo == UTC


@pytest.mark.parametrize(("lookback", "cap"), [(-1, 48), (2, 0)])
def test_bad_params_are_refused(lookback: int, cap: int) -> None:
    """The DAG's Params refuse these already; the function does not rely on it."""
    with pytest.raises(ValueError):
        hourly_range(H, lookback, None, cap)


@pytest.mark.parametrize("minutes_past", [0, 5, 59])
def test_a_tick_past_the_hour_rebuilds_up_to_the_hour(minutes_past: int) -> None:
    """The scheduled tick is five past the hour (the archive has the hour by then): the range still ends at H."""
    assert hourly_range(H + timedelta(minutes=minutes_past), 2, None, 48) == (H - hours(3), H)
