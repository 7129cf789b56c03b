"""What the metrics API's routes ask for, without HTTP: a series or a top list read from both layers across
the seam."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lakepulse.api.series import SeriesRequest, TimeRange, merge_series, split_at_seam, summed_by_engines
from lakepulse.api.sources import MinuteRows, MinuteSource, SeamReader
from lakepulse.api.top import TopRequest, rank_top

NO_ROWS = MinuteRows()


def read_minutes(
    metric: str, span: TimeRange, tenant_id: str, seam: SeamReader, batch: MinuteSource, speed: MinuteSource,
    totals: bool = False,
) -> tuple[datetime | None, MinuteRows, MinuteRows]:
    """The seam now, and the minute rows of `metric` in `span` (with `totals`, one row per minute summed by the
    engine): before the seam from `batch`, the rest from `speed`."""
    at = seam.current()
    split = split_at_seam(span, at)

    def read(source: MinuteSource, part: TimeRange | None) -> MinuteRows:
        if part is None:
            return NO_ROWS
        if totals:
            return source.minute_totals(tenant_id, metric, part.start, part.end)
        return source.minute_rows(tenant_id, metric, part.start, part.end)

    # A layer is asked only for its own span, so the seam literal never reaches an engine and no minute is
    # read twice; the merges check the spans again.
    return at, read(batch, split.batch), read(speed, split.speed)


def engine_totals_suffice(request: SeriesRequest) -> bool:
    """Whether the engines may add the minute's dimension tuples themselves: no group or filter needs them, and
    the metric's value needs only count and sum."""
    return not request.group_by and not request.filters and summed_by_engines(request.definition)


def read_series(
    request: SeriesRequest, tenant_id: str, seam: SeamReader, batch: MinuteSource, speed: MinuteSource
) -> dict[str, Any]:
    """A validated request of one tenant → the JSON-ready series: minutes before the seam from `batch`, the rest
    from `speed`, each minute once."""
    at, batch_rows, speed_rows = read_minutes(request.metric, request.range, tenant_id, seam, batch, speed,
                                              totals=engine_totals_suffice(request))
    response = merge_series(request, tenant_id, at, batch_rows.rows, speed_rows.rows)
    body = response.to_dict()
    body["tenant"] = tenant_id
    # Cut short by the group cap or by a layer's row cap: either way the numbers are not the whole answer.
    body["truncated"] = response.truncated or batch_rows.truncated or speed_rows.truncated
    return body


def read_top(
    request: TopRequest, tenant_id: str, seam: SeamReader, batch: MinuteSource, speed: MinuteSource
) -> dict[str, Any]:
    """A validated top-N request of one tenant → the JSON-ready ranking over both layers."""
    at, batch_rows, speed_rows = read_minutes(request.metric, request.range, tenant_id, seam, batch, speed)
    body = rank_top(request, tenant_id, at, batch_rows.rows, speed_rows.rows).to_dict()
    body["tenant"] = tenant_id
    body["truncated"] = batch_rows.truncated or speed_rows.truncated
    return body
