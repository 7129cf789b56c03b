"""One tenant's configuration rows: every function takes the tenant as a required keyword and filters by it, so a
query without a tenant filter cannot be written by accident (style 19). An id of another tenant's object is
simply not found (NotFound, 404), so ids reveal nothing.

Functions flush but never commit: the caller owns the transaction (one per API request).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, selectinload

from lakepulse.auth.tokens import is_tenant_id
from lakepulse.config.errors import LimitReached, NotFound
from lakepulse.config.models import AlertEvent, AlertRule, Dashboard, Tenant, Widget
from lakepulse.config.schemas import MAX_DASHBOARDS, MAX_RULES, MAX_WIDGETS, AlertRuleIn, DashboardIn, WidgetIn

MAX_HISTORY: Final = 500


def _checked(tenant: str) -> str:
    # The routes take the tenant from the token; this is the last line before SQL, so a caller that forgot
    # cannot slip through.
    if not is_tenant_id(tenant):
        raise ValueError("tenant is not a tenant id of the event contract")
    return tenant


def _lock_tenant(session: Session, tenant: str) -> None:
    """Serialise one tenant's creations (the per-tenant caps count, then insert)."""
    session.execute(select(Tenant.tenant_id).where(Tenant.tenant_id == tenant).with_for_update())


# --- tenants ------------------------------------------------------------------------------------------------------


def ensure_tenant(session: Session, *, tenant: str, default_name: str, default_widgets: Sequence[WidgetIn]) -> bool:
    """Record the tenant's first use and give it the default dashboard, once (concurrent first uses create one:
    the second insert waits for the first and then finds the row). True when this call created it."""
    created = session.execute(
        insert(Tenant).values(tenant_id=_checked(tenant)).on_conflict_do_nothing().returning(Tenant.tenant_id)
    ).first()
    if created is None:
        return False
    session.add(_new_dashboard(tenant, default_name, default_widgets, is_default=True))
    session.flush()
    return True


def tenant_exists(session: Session, *, tenant: str) -> bool:
    return session.get(Tenant, _checked(tenant)) is not None


# --- dashboards ---------------------------------------------------------------------------------------------------


def _dashboards(tenant: str) -> Select[Dashboard]:
    return select(Dashboard).where(Dashboard.tenant_id == _checked(tenant))


def list_dashboards(session: Session, *, tenant: str) -> list[Dashboard]:
    """The tenant's dashboards, oldest first (the default one is the first it got)."""
    return list(session.scalars(_dashboards(tenant).order_by(Dashboard.created_at, Dashboard.id)))


def get_dashboard(session: Session, *, tenant: str, dashboard_id: uuid.UUID) -> Dashboard:
    """One of the tenant's dashboards with its widgets; NotFound otherwise."""
    dashboard = session.scalars(
        _dashboards(tenant).where(Dashboard.id == dashboard_id).options(selectinload(Dashboard.widgets))
    ).first()
    if dashboard is None:
        raise NotFound("no such dashboard")
    return dashboard


def create_dashboard(session: Session, *, tenant: str, dashboard: DashboardIn) -> Dashboard:
    """A new dashboard of the tenant, with the widgets given (in their order unless positions say otherwise)."""
    _lock_tenant(session, _checked(tenant))
    count = session.scalar(select(func.count()).select_from(Dashboard).where(Dashboard.tenant_id == tenant))
    if (count or 0) >= MAX_DASHBOARDS:
        raise LimitReached(f"a tenant has at most {MAX_DASHBOARDS} dashboards; delete one first")
    row = _new_dashboard(tenant, dashboard.name, dashboard.widgets)
    session.add(row)
    session.flush()
    session.refresh(row)  # server defaults, and the widgets in their order on the next read
    return row


def rename_dashboard(session: Session, *, tenant: str, dashboard_id: uuid.UUID, name: str) -> Dashboard:
    dashboard = get_dashboard(session, tenant=tenant, dashboard_id=dashboard_id)
    dashboard.name = name
    dashboard.updated_at = func.now()  # type: ignore[assignment]
    session.flush()
    session.refresh(dashboard)
    return dashboard


