"""What the configuration layer stores and answers (pydantic), checked for shape and against the metric catalog.

These models say what a dashboard, a widget, an alert rule and an alert event look like: which fields a widget of
each kind takes, how it may be shown, that its metric is in the catalog. Whether the metrics API can answer a
widget (its window, granularity, filters, timezone) is checked in the API, which builds the request the widget
will make (lakepulse.api.widgets). Identifiers (metrics, dimensions) come from allow-lists; text is bounded and
free of control characters (PostgreSQL cannot store NUL, nor JSON a lone surrogate).
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from lakepulse.catalog import get_catalog
from lakepulse.config.errors import ConfigError
from lakepulse.config.models import NAME_CHARS, URL_CHARS, AlertEvent, AlertRule, Dashboard, Widget

MAX_WIDGETS: Final = 50  # per dashboard
MAX_DASHBOARDS: Final = 100  # per tenant
MAX_RULES: Final = 200  # per tenant
MAX_POSITION: Final = 10_000
MAX_FILTERS: Final = 10
IDENTIFIER_CHARS: Final = 64
MAX_VALUE_CHARS: Final = 200  # a dimension value: the event contract's longest text (lakepulse.events.Text)
MAX_COUNT: Final = 100  # a widget's n: groups of a top list, ratings of the live feed (the API caps each)

# The parts of the live state a widget may show (keys of GET /v1/live's answer; a test checks they match).
LivePart = Literal["funnel", "couriers_waiting", "ratings", "sales_today", "completed_today", "prep_time_last_hour"]
LIVE_PARTS: Final[tuple[str, ...]] = get_args(LivePart)
WidgetKind = Literal["series", "top", "live"]
Visualisation = Literal["line", "area", "bar", "table", "number", "list", "funnel"]
Condition = Literal["gt", "lt", "gte", "lte", "anomaly"]

# Which visualisations suit which data: a series is drawn over time, a top list ranks, a live part has its shape.
SERIES_VISUALS: Final = ("line", "area", "bar", "table")
TOP_VISUALS: Final = ("bar", "table", "list")
LIVE_VISUALS: Final[dict[str, tuple[str, ...]]] = {
    "funnel": ("funnel", "bar", "table"),
    "couriers_waiting": ("number", "list", "table"),
    "ratings": ("list", "table"),
    "sales_today": ("number",),
    "completed_today": ("number",),
    "prep_time_last_hour": ("number",),
}


def _storable(text: str) -> str:
    """Refuse what PostgreSQL or JSON cannot hold: NUL and lone surrogates."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return text


def _printable(text: str) -> str:
    """Names and titles: storable and without control characters (line breaks included)."""
    _storable(text)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("must not contain control characters")
    return text


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_CHARS),
                 AfterValidator(_printable)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=IDENTIFIER_CHARS), AfterValidator(_storable)]
Value = Annotated[str, StringConstraints(max_length=MAX_VALUE_CHARS), AfterValidator(_storable)]
Filters = Annotated[dict[Identifier, Value], Field(max_length=MAX_FILTERS)]
WebhookUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=URL_CHARS),
                       AfterValidator(_printable)]


def shown(value: object) -> str:
    """A caller's value for a message: identifier-shaped names are quoted, anything else is not echoed."""
    text = str(value)
    if len(text) <= IDENTIFIER_CHARS and text.replace("_", "").isalnum() and text.isascii():
        return repr(text)
    return "(not shown)"


