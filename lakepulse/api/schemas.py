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
