"""The restaurant dashboard every tenant gets on its first use of the configuration API (design §8: live order
funnel, couriers waiting, ratings feed, top-5 items, prep time, sales today, orders and sales charts)."""

from __future__ import annotations

from typing import Any, Final

from lakepulse.config.schemas import WidgetIn

DEFAULT_DASHBOARD_NAME: Final = "Restaurant"


def default_widget_specs() -> list[dict[str, Any]]:
    """The default dashboard's widgets as a tenant would write them (every field its kind uses given), in order."""
    specs: list[dict[str, Any]] = [
        {"title": "Order funnel", "kind": "live", "live": "funnel", "visualisation": "funnel"},
        {"title": "Couriers waiting", "kind": "live", "live": "couriers_waiting", "visualisation": "list"},
        {"title": "Latest ratings", "kind": "live", "live": "ratings", "n": 10, "visualisation": "list"},
        {"title": "Top 5 items, last hour", "kind": "top", "metric": "items_sold", "by": "item_id", "n": 5,
         "window": "1h", "visualisation": "bar"},
        {"title": "Prep time, last hour", "kind": "live", "live": "prep_time_last_hour", "visualisation": "number"},
        {"title": "Sales today", "kind": "live", "live": "sales_today", "visualisation": "number"},
        {"title": "Orders", "kind": "series", "metric": "orders_placed", "window": "24h", "granularity": "15m",
         "visualisation": "line"},
        {"title": "Sales", "kind": "series", "metric": "gross_sales", "window": "24h", "granularity": "1h",
         "visualisation": "bar"},
    ]
    return [{**spec, "position": i} for i, spec in enumerate(specs)]


def default_widgets() -> list[WidgetIn]:
    """The default dashboard's widgets, checked for shape (the API also checks it can answer them)."""
    return [WidgetIn.model_validate(spec) for spec in default_widget_specs()]