class Strict(BaseModel):
    """Request bodies: unknown fields are refused (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid")


# --- dashboards and widgets ---------------------------------------------------------------------------------------


class WidgetIn(Strict):
    """A widget as written: what to read and how to show it. Fields that do not apply to its kind are refused;
    fields left out are filled with the kind's defaults by the API (lakepulse.api.widgets.WidgetBody)."""

    title: Name
    kind: WidgetKind = Field(description="series: a metric over time; top: the largest groups of a dimension; "
                                         "live: a part of the restaurant's live state")
    visualisation: Visualisation
    metric: Identifier | None = Field(None, description="series, top: a metric of GET /v1/catalog")
    live: LivePart | None = Field(None, description="live: which part of GET /v1/live")
    filters: Filters = Field(default_factory=dict, description="series, top: dimension → value")
    group_by: list[Identifier] = Field(default_factory=list, max_length=2, description="series: up to 2 dimensions")
    by: Identifier | None = Field(None, description="top: the dimension to rank")
    n: int | None = Field(None, ge=1, le=MAX_COUNT, description="top: how many groups; live ratings: how many "
                                                                 "ratings")
    window: str | None = Field(None, max_length=10, description="series, top: the period ending now, a number and "
                                                                 "a unit m, h or d, e.g. 15m, 1h or 24h")
    granularity: str | None = Field(None, max_length=8, description="series: the width of each window, e.g. 5m, "
                                                                    "1h or 1d")
    timezone: str = Field("UTC", max_length=64, description="IANA zone of the windows (series) and of 'today' (live)")
    position: int | None = Field(None, ge=0, le=MAX_POSITION, description="Order on the dashboard (default: last)")

    @model_validator(mode="after")
    def _fits_its_kind(self) -> WidgetIn:
        unused = {"series": ("live", "by"), "top": ("live", "group_by", "granularity"),
                  "live": ("metric", "filters", "group_by", "by", "window", "granularity")}[self.kind]
        given = [name for name in unused if getattr(self, name) not in (None, {}, [])]
        if given:
            raise ValueError(f"a {self.kind} widget takes no {', '.join(given)}")
        if self.kind == "live":
            if self.live is None:
                raise ValueError(f"a live widget needs live, one of {', '.join(LIVE_PARTS)}")
            if self.n is not None and self.live != "ratings":
                raise ValueError("n applies to a live widget of ratings only")
            self._check_visual(LIVE_VISUALS[self.live], f"live {self.live}")
            return self
        if self.metric is None:
            raise ValueError(f"a {self.kind} widget needs a metric (GET /v1/catalog lists them)")
        if self.metric not in get_catalog().names():
            raise ValueError(f"unknown metric {shown(self.metric)}; known: {', '.join(get_catalog().names())}")
        if self.kind == "series":
            self._check_visual(SERIES_VISUALS, "series")
            if self.n is not None:
                raise ValueError("a series widget takes no n")
        else:
            self._check_visual(TOP_VISUALS, "top")
            if self.by is None:
                raise ValueError("a top widget needs by, the dimension to rank")
        return self

    def _check_visual(self, allowed: tuple[str, ...], what: str) -> None:
        if self.visualisation not in allowed:
            raise ValueError(f"a {what} widget is shown as {' or '.join(allowed)}, not {self.visualisation}")


class DashboardIn(Strict):
    """A new dashboard, optionally with its widgets."""

    name: Name
    widgets: Sequence[WidgetIn] = Field(default_factory=list, max_length=MAX_WIDGETS)


class DashboardRename(Strict):
    name: Name


class WidgetOut(BaseModel):
    id: uuid.UUID
    dashboard_id: uuid.UUID
    title: str
    kind: WidgetKind
    visualisation: str
    metric: str | None
    live: str | None
    filters: dict[str, str]
    group_by: list[str]
    by: str | None
    n: int | None
    window: str | None
    granularity: str | None
    timezone: str
    position: int
    created_at: datetime
    updated_at: datetime


class DashboardSummary(BaseModel):
    id: uuid.UUID
    name: str
    is_default: bool = Field(description="Created for the tenant on its first use of the configuration API")
    created_at: datetime
    updated_at: datetime


class DashboardOut(DashboardSummary):
    widgets: list[WidgetOut]


class DashboardList(BaseModel):
    dashboards: list[DashboardSummary]


class WidgetList(BaseModel):
    widgets: list[WidgetOut]


def widget_in(widget: Widget) -> WidgetIn:
    """A stored widget as input (to validate it again or to build its request), without validating it."""
    return WidgetIn.model_construct(
        title=widget.title, kind=widget.kind, visualisation=widget.visualisation, metric=widget.metric,
        live=widget.live_part, filters=dict(widget.filters), group_by=list(widget.group_by), by=widget.dimension,
        n=widget.n, window=widget.time_window, granularity=widget.granularity, timezone=widget.timezone,
        position=widget.position)


def widget_out(widget: Widget) -> WidgetOut:
    return WidgetOut(
        id=widget.id, dashboard_id=widget.dashboard_id, title=widget.title, kind=widget.kind,  # type: ignore[arg-type]
        visualisation=widget.visualisation, metric=widget.metric, live=widget.live_part, filters=dict(widget.filters),
        group_by=list(widget.group_by), by=widget.dimension, n=widget.n, window=widget.time_window,
        granularity=widget.granularity, timezone=widget.timezone, position=widget.position,
        created_at=widget.created_at, updated_at=widget.updated_at)


def dashboard_summary(dashboard: Dashboard) -> DashboardSummary:
    return DashboardSummary(id=dashboard.id, name=dashboard.name, is_default=dashboard.is_default,
                            created_at=dashboard.created_at, updated_at=dashboard.updated_at)


def dashboard_out(dashboard: Dashboard) -> DashboardOut:
    return DashboardOut(**dashboard_summary(dashboard).model_dump(),
                        widgets=[widget_out(w) for w in dashboard.widgets])


# --- alert rules and events ---------------------------------------------------------------------------------------


