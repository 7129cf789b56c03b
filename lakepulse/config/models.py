"""The configuration schema (SQLAlchemy 2, typed): tenants, dashboards, widgets, alert rules and alert events.

Every row carries its `tenant_id`, and children reference their parent by (id, tenant_id), so a widget can only
belong to a dashboard of its own tenant: the database itself refuses a row that crosses tenants. Changes to this
module need a migration (lakepulse/config/migrations/versions); a test compares the two.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column, relationship

TENANT_CHARS: Final = 64
NAME_CHARS: Final = 200
METRIC_CHARS: Final = 64
URL_CHARS: Final = 2048
KEY_CHARS: Final = 200

WIDGET_KINDS: Final = ("series", "top", "live")
CONDITIONS: Final = ("gt", "lt", "gte", "lte", "anomaly")
EVENT_STATUSES: Final = ("firing", "resolved")

# Constraint names are part of the schema (migrations drop them by name): one convention for all.
NAMING: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[str]: JSONB}


def _created() -> MappedColumn[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _updated() -> MappedColumn[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class Tenant(Base):
    """A restaurant whose configuration has been used: the anchor of every other row (deleting it deletes all)."""

    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(TENANT_CHARS), primary_key=True)
    created_at: Mapped[datetime] = _created()


class Dashboard(Base):
    __tablename__ = "dashboards"
    __table_args__ = (
        UniqueConstraint("id", "tenant_id"),  # the target of the widgets' (dashboard_id, tenant_id) reference
        # At most one default dashboard per tenant: concurrent first uses cannot create two.
        Index("uq_dashboards_default", "tenant_id", unique=True, postgresql_where=text("is_default")),
        Index(None, "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_CHARS), ForeignKey("tenants.tenant_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_CHARS))
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    # Joined on (id, tenant_id), the widgets' composite reference.
    widgets: Mapped[list[Widget]] = relationship(
        back_populates="dashboard", order_by=lambda: (Widget.position, Widget.created_at, Widget.id),
        cascade="all, delete-orphan", passive_deletes=True,
    )


class Widget(Base):
    """One widget of a dashboard: what to read (a series, a top list or a part of the live state) and how to show
    it. Which fields apply depends on `kind` (lakepulse.config.schemas.WidgetIn checks them)."""

    __tablename__ = "widgets"
    __table_args__ = (
        ForeignKeyConstraint(["dashboard_id", "tenant_id"], ["dashboards.id", "dashboards.tenant_id"],
                             ondelete="CASCADE"),
        CheckConstraint(_in("kind", WIDGET_KINDS), name="kind"),
        Index(None, "dashboard_id", "position"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    dashboard_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_CHARS))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(NAME_CHARS))
    kind: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str | None] = mapped_column(String(METRIC_CHARS))  # series, top: a catalog metric
    live_part: Mapped[str | None] = mapped_column(String(32))  # live: funnel, couriers_waiting, ...
    filters: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    group_by: Mapped[list[str]] = mapped_column(server_default=text("'[]'::jsonb"))
    dimension: Mapped[str | None] = mapped_column(String(METRIC_CHARS))  # top: the dimension ranked
    n: Mapped[int | None] = mapped_column(Integer)  # top: groups; live ratings: how many
    time_window: Mapped[str | None] = mapped_column(String(8))  # series, top: e.g. 24h (WINDOW is an SQL word)
    granularity: Mapped[str | None] = mapped_column(String(8))  # series
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    visualisation: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    dashboard: Mapped[Dashboard] = relationship(back_populates="widgets")


class AlertRule(Base):
    """A tenant's alert rule: the metric's value over `window_minutes` (rows matching `dimensions`) against
    `threshold` by `condition`, or an anomaly against the trailing `baseline_minutes`; events go to the alerts
    topic and, when set, to `webhook_url`. `updated_at` moves on every change (the alert service's reload)."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        UniqueConstraint("id", "tenant_id"),
        CheckConstraint(_in("condition", CONDITIONS), name="condition"),
        CheckConstraint("condition = 'anomaly' OR threshold IS NOT NULL", name="threshold"),
        CheckConstraint("window_minutes BETWEEN 1 AND 1440", name="window_minutes"),
        CheckConstraint("baseline_minutes BETWEEN 3 AND 1440", name="baseline_minutes"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_CHARS), ForeignKey("tenants.tenant_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_CHARS))
    metric: Mapped[str] = mapped_column(String(METRIC_CHARS))
    dimensions: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    condition: Mapped[str] = mapped_column(String(8))
    threshold: Mapped[float | None] = mapped_column(Float)
    window_minutes: Mapped[int] = mapped_column(Integer)
    baseline_minutes: Mapped[int] = mapped_column(Integer, server_default=text("30"))
    webhook_url: Mapped[str | None] = mapped_column(String(URL_CHARS))  # None: the alerts topic only
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class AlertEvent(Base):
    """One firing or resolve of a rule for its tenant. `idempotency_key` is unique (a firing and its resolve have
    different keys, `breach_key` pairs them), so recording an event twice, e.g. across an alert-service restart,
    keeps one row. The rule's name and metric are copied: history outlives a deleted rule (rule_id then null)."""

    __tablename__ = "alert_events"
    __table_args__ = (
        CheckConstraint(_in("status", EVENT_STATUSES), name="status"),
        Index(None, "tenant_id", "occurred_at"),
        Index(None, "rule_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_CHARS), ForeignKey("tenants.tenant_id", ondelete="CASCADE"))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("alert_rules.id", ondelete="SET NULL"))
    rule_name: Mapped[str] = mapped_column(String(NAME_CHARS))
    metric: Mapped[str] = mapped_column(String(METRIC_CHARS))
    status: Mapped[str] = mapped_column(String(8))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    condition: Mapped[str] = mapped_column(String(8))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the last minute the value covers
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    breach_key: Mapped[str] = mapped_column(String(KEY_CHARS))
    idempotency_key: Mapped[str] = mapped_column(String(KEY_CHARS), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
