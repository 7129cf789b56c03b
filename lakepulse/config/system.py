"""Cross-tenant reads for the platform's own services (the alert evaluator), never for an API route: a request
always reads one tenant's rows through `crud`, which cannot leave the tenant out."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lakepulse.config.models import AlertRule


def enabled_rules(session: Session) -> list[AlertRule]:
    """Every tenant's enabled alert rules (each carries its tenant_id), in a stable order."""
    return list(session.scalars(select(AlertRule).where(AlertRule.enabled).order_by(AlertRule.id)))
