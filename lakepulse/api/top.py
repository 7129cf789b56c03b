"""Top-N over one dimension of a metric for a recent period (e.g. the 5 best-selling items of the last hour),
without HTTP or engine clients.

The period is whole minutes: `last` minutes ending with the current one (which is still filling), or an
explicit range. Minutes before the seam come from the batch layer and the rest from the speed layer, each
once, exactly as a series; every group's partials merge by the metric's kind, and groups rank by value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from types import MappingProxyType
from typing import Any, Final

from lakepulse.api.partials import Merged, PartialRow
from lakepulse.api.series import Layer, current_rows, value_of
from lakepulse.api.series_request import MAX_VALUE_CHARS, SeriesRequestError, TimeRange, check_ends, split_at_seam
from lakepulse.catalog import Catalog, Metric, get_catalog

MINUTE: Final = timedelta(minutes=1)
MAX_N: Final = 100
DEFAULT_N: Final = 5
# A top list reads every minute row of its range: a week bounds the rows (and so the time) of one request.
MAX_PERIOD: Final = timedelta(days=7)
LAST_RULE: Final = "a number and a unit m, h or d, e.g. 15m, 1h or 1d (at most 7d)"
_LAST_RE: Final = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNITS: Final = {"m": "minutes", "h": "hours", "d": "days"}


def parse_last(text: str) -> timedelta:
    """`15m`, `1h`, `7d` → a timedelta of whole minutes up to MAX_PERIOD; SeriesRequestError otherwise."""
    match = _LAST_RE.fullmatch(text) if len(text) <= 10 else None
    if match is None:
        raise SeriesRequestError(f"last must be {LAST_RULE}")
    period = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if period > MAX_PERIOD:
        raise SeriesRequestError(f"last must be {LAST_RULE}")
    return period


def minute_ceil(moment: datetime) -> datetime:
    """The end of the minute `moment` lies in (moment itself when it is a whole minute)."""
    floor = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return floor if floor == moment else floor + MINUTE


@dataclass(frozen=True)
class TopRequest:
    """The `n` largest groups of `dimension` for one metric over [start, end) in whole minutes, validated."""

    metric: str
    dimension: str
    start: datetime
    end: datetime
    n: int = DEFAULT_N
    filters: Mapping[str, str] = field(default_factory=dict)
    catalog: InitVar[Catalog | None] = None
    definition: Metric = field(init=False, repr=False, compare=False)

    def __post_init__(self, catalog: Catalog | None) -> None:
        catalog = catalog or get_catalog()
        if not isinstance(self.metric, str) or self.metric not in catalog.names():
            raise SeriesRequestError(f"unknown metric; known: {', '.join(catalog.names())}")
        metric = catalog.metric(self.metric)
        dims = metric.dimensions
        if not dims:
            raise SeriesRequestError(f"{metric.name} has no dimensions to rank; pick a metric that has some")
        if self.dimension not in dims:
            raise SeriesRequestError(f"unknown dimension for {metric.name}; its dimensions: {', '.join(dims)}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_N:
            raise SeriesRequestError(f"n must be an integer from 1 to {MAX_N}")
        check_ends(self.start, self.end)
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        if start.second or start.microsecond or end.second or end.microsecond:
            raise SeriesRequestError("from and to must be whole minutes (the metrics' resolution)")
        if not start < end:
            raise SeriesRequestError("start must be before end")
        if end - start > MAX_PERIOD:
            raise SeriesRequestError(f"a top list covers at most {MAX_PERIOD.days} days")
        for name, value in self.filters.items():
            if name not in dims:
                raise SeriesRequestError(f"unknown filter dimension for {metric.name}; its dimensions: "
                                         f"{', '.join(dims)}")
            if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
                raise SeriesRequestError(f"filter {name} must be a string of at most {MAX_VALUE_CHARS} characters")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "filters", MappingProxyType(dict(self.filters)))
        object.__setattr__(self, "definition", metric)

    @property
    def range(self) -> TimeRange:
        return TimeRange(self.start, self.end)

    @classmethod
    def last(cls, metric: str, dimension: str, period: timedelta, now: datetime, **kwargs: Any) -> TopRequest:
        """The `period` of whole minutes ending with the minute `now` lies in (that minute is still filling)."""
        end = minute_ceil(now)
        return cls(metric=metric, dimension=dimension, start=end - period, end=end, **kwargs)


@dataclass(frozen=True)
class TopEntry:
    """One ranked group: the dimension's value and the metric's value over the period."""

    rank: int
    key: str
    value: float | int | None
    count: int
    sum: float | None


@dataclass(frozen=True)
class TopResponse:
    request: TopRequest
    seam: datetime | None
    freshness: datetime | None
    groups: int  # how many groups had data (the list shows the n largest)
    entries: tuple[TopEntry, ...]

    @property
    def layer(self) -> Layer:
        if self.seam is None or self.request.start >= self.seam:
            return "speed"
        return "batch" if self.request.end <= self.seam else "mixed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times in UTC."""
        request = self.request
        return {
            "metric": request.definition.name,
            "kind": request.definition.kind,
            "unit": request.definition.unit,
            "dimension": request.dimension,
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "seam": None if self.seam is None else self.seam.isoformat(),
            "freshness": None if self.freshness is None else self.freshness.isoformat(),
            "layer": self.layer,
            "final": self.seam is not None and request.end <= self.seam,
            "groups": self.groups,
            "top": [{"rank": e.rank, "key": e.key, "value": e.value, "count": e.count, "sum": e.sum}
                    for e in self.entries],
        }


def rank_top(
    request: TopRequest,
    tenant_id: str,
    seam: datetime | None,
    batch_rows: Iterable[Mapping[str, Any] | PartialRow],
    speed_rows: Iterable[Mapping[str, Any] | PartialRow],
) -> TopResponse:
    """Minute rows of both layers (one tenant and metric) → the request's n largest groups by value."""
    split = split_at_seam(request.range, seam)
    metric = request.definition
    batch = current_rows(batch_rows, split.batch, tenant_id, metric.name)
    speed = current_rows(speed_rows, split.speed, tenant_id, metric.name)
    groups: dict[str, Merged] = {}
    for row in chain(batch, speed):
        if any(row.dims.get(name, "") != value for name, value in request.filters.items()):
            continue
        key = row.dims.get(request.dimension, "")
        if key not in groups:
            groups[key] = Merged(metric.bucket_count)
        groups[key].add(row)
    values = {key: value_of(metric, merged) for key, merged in groups.items()}
    # Largest value first; ties by count, then by key, so the order is stable between refreshes.
    ranked = sorted(groups, key=lambda k: (-(values[k].value or 0), -groups[k].count, k))[: request.n]
    entries = tuple(
        TopEntry(rank=i + 1, key=key, value=values[key].value, count=groups[key].count, sum=values[key].sum)
        for i, key in enumerate(ranked)
    )
    return TopResponse(request=request, seam=seam, freshness=max((row.updated_at for row in speed), default=None),
                       groups=len(groups), entries=entries)
