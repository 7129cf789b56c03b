"""`GET /v1/catalog`: the metrics a client may ask for, with their kinds, units and dimensions."""

from __future__ import annotations

from fastapi import APIRouter

from lakepulse.api.deps import CatalogDep, PrincipalDep
from lakepulse.api.schemas import CatalogBody, CatalogMetric, error_responses
from lakepulse.api.series import MAX_GROUP_BY
from lakepulse.api.windows import GRANULARITIES

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/catalog", response_model=CatalogBody, responses=error_responses(401, 429))
def read_catalog(principal: PrincipalDep, catalog: CatalogDep) -> CatalogBody:
    """Every metric with its kind, unit, dimensions and description, and the granularities a series takes."""
    return CatalogBody(
        metrics=[
            CatalogMetric(name=m.name, kind=m.kind, unit=m.unit, description=m.description,
                          dimensions=list(m.dimensions))
            for m in catalog.metrics
        ],
        granularities=list(GRANULARITIES),
        max_group_by=MAX_GROUP_BY,
    )
