"""Time-series windows in a timezone: the granularities and the window boundaries of a range.

A window is the set of instants that share a label: for 1d the local date, for the sub-day granularities
the local wall-clock time floored to the granularity together with the UTC offset. So a 1d window runs
from local midnight to local midnight (23 or 25 hours on DST days), and a 1h window in Europe/Berlin is
one UTC hour even on the day the clock falls back (the repeated 02:00 hour is two windows, told apart by
their offsets), while in Asia/Kolkata (+05:30) hours start at half past the UTC hour. Boundaries are
found on the minute grid, since minute rows are the finest data.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, available_timezones

GRANULARITIES: Final[dict[str, timedelta]] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
DAY: Final = timedelta(days=1)
MINUTE: Final = timedelta(minutes=1)

# A label: the local date (1d), or the floored local wall time and the offset in force (sub-day).
Label = date | tuple[datetime, timedelta]


class TooManyWindowsError(ValueError):
    """The range holds more windows than the caller allows."""


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """The IANA zone names this machine knows (an allow-list: no file paths, no `localtime`)."""
    return frozenset(available_timezones())


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _wall(instant: datetime, offset: timedelta) -> datetime:
    """The naive local wall-clock time of a UTC instant under `offset`."""
    return (instant + offset).replace(tzinfo=None)


def _label(instant: datetime, zone: ZoneInfo, step: timedelta) -> Label:
    offset = _offset(instant, zone)
    wall = _wall(instant, offset)
    if step == DAY:
        return wall.date()
    minutes = wall.hour * 60 + wall.minute
    floored = wall.replace(second=0, microsecond=0) - timedelta(minutes=minutes % (step // MINUTE))
    return floored, offset


def _label_start(label: Label, offset: timedelta) -> datetime:
    """The UTC instant at which `label` begins if `offset` held throughout."""
    wall = datetime.combine(label, time()) if isinstance(label, date) else label[0]
    return (wall - offset).replace(tzinfo=UTC)


def _label_end(label: Label, offset: timedelta, step: timedelta) -> datetime:
    """The UTC instant at which `label` ends if `offset` held throughout."""
    return _label_start(label, offset) + step


def _first_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first minute in (before, after] whose offset differs from `before`'s (after's must differ)."""
    offset = _offset(before, zone)
    lo, hi = before, after
    while hi - lo > MINUTE:
        mid = lo + ((hi - lo) // MINUTE // 2) * MINUTE
        if _offset(mid, zone) == offset:
            lo = mid
        else:
            hi = mid
    return hi


def _last_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The earliest minute τ in (before, after] such that [τ, after] all has `after`'s offset."""
    offset = _offset(after, zone)
    lo, hi = before, after
    while hi - lo > MINUTE:
        mid = lo + ((hi - lo) // MINUTE // 2) * MINUTE
        if _offset(mid, zone) == offset:
            hi = mid
        else:
            lo = mid
    return hi


def window_floor(instant: datetime, zone: ZoneInfo, step: timedelta) -> datetime:
    """The UTC start of the window holding `instant` (aware) in `zone` at granularity `step`."""
    instant = instant.astimezone(UTC).replace(second=0, microsecond=0)
    label = _label(instant, zone, step)
    cur = instant
    while True:
        offset = _offset(cur, zone)
        start = _label_start(label, offset)
        if _offset(start, zone) != offset:
            # The offset changed inside the label: the window starts no earlier than that change.
            start = _last_change(start, cur, zone)
        before = start - MINUTE
        if _label(before, zone, step) != label:
            return start
        cur = before  # the label continues under an earlier offset (e.g. a 1d window across a DST change)


def next_boundary(start: datetime, zone: ZoneInfo, step: timedelta) -> datetime:
    """The UTC end of the window that begins at `start` (a window start, as window_floor gives)."""
    label = _label(start, zone, step)
    cur = start
    while True:
        offset = _offset(cur, zone)
        end = _label_end(label, offset, step)
        if _offset(end - MINUTE, zone) != offset:
            # An offset change inside: a sub-day label ends there; a day goes on under the new offset.
            end = _first_change(cur, end - MINUTE, zone)
        if _label(end, zone, step) != label:
            return end
        cur = end


def window_bounds(start: datetime, end: datetime, zone: ZoneInfo, step: timedelta, limit: int) -> list[datetime]:
    """UTC boundaries b0 < b1 < … < bn of the windows covering [start, end) (b0 ≤ start, bn ≥ end);
    TooManyWindowsError when there would be more than `limit` windows."""
    bounds = [window_floor(start, zone, step)]
    offset = _offset(bounds[0], zone)
    step_minutes = step // MINUTE
    while bounds[-1] < end:
        if len(bounds) > limit:
            raise TooManyWindowsError(f"more than {limit} windows")
        here = bounds[-1]
        wall = _wall(here, offset)
        after = here + step
        after_offset = _offset(after, zone)
        # The common case, one offset lookup a window: a window that starts on the step in wall-clock time
        # and keeps its offset lasts exactly one step. Anything else takes the careful search.
        if after_offset != offset or (wall.hour * 60 + wall.minute) % step_minutes:
            after = next_boundary(here, zone, step)
            after_offset = _offset(after, zone)
        bounds.append(after)
        offset = after_offset
    return bounds


def window_index(bounds: Sequence[float], start: float, end: float) -> int | None:
    """The window (index into epoch-second `bounds`) holding [start, end), or None when outside the range;
    ValueError when the span crosses a boundary (only rows no longer than a window can be placed)."""
    i = bisect_right(bounds, start) - 1
    if i < 0 or i >= len(bounds) - 1:
        return None
    if end > bounds[i + 1]:
        raise ValueError("a partial row spans two windows: pass minute rows (or rows that fit one window)")
    return i
