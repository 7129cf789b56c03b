"""Response shapes of the metrics API, for the OpenAPI document (routes serialise with orjson, unvalidated)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from lakepulse.catalog.model import Kind


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer: one sentence for a person, never engine or SQL text."""

    detail: str


class CatalogMetric(BaseModel):
    """One metric of the catalog: the names a series request may use."""

    name: str
    kind: Kind
    unit: str
    description: str
    dimensions: list[str] = Field(description="Dimensions that `filter` and `group_by` may name")


class CatalogBody(BaseModel):
    """The metric catalog and the series options."""

    metrics: list[CatalogMetric]
    granularities: list[str]
    max_group_by: int


class SeriesWindowBody(BaseModel):
    """One window of one group."""

    start: datetime
    end: datetime
    group: dict[str, str] = Field(description="The group_by dimensions' values ({} without group_by)")
    value: int | float | None = Field(description="count/sum/distinct estimate/mean, by the metric's kind")
    count: int = Field(description="Rows counted (events, ratings, orders...)")
    sum: float | None = Field(description="Sum of values (null for count and distinct metrics)")
    layer: Literal["batch", "speed", "mixed"] = Field(
        description="batch: every minute before the seam; speed: at or after it; mixed: the window holds the seam")
    final: bool = Field(description="True once the batch layer has rebuilt and reconciled the whole window")
    min: float | None = Field(default=None, description="Distributions only")
    max: float | None = Field(default=None, description="Distributions only")
    quantiles: dict[str, float | None] | None = Field(default=None, description="Distributions only: p50, p90, p99")


class SeriesBody(BaseModel):
    """A metric's series for one tenant across the seam."""

    metric: str
    kind: Kind
    unit: str
    tenant: str
    granularity: str
    timezone: str
    start: datetime = Field(description="Start of the first window (the request's from, floored to a window)")
    end: datetime = Field(description="End of the last window")
    seam: datetime | None = Field(description="Minutes before it come from the batch layer; null: none yet")
    freshness: datetime | None = Field(description="Newest update among the speed-layer rows read")
    truncated: bool = Field(description="A cap was hit (groups beyond max_groups, or a layer's row cap)")
    windows: list[SeriesWindowBody]


class FunnelOrders(BaseModel):
    """Orders whose latest status (by event time) is each status of the event contract; 0 where none."""

    placed: int
    confirmed: int
    in_kitchen: int
    ready_for_pickup: int
    picked_up: int
    delivered: int
    cancelled: int


class FunnelBody(BaseModel):
    """The order funnel: every order the speed layer holds (its retention, 7 days) in its current status."""

    as_of: datetime | None = Field(description="Newest update among the tenant's order rows; null: none")
    orders: FunnelOrders
    total: int = Field(description="Orders in any status")


class WaitingCourierBody(BaseModel):
    """A courier whose latest status is arrived_at_restaurant."""

    courier_id: str
    order_id: str | None = Field(description="The order of the courier's latest status")
    since: datetime | None = Field(description="When the courier arrived (event time)")


class CouriersWaitingBody(BaseModel):
    """Couriers waiting at the restaurant now."""

    as_of: datetime | None = Field(description="Newest update among the tenant's courier rows; null: none")
    count: int
    couriers: list[WaitingCourierBody] = Field(description="Longest waiting first, at most 50")
    truncated: bool = Field(description="More couriers wait than are listed")


class RatingBody(BaseModel):
    """An order's latest rating."""

    order_id: str
    food_rating: int | None = Field(description="1..5")
    delivery_rating: int | None = Field(description="1..5")
    rated_at: datetime | None = Field(description="Event time of the rating")


class RatingsBody(BaseModel):
    """The latest ratings, newest first."""

    as_of: datetime | None = Field(description="Newest update among the tenant's order rows; null: none")
    latest: list[RatingBody]


class LiveMetricBody(BaseModel):
    """A catalog metric over whole minutes [start, end), across the seam as the series endpoint counts it."""

    metric: str
    unit: str
    start: datetime
    end: datetime = Field(description="End of the current minute")
    value: int | float | None = Field(description="count, sum, or a distribution's mean (null: no values)")
    count: int = Field(description="Rows counted (orders, orders measured...)")
    as_of: datetime | None = Field(description="Newest update among the speed-layer rows read (the speed "
                                               "layer's freshness); null: none")
    truncated: bool = Field(description="A layer's row cap was hit: the numbers are not the whole answer")
    min: float | None = Field(default=None, description="Distributions only")
    max: float | None = Field(default=None, description="Distributions only")
    quantiles: dict[str, float | None] | None = Field(default=None, description="Distributions only: p50, p90, p99")


class LiveBody(BaseModel):
    """A restaurant's live state; every time in the request's timezone."""

    tenant: str
    timezone: str
    now: datetime = Field(description="When the state was read; the windowed numbers end with this minute")
    seam: datetime | None = Field(description="Minutes before it come from the batch layer; null: none yet")
    funnel: FunnelBody
    couriers_waiting: CouriersWaitingBody
    ratings: RatingsBody
    sales_today: LiveMetricBody = Field(description="gross_sales from local midnight")
    completed_today: LiveMetricBody = Field(description="orders_completed from local midnight")
    prep_time_last_hour: LiveMetricBody = Field(description="prep_time_seconds over the last 60 minutes")


class TopEntryBody(BaseModel):
    """One ranked group."""

    rank: int
    key: str = Field(description="The dimension's value (\"\" for events that lacked it)")
    value: int | float | None = Field(description="count/sum/distinct estimate/mean over the period, by kind")
    count: int
    sum: float | None = Field(description="Sum of values (null for count and distinct metrics)")


class TopBody(BaseModel):
    """The largest groups of one dimension over a period, for one tenant."""

    metric: str
    kind: Kind
    unit: str
    tenant: str
    dimension: str
    start: datetime
    end: datetime
    seam: datetime | None
    freshness: datetime | None = Field(description="Newest update among the speed-layer rows read")
    layer: Literal["batch", "speed", "mixed"]
    final: bool
    groups: int = Field(description="Groups with data in the period (the list holds the n largest)")
    truncated: bool = Field(description="A layer's row cap was hit: the ranking may miss rows")
    top: list[TopEntryBody]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries with ErrorBody for the given statuses."""
    reasons = {
        400: "The request names something that does not exist or breaks a cap",
        401: "No bearer token, or one that does not verify",
        403: "The token may not read this tenant",
        429: "This tenant (or token) made too many requests; retry after Retry-After",
        503: "An engine did not answer in time; retry after Retry-After",
    }
    return {status: {"model": ErrorBody, "description": reasons[status]} for status in statuses}
