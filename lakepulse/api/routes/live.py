"""`GET /v1/live`: a restaurant's live state (order funnel, couriers waiting, ratings, today, prep time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from lakepulse.api.deps import BatchSourceDep, CachedReadsDep, CatalogDep, PrincipalDep, SeamSourceDep, SpeedSourceDep
from lakepulse.api.live import DEFAULT_RATINGS, MAX_RATINGS, LiveReader, LiveRequest, read_live
from lakepulse.api.schemas import LiveBody, error_responses
from lakepulse.events import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["live"])


def get_live_source(request: Request) -> LiveReader:
    """Dependency: the live tables' reader (Pinot's broker) and the cache of final totals."""
    live: LiveReader = request.app.state.live
    return live


LiveSourceDep = Annotated[LiveReader, Depends(get_live_source)]


@router.get(
    "/live",
    response_model=None,
    responses={200: {"model": LiveBody, "description": "The live state"}, **error_responses(400, 401, 403, 503)},
)
def live_state(
    principal: PrincipalDep,
    live: LiveSourceDep,
    seam: SeamSourceDep,
    batch: BatchSourceDep,
    speed: SpeedSourceDep,
    catalog: CatalogDep,
    cache: CachedReadsDep,
    tenant: Annotated[str | None, Query(description="Analyst/admin tokens: the tenant to read (required). Tenant "
                                        "tokens read their own; naming another is 403.",
                                        json_schema_extra={"pattern": TENANT_ID_PATTERN})] = None,
    timezone: Annotated[str, Query(description="IANA zone of the restaurant: where 'today' starts, and the "
                                   "zone of every time in the answer", examples=["Europe/Berlin"])] = "UTC",
    ratings: Annotated[int, Query(ge=1, le=MAX_RATINGS, description="How many of the latest ratings")]
    = DEFAULT_RATINGS,
) -> Response:
    """The restaurant's live state, each part with its as-of time: orders per current status, couriers waiting
    at the restaurant, the latest ratings (from the speed layer's live tables), and sales and completed orders
    since local midnight and prep time over the last hour (catalog metrics across the seam, as the series
    endpoint counts them). The tenant comes from the token; an analyst or admin token names it with `tenant`.
    """
    tenant_id = principal.tenant_for(tenant)  # authorise before looking at the rest of the request
    request = LiveRequest(timezone=timezone, ratings=ratings)
    return cache.answer(
        tenant_id, lambda: read_live(request, tenant_id, live, seam, batch, speed, datetime.now(UTC), catalog))