def delete_dashboard(session: Session, *, tenant: str, dashboard_id: uuid.UUID) -> None:
    """Delete one of the tenant's dashboards and its widgets; NotFound otherwise."""
    dashboard = get_dashboard(session, tenant=tenant, dashboard_id=dashboard_id)
    session.delete(dashboard)
    session.flush()


# --- widgets ------------------------------------------------------------------------------------------------------


def _columns(widget: WidgetIn) -> dict[str, Any]:
    return {"title": widget.title, "kind": widget.kind, "visualisation": widget.visualisation,
            "metric": widget.metric, "live_part": widget.live, "filters": dict(widget.filters),
            "group_by": list(widget.group_by), "dimension": widget.by, "n": widget.n,
            "time_window": widget.window, "granularity": widget.granularity, "timezone": widget.timezone}


def _new_widget(tenant: str, widget: WidgetIn, position: int) -> Widget:
    return Widget(id=uuid.uuid4(), tenant_id=tenant,
                  position=widget.position if widget.position is not None else position, **_columns(widget))


def _new_dashboard(tenant: str, name: str, widgets: Sequence[WidgetIn], is_default: bool = False) -> Dashboard:
    return Dashboard(id=uuid.uuid4(), tenant_id=tenant, name=name, is_default=is_default,
                     widgets=[_new_widget(tenant, widget, i) for i, widget in enumerate(widgets)])


def list_widgets(session: Session, *, tenant: str, dashboard_id: uuid.UUID) -> list[Widget]:
    return list(get_dashboard(session, tenant=tenant, dashboard_id=dashboard_id).widgets)


def get_widget(session: Session, *, tenant: str, dashboard_id: uuid.UUID, widget_id: uuid.UUID) -> Widget:
    widget = session.scalars(select(Widget).where(
        Widget.tenant_id == _checked(tenant), Widget.dashboard_id == dashboard_id, Widget.id == widget_id)).first()
    if widget is None:
        raise NotFound("no such widget on this dashboard")
    return widget


def add_widget(session: Session, *, tenant: str, dashboard_id: uuid.UUID, widget: WidgetIn) -> Widget:
    """A new widget on one of the tenant's dashboards (last unless `position` says otherwise)."""
    dashboard = get_dashboard(session, tenant=tenant, dashboard_id=dashboard_id)
    _lock_tenant(session, tenant)
    if len(dashboard.widgets) >= MAX_WIDGETS:
        raise LimitReached(f"a dashboard has at most {MAX_WIDGETS} widgets; delete one first")
    last = max((w.position for w in dashboard.widgets), default=-1)
    row = _new_widget(tenant, widget, last + 1)
    row.dashboard_id = dashboard.id
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def replace_widget(session: Session, *, tenant: str, dashboard_id: uuid.UUID, widget_id: uuid.UUID,
                   widget: WidgetIn) -> Widget:
    """Replace every field of one widget (its position too, when given)."""
    row = get_widget(session, tenant=tenant, dashboard_id=dashboard_id, widget_id=widget_id)
    for name, value in _columns(widget).items():
        setattr(row, name, value)
    if widget.position is not None:
        row.position = widget.position
    row.updated_at = func.now()  # type: ignore[assignment]
    session.flush()
    session.refresh(row)
    return row


def delete_widget(session: Session, *, tenant: str, dashboard_id: uuid.UUID, widget_id: uuid.UUID) -> None:
    session.delete(get_widget(session, tenant=tenant, dashboard_id=dashboard_id, widget_id=widget_id))
    session.flush()


# --- alert rules --------------------------------------------------------------------------------------------------


def _rules(tenant: str) -> Select[AlertRule]:
    return select(AlertRule).where(AlertRule.tenant_id == _checked(tenant))


def list_rules(session: Session, *, tenant: str) -> list[AlertRule]:
    return list(session.scalars(_rules(tenant).order_by(AlertRule.created_at, AlertRule.id)))


def get_rule(session: Session, *, tenant: str, rule_id: uuid.UUID) -> AlertRule:
    rule = session.scalars(_rules(tenant).where(AlertRule.id == rule_id)).first()
    if rule is None:
        raise NotFound("no such alert rule")
    return rule


