"""`GET /v1/metrics/{metric}/top`: the largest groups of one dimension over a recent period, for one tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from lakepulse.api.deps import BatchSourceDep, CachedReadsDep, CatalogDep, PrincipalDep, SeamSourceDep, SpeedSourceDep
from lakepulse.api.queries import read_top
from lakepulse.api.routes.series import TIME_RULE, parse_filters, parse_time
from lakepulse.api.schemas import TopBody, error_responses
from lakepulse.api.series import SeriesRequestError
from lakepulse.api.top import DEFAULT_N, LAST_RULE, MAX_N, TopRequest, parse_last
from lakepulse.events import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["metrics"])


@router.get(
    "/metrics/{metric}/top",
    response_model=None,
    responses={200: {"model": TopBody, "description": "The ranking"}, **error_responses(400, 401, 403, 429, 503)},
)
def metric_top(
    metric: Annotated[str, Path(description="A metric name from GET /v1/catalog", examples=["items_sold"])],
    by: Annotated[str, Query(description="The dimension to rank (one of the metric's)", examples=["item_id"])],
    principal: PrincipalDep,
    seam: SeamSourceDep,
    batch: BatchSourceDep,
    speed: SpeedSourceDep,
    catalog: CatalogDep,
    cache: CachedReadsDep,
    n: Annotated[int, Query(ge=1, le=MAX_N, description="How many groups")] = DEFAULT_N,
    last: Annotated[str, Query(description=f"The period ending now: {LAST_RULE}", examples=["1h"])] = "1h",
    from_: Annotated[str | None, Query(alias="from", description=f"Instead of last: start (inclusive, a whole "
                                       f"minute), {TIME_RULE}")] = None,
    to: Annotated[str | None, Query(description="With from: end (exclusive, a whole minute)")] = None,
    filters: Annotated[list[str] | None, Query(alias="filter", description="dimension:value, as for series")]
    = None,
    tenant: Annotated[str | None, Query(description="Analyst/admin tokens: the tenant to read (required)",
                                        json_schema_extra={"pattern": TENANT_ID_PATTERN})] = None,
) -> Response:
    """The `n` largest values of `by` for one metric (e.g. `items_sold` by `item_id`: the best sellers), over
    the last period up to now (the current minute included) or an explicit range of whole minutes. Each
    group's minutes merge by the metric's kind across the seam, as in a series; ties rank by count, then by
    name. The tenant comes from the token; an analyst or admin token names it with `tenant`.
    """
    tenant_id = principal.tenant_for(tenant)
    parsed = parse_filters(filters or [])
    if (from_ is None) != (to is None):
        raise SeriesRequestError("give both from and to, or neither (then last applies)")
    if from_ is not None and to is not None:
        request = TopRequest(metric=metric, dimension=by, start=parse_time("from", from_), end=parse_time("to", to),
                             n=n, filters=parsed, catalog=catalog)
    else:
        request = TopRequest.last(metric, by, parse_last(last), datetime.now(UTC), n=n, filters=parsed,
                                  catalog=catalog)
    return cache.answer(tenant_id, lambda: read_top(request, tenant_id, seam, batch, speed))
