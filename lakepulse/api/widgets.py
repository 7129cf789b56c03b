"""Widgets the metrics API can answer: a widget is checked by building the very request it will make
(`SeriesRequest`, `TopRequest`, `LiveRequest`), so one that validates here is one the metrics endpoints answer.

The configuration layer (lakepulse.config.schemas) says what a widget looks like; this module adds what only the
API knows: window and granularity rules, the dimensions a filter or group may name, time zones, the caps of each
endpoint, and the defaults of each kind. The routes take `WidgetBody` and `DashboardBody`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import Field, model_validator

from lakepulse.api.live import DEFAULT_RATINGS, LiveRequest
from lakepulse.api.series_request import SeriesRequest, SeriesRequestError
from lakepulse.api.top import DEFAULT_N, LAST_RULE, MAX_N, TopRequest, parse_last
from lakepulse.api.windows import GRANULARITIES
from lakepulse.catalog import get_catalog
from lakepulse.config.defaults import default_widget_specs
from lakepulse.config.models import Widget
from lakepulse.config.schemas import MAX_WIDGETS, DashboardIn, WidgetIn, widget_in

DEFAULT_WINDOW: Final = {"series": "24h", "top": "1h"}
DEFAULT_GRANULARITY: Final = "1h"
# Widgets are validated by building their request at a fixed whole minute (caps do not depend on the hour).
REFERENCE_TIME: Final = datetime(2026, 1, 5, tzinfo=UTC)


class WidgetBody(WidgetIn):
    """A widget as a request body: its shape (WidgetIn), then its kind's defaults filled in and its request
    built, so whatever the metrics API would refuse is refused here, with the API's own reason."""

    @model_validator(mode="after")
    def _answerable(self) -> WidgetBody:
        try:
            if self.kind == "live":
                if self.live == "ratings":
                    self.n = DEFAULT_RATINGS if self.n is None else self.n
                live_request(self)
                return self
            self.window = self.window or DEFAULT_WINDOW[self.kind]
            try:
                period = parse_last(self.window)
            except SeriesRequestError:
                raise ValueError(f"window must be {LAST_RULE}") from None
            if self.kind == "series":
                self.granularity = self.granularity or DEFAULT_GRANULARITY
                if self.granularity in GRANULARITIES and period < GRANULARITIES[self.granularity]:
                    raise ValueError(f"window {self.window} is shorter than one {self.granularity} window")
                series_request(self, REFERENCE_TIME)
            else:
                self.n = DEFAULT_N if self.n is None else self.n
                if self.n > MAX_N:
                    raise ValueError(f"n must be at most {MAX_N} for a top widget")
                top_request(self, REFERENCE_TIME)
        except SeriesRequestError as exc:
            raise ValueError(str(exc)) from None
        return self


class DashboardBody(DashboardIn):
    """A new dashboard as a request body: its widgets are checked as `WidgetBody`."""

    widgets: Sequence[WidgetBody] = Field(default_factory=list, max_length=MAX_WIDGETS)


def default_widgets() -> list[WidgetBody]:
    """The default restaurant dashboard's widgets (lakepulse.config.defaults), checked like any a tenant writes."""
    return [WidgetBody.model_validate(spec) for spec in default_widget_specs()]


def minute_end(now: datetime) -> datetime:
    """The end of the minute `now` lies in: a widget's period ends there (the current minute included)."""
    floor = now.astimezone(UTC).replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1)


def series_request(widget: WidgetIn | Widget, now: datetime) -> SeriesRequest:
    """The series a widget reads at `now`: its window up to the end of the current minute."""
    if isinstance(widget, Widget):
        widget = widget_in(widget)
    assert widget.metric is not None and widget.window is not None and widget.granularity is not None
    end = minute_end(now)
    return SeriesRequest(metric=widget.metric, start=end - parse_last(widget.window), end=end,
                         granularity=widget.granularity, timezone=widget.timezone, filters=widget.filters,
                         group_by=tuple(widget.group_by), catalog=get_catalog())


def top_request(widget: WidgetIn | Widget, now: datetime) -> TopRequest:
    """The top list a widget reads at `now`: its window of whole minutes ending with the current one."""
    if isinstance(widget, Widget):
        widget = widget_in(widget)
    assert widget.metric is not None and widget.window is not None and widget.by is not None
    return TopRequest.last(widget.metric, widget.by, parse_last(widget.window), now, n=widget.n or DEFAULT_N,
                           filters=widget.filters, catalog=get_catalog())


def live_request(widget: WidgetIn | Widget) -> LiveRequest:
    """The live state a live widget reads (its zone for 'today', its number of ratings)."""
    if isinstance(widget, Widget):
        widget = widget_in(widget)
    return LiveRequest(timezone=widget.timezone, ratings=widget.n or DEFAULT_RATINGS)
