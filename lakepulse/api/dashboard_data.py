"""A dashboard's widgets turned into data, through the metrics API's own query modules (series, top-N, live state):
each widget's answer is the one the matching endpoint gives, and identical reads within a moment share one engine
query (the API's answer cache). Widgets are read side by side; one that cannot be read (an engine down, a widget
the catalog no longer allows) carries its error, and the others are still answered.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from lakepulse.api.live import LiveReader, read_live
from lakepulse.api.queries import read_series, read_top
from lakepulse.api.series_request import SeriesRequestError
from lakepulse.api.sources import MinuteSource, SeamReader, SourceUnavailable
from lakepulse.api.widgets import live_request, series_request, top_request
from lakepulse.catalog import Catalog
from lakepulse.config.models import Dashboard, Widget
from lakepulse.config.schemas import DashboardSummary, WidgetOut, dashboard_summary, widget_out

# Widgets of one dashboard read at once; the pool is the process's, so it also bounds the dashboards read at once.
_WIDGETS: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lakepulse-dashboard")

Cached = Callable[[Hashable, Callable[[], Any]], Any]


class WidgetData(BaseModel):
    """One widget resolved: its data as the metrics endpoint of its kind answers it, or why not."""

    widget: WidgetOut
    data: dict[str, Any] | None = Field(description="series: as GET /v1/metrics/{metric}/series; top: as "
                                                    "GET /v1/metrics/{metric}/top; live: that part of GET /v1/live")
    error: dict[str, Any] | None = Field(description="{status, detail} when this widget could not be read (e.g. "
                                                     "503: an engine did not answer); the others still are")


class DashboardData(BaseModel):
    dashboard: DashboardSummary
    tenant: str
    now: datetime
    widgets: list[WidgetData]


@dataclass(frozen=True)
class Readers:
    """What widgets read: the seam, both layers' minute rows, the live tables and the catalog."""

    seam: SeamReader
    batch: MinuteSource
    speed: MinuteSource
    live: LiveReader
    catalog: Catalog


def _no_cache(key: Hashable, compute: Callable[[], Any]) -> Any:
    return compute()


def read_widget(widget: Widget, tenant_id: str, readers: Readers, now: datetime, cached: Cached = _no_cache
                ) -> dict[str, Any]:
    """One widget's data for `tenant_id` at `now` (SeriesRequestError or SourceUnavailable when it cannot be)."""
    if widget.kind == "series":
        series = series_request(widget, now)
        key: Hashable = ("widget-series", tenant_id, series.metric, series.range.start, series.range.end,
                         series.granularity, series.timezone, tuple(sorted(series.filters.items())),
                         tuple(series.group_by))
        return dict(cached(key, lambda: read_series(series, tenant_id, readers.seam, readers.batch, readers.speed)))
    if widget.kind == "top":
        top = top_request(widget, now)
        key = ("widget-top", tenant_id, top.metric, top.dimension, top.start, top.end, top.n,
               tuple(sorted(top.filters.items())))
        return dict(cached(key, lambda: read_top(top, tenant_id, readers.seam, readers.batch, readers.speed)))
    live = live_request(widget)
    # One live read serves every live widget of the same zone (and ratings count) for a moment.
    key = ("widget-live", tenant_id, live.timezone, live.ratings)
    body = cached(key, lambda: read_live(live, tenant_id, readers.live, readers.seam, readers.batch, readers.speed,
                                         now, readers.catalog))
    part = widget.live_part or ""
    return {"tenant": body["tenant"], "timezone": body["timezone"], "now": body["now"], "seam": body["seam"],
            part: body[part]}


def _answer(widget: Widget, future: Future[dict[str, Any]]) -> WidgetData:
    try:
        return WidgetData(widget=widget_out(widget), data=future.result(), error=None)
    except (SeriesRequestError, SourceUnavailable) as exc:
        return WidgetData(widget=widget_out(widget), data=None,
                          error={"status": int(getattr(exc, "status_code", 400)), "detail": str(exc)})


def resolve_dashboard(dashboard: Dashboard, tenant_id: str, readers: Readers, now: datetime,
                      cached: Cached = _no_cache) -> DashboardData:
    """Every widget of one of `tenant_id`'s dashboards, read at `now`, in the dashboard's order."""
    if dashboard.tenant_id != tenant_id:  # the caller loaded it for this tenant: anything else is a bug
        raise ValueError("a dashboard of another tenant reached resolve_dashboard")
    futures = [(w, _WIDGETS.submit(read_widget, w, tenant_id, readers, now, cached)) for w in dashboard.widgets]
    return DashboardData(dashboard=dashboard_summary(dashboard), tenant=tenant_id, now=now,
                         widgets=[_answer(w, f) for w, f in futures])