class AlertRuleIn(Strict):
    """An alert rule as written. The webhook URL's host is checked separately (it needs DNS)."""

    name: Name
    metric: Identifier = Field(description="A count, sum, average or distribution metric of GET /v1/catalog")
    dimensions: Filters = Field(default_factory=dict, description="Only minute rows with these dimension values")
    condition: Condition = Field(description="gt, lt, gte, lte against threshold; anomaly: beyond 2 standard "
                                             "deviations of the trailing baseline_minutes")
    threshold: float | None = Field(None, allow_inf_nan=False, description="Required unless condition is anomaly")
    window_minutes: int = Field(5, ge=1, le=1440, description="The value is the metric over this many minutes")
    baseline_minutes: int = Field(30, ge=3, le=1440, description="anomaly: the trailing minutes compared against")
    webhook_url: WebhookUrl | None = Field(None, description="http(s) URL the server POSTs firing and resolved "
                                                             "events to; none: the alerts topic only")
    enabled: bool = True

    @model_validator(mode="after")
    def _fits_the_catalog(self) -> AlertRuleIn:
        catalog = get_catalog()
        if self.metric not in catalog.names():
            raise ValueError(f"unknown metric {shown(self.metric)}; known: {', '.join(catalog.names())}")
        metric = catalog.metric(self.metric)
        if metric.kind == "distinct":
            raise ValueError(f"{metric.name} is a sketch metric; alert rules take count, sum, average or "
                             "distribution metrics")
        unknown = [name for name in self.dimensions if name not in metric.dimensions]
        if unknown:
            raise ValueError(f"unknown dimension {shown(unknown[0])} for {metric.name}; its dimensions: "
                             f"{', '.join(metric.dimensions) or 'none'}")
        if self.condition != "anomaly" and self.threshold is None:
            raise ValueError(f"condition {self.condition} needs a threshold")
        if self.webhook_url is not None and not self.webhook_url.lower().startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return self


class AlertRulePatch(Strict):
    """A partial change: the fields given replace the rule's, then the whole rule is validated again."""

    name: Name | None = None
    metric: Identifier | None = None
    dimensions: Filters | None = None
    condition: Condition | None = None
    threshold: float | None = Field(None, allow_inf_nan=False)
    window_minutes: int | None = Field(None, ge=1, le=1440)
    baseline_minutes: int | None = Field(None, ge=3, le=1440)
    webhook_url: WebhookUrl | None = None
    enabled: bool | None = None


class AlertRuleOut(BaseModel):
    id: uuid.UUID
    name: str
    metric: str
    dimensions: dict[str, str]
    condition: Condition
    threshold: float | None
    window_minutes: int
    baseline_minutes: int
    webhook_url: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class AlertEventOut(BaseModel):
    id: uuid.UUID
    rule_id: uuid.UUID | None = Field(description="null once the rule is deleted (its history is kept)")
    rule_name: str
    metric: str
    status: Literal["firing", "resolved"]
    value: float | None
    threshold: float | None
    condition: str
    window_end: datetime = Field(description="End of the last minute the value covers")
    occurred_at: datetime
    breach_key: str = Field(description="Shared by a firing and the resolve that ends it")
    idempotency_key: str = Field(description="Unique per event: the webhook's Idempotency-Key")
    details: dict[str, Any]


class AlertHistory(BaseModel):
    events: list[AlertEventOut]
    next_before: datetime | None = Field(description="Pass as `before` for older events; null at the end")


def rule_fields(rule: AlertRule) -> dict[str, Any]:
    """A stored rule's writable fields (the base a patch is applied to)."""
    return {"name": rule.name, "metric": rule.metric, "dimensions": dict(rule.dimensions),
            "condition": rule.condition, "threshold": rule.threshold, "window_minutes": rule.window_minutes,
            "baseline_minutes": rule.baseline_minutes, "webhook_url": rule.webhook_url, "enabled": rule.enabled}


def rule_out(rule: AlertRule) -> AlertRuleOut:
    return AlertRuleOut(id=rule.id, created_at=rule.created_at, updated_at=rule.updated_at, **rule_fields(rule))


def event_out(event: AlertEvent) -> AlertEventOut:
    threshold = event.threshold if event.threshold is None or math.isfinite(event.threshold) else None
    value = event.value if event.value is None or math.isfinite(event.value) else None
    return AlertEventOut(
        id=event.id, rule_id=event.rule_id, rule_name=event.rule_name, metric=event.metric,
        status=event.status, value=value, threshold=threshold, condition=event.condition,  # type: ignore[arg-type]
        window_end=event.window_end, occurred_at=event.occurred_at, breach_key=event.breach_key,
        idempotency_key=event.idempotency_key, details=dict(event.details))


# --- validation outside request parsing ---------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """`data` as `model`, or ConfigError (400) with pydantic's reasons, worded like a refused request body."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in ('body', *e['loc']))}: {e['msg']}"
                            for e in exc.errors()[:5])
        raise ConfigError(reasons) from None
