"""What the configuration layer accepts, without a database: widgets of the right shape for their kind, alert rules
against the catalog, text PostgreSQL can store, patches validated whole, the default dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lakepulse.catalog import get_catalog
from lakepulse.config.defaults import default_widgets
from lakepulse.config.errors import ConfigError
from lakepulse.config.schemas import AlertRuleIn, AlertRulePatch, DashboardIn, WidgetIn, shown, validated

SERIES: dict[str, Any] = {"title": "Orders", "kind": "series", "metric": "orders_placed", "visualisation": "line"}
TOP: dict[str, Any] = {"title": "Items", "kind": "top", "metric": "items_sold", "by": "item_id", "visualisation": "bar"}
LIVE: dict[str, Any] = {"title": "Funnel", "kind": "live", "live": "funnel", "visualisation": "funnel"}
RULE: dict[str, Any] = {"name": "Rush", "metric": "orders_placed", "condition": "gt", "threshold": 10}


def refusal(model: type[Any], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return str(caught.value)


# --- widgets ------------------------------------------------------------------------------------------------------
# What the metrics API can answer (windows, granularities, filters, timezones) is tested in test_api_widgets.py.


def test_a_widget_is_stored_as_written_without_the_apis_defaults() -> None:
    series = WidgetIn.model_validate(SERIES)
    assert (series.window, series.granularity, series.timezone, series.n) == (None, None, "UTC", None)


@pytest.mark.parametrize(("body", "reason"), [
    ({**SERIES, "metric": "no_such_metric"}, "unknown metric 'no_such_metric'"),
    ({**SERIES, "metric": "x'; DROP TABLE widgets; --"}, "unknown metric (not shown)"),
    ({**SERIES, "metric": None}, "needs a metric"),
    ({**SERIES, "group_by": ["country", "device", "channel"]}, "at most 2"),
    ({**SERIES, "n": 3}, "takes no n"),
    ({**SERIES, "live": "funnel"}, "takes no live"),
    ({**SERIES, "visualisation": "funnel"}, "shown as line or area or bar or table"),
    ({**TOP, "by": None}, "needs by"),
    ({**TOP, "group_by": ["category"]}, "takes no group_by"),
    ({**TOP, "n": 101}, "less than or equal to 100"),
    ({**LIVE, "live": None}, "needs live"),
    ({**LIVE, "live": "weather"}, "Input should be"),
    ({**LIVE, "metric": "orders_placed", "window": "1h"}, "takes no metric, window"),
    ({**LIVE, "n": 5}, "ratings only"),
    ({**LIVE, "live": "sales_today", "visualisation": "list"}, "shown as number"),
    ({**SERIES, "kind": "map"}, "Input should be"),
    ({**SERIES, "position": -1}, "greater than or equal to 0"),
    ({**SERIES, "position": 2**40}, "less than or equal to"),
    ({**SERIES, "colour": "red"}, "Extra inputs"),
])
def test_widgets_of_the_wrong_shape_are_refused_with_the_reason(body: dict[str, Any], reason: str) -> None:
    assert reason in refusal(WidgetIn, body)


@pytest.mark.parametrize("text", ["a\x00b", "a\nb", "\x07", "\ud800", "   "])
def test_names_postgresql_cannot_store_or_a_person_cannot_read_are_refused(text: str) -> None:
    refusal(DashboardIn, {"name": text})
    refusal(WidgetIn, {**SERIES, "title": text})


def test_names_are_trimmed_and_unicode_is_welcome() -> None:
    assert DashboardIn.model_validate({"name": "  Café 🍕 — Mittag  "}).name == "Café 🍕 — Mittag"
    assert WidgetIn.model_validate({**SERIES, "filters": {"country": "日本"}}).filters == {"country": "日本"}
    refusal(WidgetIn, {**SERIES, "filters": {"country": "x\x00"}})
    refusal(DashboardIn, {"name": "x" * 201})
    refusal(DashboardIn, {"name": "x", "widgets": [SERIES] * 51})


def test_the_default_dashboard_is_valid_and_covers_the_restaurant_view() -> None:
    widgets = default_widgets()
    assert [w.position for w in widgets] == list(range(len(widgets)))
    parts = {w.live for w in widgets if w.kind == "live"}
    assert parts == {"funnel", "couriers_waiting", "ratings", "prep_time_last_hour", "sales_today"}
    assert {(w.metric, w.by, w.n) for w in widgets if w.kind == "top"} == {("items_sold", "item_id", 5)}
    assert {w.metric for w in widgets if w.kind == "series"} == {"orders_placed", "gross_sales"}
    for widget in widgets:  # valid as a tenant would write it, every field its kind reads given
        assert WidgetIn.model_validate(widget.model_dump()) == widget
        assert widget.kind == "live" or (widget.window is not None and (widget.kind == "top") == (widget.n is not None))


# --- alert rules --------------------------------------------------------------------------------------------------


def test_a_rule_takes_defaults_and_an_anomaly_needs_no_threshold() -> None:
    rule = AlertRuleIn.model_validate(RULE)
    assert (rule.window_minutes, rule.baseline_minutes, rule.enabled, rule.webhook_url) == (5, 30, True, None)
    anomaly = AlertRuleIn.model_validate({**RULE, "condition": "anomaly", "threshold": None})
    assert anomaly.threshold is None


@pytest.mark.parametrize(("body", "reason"), [
    ({**RULE, "metric": "no_such_metric"}, "unknown metric 'no_such_metric'"),
    ({**RULE, "metric": "active_users"}, "sketch metric"),
    ({**RULE, "dimensions": {"item_id": "x"}}, "unknown dimension 'item_id' for orders_placed"),
    ({**RULE, "metric": "orders_completed", "dimensions": {"channel": "app"}}, "its dimensions: none"),
    ({**RULE, "threshold": None}, "condition gt needs a threshold"),
    ({**RULE, "threshold": float("nan")}, "finite number"),
    ({**RULE, "threshold": float("inf")}, "finite number"),
    ({**RULE, "condition": "eq"}, "Input should be"),
    ({**RULE, "window_minutes": 0}, "greater than or equal to 1"),
    ({**RULE, "window_minutes": 1441}, "less than or equal to 1440"),
    ({**RULE, "baseline_minutes": 2}, "greater than or equal to 3"),
    ({**RULE, "webhook_url": "file:///etc/passwd"}, "http:// or https://"),
    ({**RULE, "webhook_url": "https://x\x00.example"}, "NUL"),
    ({**RULE, "webhook_url": "https://example.com/" + "a" * 2048}, "at most 2048"),
])
def test_rules_outside_the_catalog_or_bounds_are_refused_with_the_reason(body: dict[str, Any], reason: str) -> None:
    assert reason in refusal(AlertRuleIn, body)


def test_a_patch_is_validated_as_the_whole_rule_it_makes() -> None:
    stored = AlertRuleIn.model_validate({**RULE, "condition": "anomaly", "threshold": None}).model_dump()
    patch = AlertRulePatch.model_validate({"condition": "lt"})
    with pytest.raises(ConfigError, match="condition lt needs a threshold") as caught:
        validated(AlertRuleIn, {**stored, **patch.model_dump(exclude_unset=True)})
    assert caught.value.status_code == 400
    merged = validated(AlertRuleIn, {**stored, **AlertRulePatch.model_validate(
        {"condition": "lt", "threshold": 3}).model_dump(exclude_unset=True)})
    assert (merged.condition, merged.threshold, merged.name) == ("lt", 3, "Rush")
    refusal(AlertRulePatch, {"tenant_id": "someone-else"})  # no field names the tenant


def test_only_identifier_shaped_values_are_echoed() -> None:
    assert shown("orders_placed") == "'orders_placed'"
    assert shown("'; DROP TABLE x") == "(not shown)" and shown("x" * 100) == "(not shown)"
    assert shown("ünïcode") == "(not shown)"
    assert get_catalog().names()  # the messages list the catalog's names instead
