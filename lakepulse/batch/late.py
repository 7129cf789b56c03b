"""The late-data loop: which event hours, already served from Delta, received archived events since they were built.

Each hourly run rebuilds its range [H - 1h - lookback, H) from the archive snapshot plan_range took (the raw-archive
connector's committed offsets). An event later than that lookback lands in an older hour's partition of the archive,
and nothing would rebuild that hour. So after the seam moved, the run's `plan_late` task looks at the archive
objects committed between the previous run's snapshot (the cursor) and this run's: their names carry the event hour
and the partition and first offset of their records. Every such hour before the seam that this run did not rebuild
is a late hour; the `late_hours` task rebuilds exactly those hours (write, audit, publish, reconcile Pinot) with
this run's snapshot, and `record_late_cursor` then moves the cursor to it. A failed rebuild leaves the cursor, so
the next run finds the same hours again (plus new ones): history converges without a person, and every step is an
Airflow task (visible, retried).

A run rebuilds at most LATE_HOURS_PER_RUN late hours (oldest first); the rest wait in the cursor (`pending`) for the
next runs, so a first run with no cursor, or a producer's day-old backlog, cannot hold the hourly schedule.

Hours at or after the seam need no loop: the seam only ever moves over a range an hourly run rebuilt, with a newer
snapshot. The listing is limited to the event dates ingest accepts (`event_max_age_days`, plus a day).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lakepulse.archive import ArchiveObject
from lakepulse.batch.seam import read_json_object, write_json_object
from lakepulse.settings import Settings

HOUR = timedelta(hours=1)


# At most this many late hours per hourly run (oldest first; the rest wait in the cursor for the next runs): the
# first run after an upgrade, or after a producer's backlog, must not hold the hourly schedule for an hour.
LATE_HOURS_PER_RUN = 12


@dataclass(frozen=True)
class Cursor:
    """Where the loop stands: the archive snapshot whose late hours were found (None before the first run), and the
    late hours found but left for later runs (over LATE_HOURS_PER_RUN)."""

    offsets: dict[str, int] | None = None
    pending: tuple[datetime, ...] = ()


def read_cursor(settings: Settings, uri: str) -> Cursor:
    """The stored cursor (an empty one before the first run)."""
    stored = read_json_object(settings, uri)
    if stored is None:
        return Cursor()
    return Cursor({k: int(v) for k, v in stored["offsets"].items()},
                  tuple(datetime.fromisoformat(h) for h in stored.get("pending", ())))


def write_cursor(settings: Settings, uri: str, cursor: Cursor) -> None:
    """Store the cursor."""
    write_json_object(settings, uri, {"offsets": dict(cursor.offsets or {}),
                                      "pending": [h.isoformat() for h in cursor.pending],
                                      "recorded_at": datetime.now(UTC).isoformat()})


def take_hours(found: Iterable[datetime], pending: Iterable[datetime], rebuilt: tuple[datetime, datetime],
               seam: datetime | None, limit: int = LATE_HOURS_PER_RUN) -> tuple[list[datetime], list[datetime]]:
    """This run's late hours and the ones left for later runs: the newly found and the pending ones (minus any the
    run rebuilt whole, or that are no longer behind the seam), oldest first, at most `limit` now."""
    start, end = rebuilt
    hours = sorted({h for h in (*found, *pending)
                    if seam is not None and h < seam and not (start <= h and h + HOUR <= end)})
    return hours[:limit], hours[limit:]


def late_hours(objects: Iterable[ArchiveObject], since: Mapping[str, int] | None, until: Mapping[str, int],
               rebuilt: tuple[datetime, datetime], seam: datetime | None) -> list[datetime]:
    """Event hours (UTC, sorted) with objects committed in [since, until) per partition that lie before the seam
    and are not wholly inside `rebuilt` (the range this run rebuilt with the snapshot `until`).

    No cursor (`since` None, the first run) or a partition new to it counts from offset 0: anything in the archive
    may never have been built. Offsets that went backwards (the topic or the connector's group was reset) also
    count from 0."""
    if seam is None:
        return []  # nothing is served from Delta yet
    start, end = rebuilt
    hours = set()
    for obj in objects:
        upper = until.get(obj.offset_key)
        if upper is None:  # not in the snapshot: nothing of that partition is committed yet
            continue
        lower = (since or {}).get(obj.offset_key, 0)
        if lower > upper:
            lower = 0
        hour = obj.event_hour
        if not lower <= obj.start_offset < upper or hour >= seam:
            continue
        if start <= hour and hour + HOUR <= end:
            continue  # this run rebuilt the whole hour from the same snapshot
        hours.add(hour)
    return sorted(hours)


def hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Hours → the fewest [start, end) ranges covering exactly them (consecutive hours joined)."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def listing_dates(now: datetime, max_age_days: float | None) -> list[str] | None:
    """The event dates whose archive partitions can receive events now (None: every date): ingest refuses events
    older than `max_age_days`; a day of margin on both sides for clocks and the day boundary."""
    if max_age_days is None:
        return None
    first = (now - timedelta(days=max_age_days + 1)).date()
    last = (now + timedelta(days=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
