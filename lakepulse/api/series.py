"""A metric's time series across the seam, without HTTP or engine clients: the merge and the response.

The caller validates a `SeriesRequest`, asks `split_at_seam` which minutes each layer serves, fetches those
minute rows (tenant, metric and range bound in the query) and hands them to `merge_series`, which places
each minute in its window in the request's timezone and merges the partials into values by metric kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from lakepulse.api.partials import Merged, PartialRow, as_partial_row, bucket_quantile
from lakepulse.api.series_request import (
    DEFAULT_MAX_GROUPS,
    MAX_GROUP_BY,
    MAX_GROUPS,
    MAX_POINTS,
    MAX_WINDOWS,
    SeamSplit,
    SeriesRequest,
    SeriesRequestError,
    TimeRange,
    split_at_seam,
)
from lakepulse.api.windows import window_index
from lakepulse.catalog import Metric

QUANTILES: Final[dict[str, float]] = {"p50": 0.5, "p90": 0.9, "p99": 0.99}

Layer = Literal["batch", "speed", "mixed"]

__all__ = [
    "DEFAULT_MAX_GROUPS",
    "MAX_GROUPS",
    "MAX_GROUP_BY",
    "MAX_POINTS",
    "MAX_WINDOWS",
    "QUANTILES",
    "SeamSplit",
    "SeriesRequest",
    "SeriesRequestError",
    "SeriesResponse",
    "SeriesWindow",
    "TimeRange",
    "Value",
    "current_rows",
    "merge_series",
    "split_at_seam",
    "value_of",
]


@dataclass(frozen=True)
class SeriesWindow:
    """One window of one group: its value by metric kind, where it was served from and whether it is final."""

    start: datetime
    end: datetime
    group: Mapping[str, str]
    value: float | int | None
    count: int
    sum: float | None
    layer: Layer
    final: bool
    min: float | None = None
    max: float | None = None
    quantiles: Mapping[str, float | None] | None = None

    def to_dict(self, zone: ZoneInfo, labels: dict[datetime, str] | None = None) -> dict[str, Any]:
        """JSON-ready: times ISO 8601 in `zone` (from `labels`, which it fills, when given: a window's end is the
        next one's start), numbers plain ints/floats; distributions add min/max/quantiles."""
        labels = {} if labels is None else labels
        for moment in (self.start, self.end):
            if moment not in labels:
                labels[moment] = moment.astimezone(zone).isoformat()
        out: dict[str, Any] = {
            "start": labels[self.start],
            "end": labels[self.end],
            "group": dict(self.group),
            "value": self.value,
            "count": self.count,
            "sum": self.sum,
            "layer": self.layer,
            "final": self.final,
        }
        if self.quantiles is not None:
            out.update(min=self.min, max=self.max, quantiles=dict(self.quantiles))
        return out


@dataclass(frozen=True)
class SeriesResponse:
    """The series of one request: windows (group by group, each in time order), the seam and freshness."""

    request: SeriesRequest
    seam: datetime | None
    freshness: datetime | None  # the newest updated_at of the speed rows read
    truncated: bool  # more groups than request.max_groups had data; the largest by count were kept
    windows: tuple[SeriesWindow, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every time ISO 8601 in the request's timezone."""
        zone, metric = self.request.zone, self.request.definition
        labels: dict[datetime, str] = {}
        return {
            "metric": metric.name,
            "kind": metric.kind,
            "unit": metric.unit,
            "granularity": self.request.granularity,
            "timezone": self.request.timezone,
            "start": self.request.range.start.astimezone(zone).isoformat(),
            "end": self.request.range.end.astimezone(zone).isoformat(),
            "seam": None if self.seam is None else self.seam.astimezone(zone).isoformat(),
            "freshness": None if self.freshness is None else self.freshness.astimezone(zone).isoformat(),
            "truncated": self.truncated,
            "windows": [w.to_dict(zone, labels) for w in self.windows],
        }


def _finite(value: float | None) -> float | None:
    """A JSON number or null: NaN and infinities have no JSON spelling."""
    return None if value is None or not math.isfinite(value) else float(value)


def current_rows(
    rows: Iterable[Mapping[str, Any] | PartialRow], span: TimeRange | None, tenant_id: str, metric: str
) -> list[PartialRow]:
    """One layer's rows inside its span, newest version of each key (tenant, metric, dims_key, window_start)."""
    latest: dict[tuple[str, datetime], PartialRow] = {}
    for raw in rows:
        row = as_partial_row(raw)
        # A row of another tenant or metric means the query was wrong: fail loudly, never merge it.
        if row.tenant_id != tenant_id or row.metric != metric:
            raise ValueError(f"a {row.metric!r} row of another tenant or metric reached the {metric!r} series")
        # Minutes outside the layer's span belong to the other layer (or to no window): each minute once.
        if span is None or not span.start <= row.window_start < span.end:
            continue
        key = (row.dims_key, row.window_start)
        kept = latest.get(key)
        # Upsert semantics: if a reader returns superseded versions of a row, the newest one counts.
        if kept is None or row.updated_at > kept.updated_at:
            latest[key] = row
    return list(latest.values())


def _window(
    request: SeriesRequest, group: Mapping[str, str], i: int, merged: Merged, seam: datetime | None
) -> SeriesWindow:
    """The output window `i` of one group from its merged partials."""
    start, end = request.bounds[i], request.bounds[i + 1]
    if seam is None or start >= seam:
        layer: Layer = "speed"
    else:
        layer = "batch" if end <= seam else "mixed"
    value = value_of(request.definition, merged)
    return SeriesWindow(
        start=start,
        end=end,
        group=group,
        value=value.value,
        count=merged.count,
        sum=value.sum,
        layer=layer,
        final=seam is not None and end <= seam,
        min=_finite(merged.min),
        max=_finite(merged.max),
        quantiles=value.quantiles,
    )


@dataclass(frozen=True)
class Value:
    """What merged partials mean for a metric of one kind: its value, its sum (where a sum means something)
    and, for distributions, quantiles."""

    value: float | int | None
    sum: float | None
    quantiles: Mapping[str, float | None] | None


def summed_by_engines(metric: Metric) -> bool:
    """Whether the metric's value needs only count and sum, which an engine can add over a minute's dimension
    tuples itself (sketches and buckets do not add in SQL)."""
    return metric.kind in ("count", "sum", "average")


def value_of(metric: Metric, merged: Merged) -> Value:
    """Merged partials → the metric's value by kind: counts and sums add, averages are sum/count, distinct
    counts union sketches, quantiles come from the buckets."""
    kind = metric.kind
    mean = merged.sum / merged.count if merged.count and merged.sum is not None else None
    total = merged.sum if merged.sum is not None else 0.0
    value: float | int | None
    if kind == "count":
        value = merged.count
    elif kind == "distinct":
        value = merged.distinct()
    elif kind == "sum":
        value = _finite(total)
    else:  # average, distribution: the mean
        value = _finite(mean)
    quantiles = None
    if kind == "distribution":
        buckets = merged.buckets or []
        quantiles = {
            name: _finite(bucket_quantile(buckets, metric.buckets, q, merged.min, merged.max))
            for name, q in QUANTILES.items()
        }
    return Value(value, None if kind in ("count", "distinct") else _finite(total), quantiles)


def merge_series(
    request: SeriesRequest,
    tenant_id: str,
    seam: datetime | None,
    batch_rows: Iterable[Mapping[str, Any] | PartialRow],
    speed_rows: Iterable[Mapping[str, Any] | PartialRow],
) -> SeriesResponse:
    """Minute rows of the batch and speed layers (one tenant and metric) → the request's windows per group."""
    split = split_at_seam(request.range, seam)
    metric = request.definition
    batch = current_rows(batch_rows, split.batch, tenant_id, metric.name)
    speed = current_rows(speed_rows, split.speed, tenant_id, metric.name)
    bounds = [b.timestamp() for b in request.bounds]
    groups: dict[tuple[str, ...], dict[int, Merged]] = {} if request.group_by else {(): {}}
    for row in chain(batch, speed):
        if any(row.dims.get(name, "") != value for name, value in request.filters.items()):
            continue
        i = window_index(bounds, row.window_start.timestamp(), row.window_end.timestamp())
        if i is None:
            continue
        windows = groups.setdefault(tuple(row.dims.get(name, "") for name in request.group_by), {})
        if i not in windows:
            windows[i] = Merged(metric.bucket_count)
        windows[i].add(row)
    # The largest groups by count first (count means something for every kind), then by their values.
    ranked = sorted(groups.items(), key=lambda item: (-sum(m.count for m in item[1].values()), item[0]))
    out: list[SeriesWindow] = []
    for key, windows in ranked[: request.max_groups]:
        group = dict(zip(request.group_by, key, strict=True))
        for i in range(len(bounds) - 1):
            out.append(_window(request, group, i, windows.get(i) or Merged(metric.bucket_count), seam))
    return SeriesResponse(
        request=request,
        seam=seam,
        freshness=max((row.updated_at for row in speed), default=None),
        truncated=len(ranked) > request.max_groups,
        windows=tuple(out),
    )
