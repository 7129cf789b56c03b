"""`GET /v1/metrics/{metric}/series`: one metric's time series for one tenant, across the seam."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Response

from lakepulse.api.deps import BatchSourceDep, CachedReadsDep, CatalogDep, PrincipalDep, SeamSourceDep, SpeedSourceDep
from lakepulse.api.queries import read_series
from lakepulse.api.schemas import SeriesBody, error_responses
from lakepulse.api.series import DEFAULT_MAX_GROUPS, MAX_GROUP_BY, MAX_GROUPS, SeriesRequest, SeriesRequestError
from lakepulse.api.windows import GRANULARITIES
from lakepulse.events import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["metrics"])

MAX_TIME_CHARS: Final = 64
TIME_RULE: Final = "an RFC 3339 time with a UTC offset, e.g. 2026-03-02T10:00:00Z or 2026-03-02T11:00:00+01:00"
# An unencoded '+' in a query string arrives as a space: "…T11:00:00 01:00" can only mean "+01:00".
_SPACE_OFFSET: Final = re.compile(r"(.*T\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?) (\d\d:?\d\d)")


def parse_time(name: str, text: str) -> datetime:
    """RFC 3339 text → an aware UTC datetime; SeriesRequestError (400) otherwise."""
    if len(text) > MAX_TIME_CHARS:
        raise SeriesRequestError(f"{name} must be {TIME_RULE}")
    if match := _SPACE_OFFSET.fullmatch(text):
        text = f"{match[1]}+{match[2]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SeriesRequestError(f"{name} must be {TIME_RULE}") from None
    if moment.utcoffset() is None:
        raise SeriesRequestError(f"{name} needs a UTC offset (Z or ±HH:MM): {TIME_RULE}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 lies after datetime.max in UTC
        raise SeriesRequestError(f"{name} is out of range") from None


def parse_filters(items: list[str]) -> dict[str, str]:
    """`dimension:value` strings → {dimension: value}; SeriesRequestError for a malformed or repeated one."""
    filters: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise SeriesRequestError("filter must be dimension:value, e.g. filter=country:DE")
        if name in filters:
            raise SeriesRequestError("each dimension takes at most one filter")
        filters[name] = value
    return filters


@router.get(
    "/metrics/{metric}/series",
    response_model=None,
    responses={200: {"model": SeriesBody, "description": "The series"}, **error_responses(400, 401, 403, 429, 503)},
)
def metric_series(
    metric: Annotated[str, Path(description="A metric name from GET /v1/catalog", examples=["orders_placed"])],
    from_: Annotated[str, Query(alias="from", description=f"Start (inclusive): {TIME_RULE}",
                                examples=["2026-03-02T00:00:00Z"])],
    to: Annotated[str, Query(description=f"End (exclusive): {TIME_RULE}", examples=["2026-03-03T00:00:00Z"])],
    principal: PrincipalDep,
    seam: SeamSourceDep,
    batch: BatchSourceDep,
    speed: SpeedSourceDep,
    catalog: CatalogDep,
    cache: CachedReadsDep,
    granularity: Annotated[str, Query(description="Window length",
                                      json_schema_extra={"enum": list(GRANULARITIES)})] = "1h",
    timezone: Annotated[str, Query(description="IANA zone whose wall clock defines the windows (days, hours)",
                                   examples=["Europe/Berlin"])] = "UTC",
    group_by: Annotated[list[str] | None, Query(description=f"Up to {MAX_GROUP_BY} dimensions (repeat the "
                                                            "parameter)")] = None,
    filters: Annotated[list[str] | None, Query(alias="filter", description="dimension:value (repeat for more "
                                               "dimensions; each must be one of the metric's)",
                                               examples=[["country:DE"]])] = None,
    tenant: Annotated[str | None, Query(description="Analyst/admin tokens: the tenant to read (required). Tenant "
                                        "tokens read their own; naming another is 403.",
                                        json_schema_extra={"pattern": TENANT_ID_PATTERN})] = None,
    max_groups: Annotated[int, Query(ge=1, le=MAX_GROUPS, description="With group_by: the largest groups kept")]
    = DEFAULT_MAX_GROUPS,
) -> Response:
    """One metric's windows for one tenant: minutes before the seam from the batch layer (Delta), the rest from
    the speed layer (Pinot), each minute once; every window says which layer served it and whether it is final.

    Filters are `filter=dimension:value` rather than one query parameter per dimension: dimension names then
    never collide with the route's own parameters, and the document stays the same for every metric. Values
    are compared exactly; a dimension takes one filter. The tenant comes from the token; an analyst or admin
    token names it with `tenant`.
    """
    tenant_id = principal.tenant_for(tenant)  # authorise before looking at the rest of the request
    request = SeriesRequest(
        metric=metric,
        start=parse_time("from", from_),
        end=parse_time("to", to),
        granularity=granularity,
        timezone=timezone,
        filters=parse_filters(filters or []),
        group_by=tuple(group_by or ()),
        max_groups=max_groups,
        catalog=catalog,
    )
    return cache.answer(tenant_id, lambda: read_series(request, tenant_id, seam, batch, speed))
