"""What the metrics API's routes ask for, without HTTP: a series read from both layers across the seam."""

from __future__ import annotations

from typing import Any

from lakepulse.api.series import SeriesRequest, merge_series, split_at_seam
from lakepulse.api.sources import MinuteRows, MinuteSource, SeamReader

NO_ROWS = MinuteRows()


def read_series(
    request: SeriesRequest, tenant_id: str, seam: SeamReader, batch: MinuteSource, speed: MinuteSource
) -> dict[str, Any]:
    """A validated request of one tenant → the JSON-ready series: minutes before the seam from `batch`, the rest
    from `speed`, each minute once."""
    at = seam.current()
    split = split_at_seam(request.range, at)
    # A layer is asked only for its own span, so the seam literal never reaches an engine and no minute is
    # read twice; merge_series checks the spans again.
    batch_rows = batch.minute_rows(tenant_id, request.metric, split.batch.start, split.batch.end) \
        if split.batch else NO_ROWS
    speed_rows = speed.minute_rows(tenant_id, request.metric, split.speed.start, split.speed.end) \
        if split.speed else NO_ROWS
    response = merge_series(request, tenant_id, at, batch_rows.rows, speed_rows.rows)
    body = response.to_dict()
    body["tenant"] = tenant_id
    # Cut short by the group cap or by a layer's row cap: either way the numbers are not the whole answer.
    body["truncated"] = response.truncated or batch_rows.truncated or speed_rows.truncated
    return body
