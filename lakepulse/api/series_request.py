"""The time-series request of the metrics API: validated against the catalog and the caps; the seam split.

Identifiers (metric, dimensions, timezone) are checked against allow-lists (the catalog, the IANA zone
names), so nothing a user typed reaches a query unless it names something that exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

from lakepulse.api.windows import GRANULARITIES, TooManyWindowsError, iana_zones, window_bounds
from lakepulse.catalog import Catalog, Metric, get_catalog

MAX_WINDOWS: Final = 10_080  # a week of minutes (or 420 days of hours)
MAX_GROUP_BY: Final = 2
DEFAULT_MAX_GROUPS: Final = 10
MAX_GROUPS: Final = 100
# windows × groups of one response: bounds its size (~150 bytes of JSON a point) and the merge's memory.
MAX_POINTS: Final = 200_000
MAX_VALUE_CHARS: Final = 200  # the event contract's longest dimension value (lakepulse.events.Text)
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)  # far from datetime.max, so window arithmetic cannot overflow


class SeriesRequestError(ValueError):
    """A time-series request the API refuses: 400, with a message that names the problem."""

    status_code: ClassVar[int] = 400


def _shown(value: object) -> str:
    """A user-supplied value for an error message, cut short (a 10 kB string is not echoed back)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_ends(start: object, end: object) -> None:
    """Refuse (400) a start or end that is not an aware time between EARLIEST and LATEST."""
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise SeriesRequestError(f"{name} must be a time with a UTC offset (RFC 3339)")
        if not EARLIEST <= moment <= LATEST:
            raise SeriesRequestError(f"{name} must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}")


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC range [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class SeriesRequest:
    """One metric's series: validated against the catalog and the caps on construction."""

    metric: str
    start: datetime
    end: datetime
    granularity: str
    timezone: str = "UTC"
    filters: Mapping[str, str] = field(default_factory=dict)
    group_by: Sequence[str] = ()
    max_groups: int = DEFAULT_MAX_GROUPS
    catalog: InitVar[Catalog | None] = None
    definition: Metric = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # UTC window boundaries b0 < … < bn: window i is [b_i, b_i+1); b0 ≤ start and bn ≥ end.
    bounds: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self, catalog: Catalog | None) -> None:
        catalog = catalog or get_catalog()
        if not isinstance(self.metric, str) or self.metric not in catalog.names():
            raise SeriesRequestError(f"unknown metric {_shown(self.metric)}; known: {', '.join(catalog.names())}")
        metric = catalog.metric(self.metric)
        if not isinstance(self.granularity, str) or self.granularity not in GRANULARITIES:
            raise SeriesRequestError(f"granularity must be one of {', '.join(GRANULARITIES)}")
        if not isinstance(self.timezone, str) or self.timezone not in iana_zones():
            raise SeriesRequestError(f"unknown timezone {_shown(self.timezone)}: use an IANA name like Europe/Berlin")
        check_ends(self.start, self.end)
        if self.start >= self.end:
            raise SeriesRequestError("start must be before end")
        if not isinstance(self.filters, Mapping):
            raise SeriesRequestError("filters must map dimension names to values")
        if isinstance(self.group_by, str):
            raise SeriesRequestError("group_by must be a list of dimension names")
        dims = metric.dimensions
        shown_dims = ", ".join(dims) or "none"
        for name, value in self.filters.items():
            if name not in dims:
                raise SeriesRequestError(
                    f"unknown filter dimension {_shown(name)} for {metric.name}; its dimensions: {shown_dims}"
                )
            if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
                raise SeriesRequestError(f"filter {name} must be a string of at most {MAX_VALUE_CHARS} characters")
        group_by = tuple(self.group_by)
        for name in group_by:
            if name not in dims:
                raise SeriesRequestError(
                    f"unknown group_by dimension {_shown(name)} for {metric.name}; its dimensions: {shown_dims}"
                )
        if len(group_by) > MAX_GROUP_BY or len(set(group_by)) != len(group_by):
            raise SeriesRequestError(f"group_by takes at most {MAX_GROUP_BY} different dimensions")
        if isinstance(self.max_groups, bool) or not isinstance(self.max_groups, int) or not (
            1 <= self.max_groups <= MAX_GROUPS
        ):
            raise SeriesRequestError(f"max_groups must be an integer from 1 to {MAX_GROUPS}")
        zone = ZoneInfo(self.timezone)
        step = GRANULARITIES[self.granularity]
        too_many = SeriesRequestError(
            f"more than {MAX_WINDOWS} windows of {self.granularity}: choose a coarser granularity or a shorter range"
        )
        # A cheap estimate first, so an absurd range is refused without walking it.
        if (self.end - self.start) / step > MAX_WINDOWS * 1.1 + 2:
            raise too_many
        try:
            bounds = window_bounds(self.start, self.end, zone, step, MAX_WINDOWS)
        except TooManyWindowsError:
            raise too_many from None
        groups = self.max_groups if group_by else 1
        if (len(bounds) - 1) * groups > MAX_POINTS:
            raise SeriesRequestError(
                f"{len(bounds) - 1} windows × max_groups {groups} is more than {MAX_POINTS} points: "
                "ask for fewer groups, a coarser granularity or a shorter range"
            )
        object.__setattr__(self, "filters", MappingProxyType(dict(self.filters)))
        object.__setattr__(self, "group_by", group_by)
        object.__setattr__(self, "definition", metric)
        object.__setattr__(self, "zone", zone)
        object.__setattr__(self, "bounds", tuple(bounds))

    @property
    def range(self) -> TimeRange:
        """The range the windows cover: [start, end) widened to whole windows."""
        return TimeRange(self.bounds[0], self.bounds[-1])


@dataclass(frozen=True)
class SeamSplit:
    """Which layer serves which minutes: batch [start, min(end, T)), speed [max(start, T), end); None = none."""

    batch: TimeRange | None
    speed: TimeRange | None


def split_at_seam(span: TimeRange, seam: datetime | None) -> SeamSplit:
    """Split `span` at the seam T (None: nothing is behind it yet, the speed layer serves everything)."""
    if seam is None:
        return SeamSplit(batch=None, speed=span)
    if seam.utcoffset() is None:
        raise ValueError("the seam must be timezone-aware")
    batch_end, speed_start = min(span.end, seam), max(span.start, seam)
    return SeamSplit(
        batch=TimeRange(span.start, batch_end) if span.start < batch_end else None,
        speed=TimeRange(speed_start, span.end) if speed_start < span.end else None,
    )