def create_rule(session: Session, *, tenant: str, rule: AlertRuleIn) -> AlertRule:
    _lock_tenant(session, _checked(tenant))
    count = session.scalar(select(func.count()).select_from(AlertRule).where(AlertRule.tenant_id == tenant))
    if (count or 0) >= MAX_RULES:
        raise LimitReached(f"a tenant has at most {MAX_RULES} alert rules; delete one first")
    row = AlertRule(tenant_id=tenant, **rule.model_dump())
    session.add(row)
    session.flush()
    session.refresh(row)  # server defaults (created_at, updated_at)
    return row


def update_rule(session: Session, *, tenant: str, rule_id: uuid.UUID, rule: AlertRuleIn) -> AlertRule:
    """Set every field of one of the tenant's rules; `updated_at` moves (the alert service reloads it)."""
    row = get_rule(session, tenant=tenant, rule_id=rule_id)
    for name, value in rule.model_dump().items():
        setattr(row, name, value)
    row.updated_at = func.now()  # type: ignore[assignment]  # even when no field changed: the rule was written
    session.flush()
    session.refresh(row)
    return row


def delete_rule(session: Session, *, tenant: str, rule_id: uuid.UUID) -> None:
    """Delete one of the tenant's rules; its history stays (rule_id becomes null)."""
    session.delete(get_rule(session, tenant=tenant, rule_id=rule_id))
    session.flush()


# --- alert events -------------------------------------------------------------------------------------------------


def list_events(session: Session, *, tenant: str, rule_id: uuid.UUID | None = None,
                status: Literal["firing", "resolved"] | None = None, before: datetime | None = None,
                limit: int = 100) -> list[AlertEvent]:
    """The tenant's alert events, newest first: of one rule, of one status, older than `before`."""
    query = select(AlertEvent).where(AlertEvent.tenant_id == _checked(tenant))
    if rule_id is not None:
        query = query.where(AlertEvent.rule_id == rule_id)
    if status is not None:
        query = query.where(AlertEvent.status == status)
    if before is not None:
        query = query.where(AlertEvent.occurred_at < before)
    limit = max(1, min(limit, MAX_HISTORY))
    return list(session.scalars(query.order_by(AlertEvent.occurred_at.desc(), AlertEvent.id).limit(limit)))


def record_event(session: Session, *, tenant: str, rule_id: uuid.UUID, status: Literal["firing", "resolved"],
                 value: float | None, window_end: datetime, breach_key: str, idempotency_key: str,
                 occurred_at: datetime | None = None, details: dict[str, Any] | None = None,
                 rule_name: str | None = None, metric: str | None = None, condition: str | None = None,
                 threshold: float | None = None) -> bool:
    """Record a firing or resolve of one of the tenant's rules. The rule's name, metric, condition and threshold
    are copied from the rule as it is now, unless given (the rule as it fired). A rule that is gone (its breach
    resolved because it was deleted) needs them given; its event is kept with no rule id. False when an event
    with this idempotency key was already recorded (nothing changes)."""
    rule = session.scalars(_rules(tenant).where(AlertRule.id == rule_id)).first()
    if rule is None and (rule_name is None or metric is None or condition is None):
        raise NotFound("no such alert rule (an event of a deleted rule needs its rule_name, metric and condition)")
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "tenant_id": tenant, "rule_id": rule.id if rule is not None else None,
        "rule_name": rule_name if rule_name is not None else rule.name if rule is not None else "",
        "metric": metric if metric is not None else rule.metric if rule is not None else "",
        "condition": condition if condition is not None else rule.condition if rule is not None else "",
        "threshold": threshold if threshold is not None or rule is None else rule.threshold,
        "status": status, "value": value, "window_end": window_end, "breach_key": breach_key,
        "idempotency_key": idempotency_key, "details": details or {},
    }
    if occurred_at is not None:
        values["occurred_at"] = occurred_at
    inserted = session.execute(
        insert(AlertEvent).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(AlertEvent.id)
    ).first()
    return inserted is not None
