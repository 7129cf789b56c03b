"""Widgets the metrics API can answer, without a database: each widget is checked by building the request it will
make (series, top-N, live), takes its kind's defaults, and the default dashboard passes the same checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from lakepulse.api.live import DEFAULT_RATINGS, MAX_RATINGS, WINDOWED
from lakepulse.api.series_request import MAX_VALUE_CHARS
from lakepulse.api.top import MAX_N
from lakepulse.api.widgets import DashboardBody, WidgetBody, default_widgets, series_request, top_request
from lakepulse.config.defaults import default_widget_specs
from lakepulse.config.schemas import LIVE_PARTS, LIVE_VISUALS, MAX_COUNT, WidgetIn
from lakepulse.config.schemas import MAX_VALUE_CHARS as STORED_VALUE_CHARS

SERIES: dict[str, Any] = {"title": "Orders", "kind": "series", "metric": "orders_placed", "visualisation": "line"}
TOP: dict[str, Any] = {"title": "Items", "kind": "top", "metric": "items_sold", "by": "item_id", "visualisation": "bar"}
LIVE: dict[str, Any] = {"title": "Funnel", "kind": "live", "live": "funnel", "visualisation": "funnel"}


def refusal(model: type[Any], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return str(caught.value)


def test_widgets_take_their_kinds_defaults() -> None:
    series = WidgetBody.model_validate(SERIES)
    assert (series.window, series.granularity, series.timezone, series.n) == ("24h", "1h", "UTC", None)
    top = WidgetBody.model_validate(TOP)
    assert (top.window, top.n, top.granularity) == ("1h", 5, None)
    ratings = WidgetBody.model_validate({**LIVE, "live": "ratings", "visualisation": "list"})
    assert ratings.n == DEFAULT_RATINGS == 10


def test_a_series_widget_reads_its_window_up_to_the_end_of_the_current_minute() -> None:
    widget = WidgetBody.model_validate({**SERIES, "window": "6h", "granularity": "15m", "timezone": "Europe/Berlin",
                                        "filters": {"country": "DE"}, "group_by": ["channel"]})
    request = series_request(widget, datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC))
    assert request.range.end == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)  # the 15m window holding 10:08
    assert request.start == datetime(2026, 3, 2, 4, 8, tzinfo=UTC)
    assert dict(request.filters) == {"country": "DE"} and request.group_by == ("channel",)
    top = top_request(WidgetBody.model_validate({**TOP, "window": "2h", "n": 3}), datetime(2026, 3, 2, 10, 7, 30,
                                                                                       tzinfo=UTC))
    assert (top.start, top.end, top.n) == (datetime(2026, 3, 2, 8, 8, tzinfo=UTC),
                                           datetime(2026, 3, 2, 10, 8, tzinfo=UTC), 3)


@pytest.mark.parametrize(("body", "reason"), [
    ({**SERIES, "metric": "no_such_metric"}, "unknown metric 'no_such_metric'"),
    ({**SERIES, "metric": "x'; DROP TABLE widgets; --"}, "unknown metric (not shown)"),
    ({**SERIES, "metric": None}, "needs a metric"),
    ({**SERIES, "group_by": ["country", "device", "channel"]}, "at most 2"),
    ({**SERIES, "group_by": ["item_id"]}, "unknown group_by dimension 'item_id'"),
    ({**SERIES, "filters": {"item_id": "x"}}, "unknown filter dimension 'item_id'"),
    ({**SERIES, "granularity": "2h"}, "granularity must be one of"),
    ({**SERIES, "window": "30m", "granularity": "1h"}, "shorter than one 1h window"),
    ({**SERIES, "window": "1 hour"}, "window must be"),
    ({**SERIES, "window": "8d", "granularity": "1d"}, "window must be"),
    ({**SERIES, "timezone": "../../etc/passwd"}, "unknown timezone"),
    ({**SERIES, "n": 3}, "takes no n"),
    ({**SERIES, "live": "funnel"}, "takes no live"),
    ({**SERIES, "visualisation": "funnel"}, "shown as line or area or bar or table"),
    ({**TOP, "by": None}, "needs by"),
    ({**TOP, "by": "channel"}, "unknown dimension for items_sold"),
    ({**TOP, "metric": "orders_completed", "by": "channel"}, "has no dimensions"),
    ({**TOP, "group_by": ["category"]}, "takes no group_by"),
    ({**TOP, "n": 101}, "less than or equal to 100"),
    ({**LIVE, "live": None}, "needs live"),
    ({**LIVE, "live": "weather"}, "Input should be"),
    ({**LIVE, "metric": "orders_placed", "window": "1h"}, "takes no metric, window"),
    ({**LIVE, "n": 5}, "ratings only"),
    ({**LIVE, "live": "sales_today", "visualisation": "list"}, "shown as number"),
    ({**LIVE, "timezone": "Nowhere/City"}, "unknown timezone"),
    ({**SERIES, "kind": "map"}, "Input should be"),
    ({**SERIES, "position": -1}, "greater than or equal to 0"),
    ({**SERIES, "position": 2**40}, "less than or equal to"),
    ({**SERIES, "colour": "red"}, "Extra inputs"),
])
def test_widgets_the_metrics_api_could_not_answer_are_refused_with_the_reason(body: dict[str, Any],
                                                                              reason: str) -> None:
    assert reason in refusal(WidgetBody, body)
    assert reason in refusal(DashboardBody, {"name": "x", "widgets": [body]})  # inside a new dashboard too


@pytest.mark.parametrize("body", [
    {**SERIES, "granularity": "2h"}, {**SERIES, "window": "1 hour"}, {**SERIES, "timezone": "Nowhere/City"},
    {**SERIES, "filters": {"item_id": "x"}}, {**TOP, "by": "channel"}, {**LIVE, "timezone": "Nowhere/City"},
])
def test_what_only_the_api_knows_is_checked_in_the_api_not_in_the_stored_shape(body: dict[str, Any]) -> None:
    assert WidgetIn.model_validate(body).title  # a well-shaped widget for the configuration layer
    refusal(WidgetBody, body)  # one the metrics API could not answer


def test_the_longest_window_at_the_finest_granularity_fits_the_series_caps() -> None:
    widget = WidgetBody.model_validate({**SERIES, "window": "7d", "granularity": "1m"})
    request = series_request(widget, datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC))
    assert len(request.bounds) - 1 == 7 * 24 * 60


def test_every_live_part_and_its_visualisations_validate() -> None:
    assert set(LIVE_PARTS) == {"funnel", "couriers_waiting", "ratings", *WINDOWED} == set(LIVE_VISUALS)
    for part, visuals in LIVE_VISUALS.items():
        for visual in visuals:
            assert WidgetBody.model_validate({**LIVE, "live": part, "visualisation": visual}).live == part


def test_the_stored_shapes_bounds_are_the_apis() -> None:
    assert STORED_VALUE_CHARS == MAX_VALUE_CHARS
    assert max(MAX_N, MAX_RATINGS) == MAX_COUNT


def test_the_default_dashboard_is_one_the_api_answers_and_stores_as_it_would() -> None:
    from lakepulse.config.defaults import default_widgets as stored_defaults

    widgets = default_widgets()
    assert len(widgets) == len(default_widget_specs()) == 8
    # Every field the API would fill in is given, so the rows are the same whichever layer validated them.
    assert [w.model_dump() for w in widgets] == [w.model_dump() for w in stored_defaults()]
