"""The configuration schema: tenants, dashboards, widgets, alert rules and alert events.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def _tenant(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE",
                                   name=f"fk_{table}_tenant_id_tenants")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
    )
    op.create_table(
        "dashboards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_dashboards"),
        sa.UniqueConstraint("id", "tenant_id", name="uq_dashboards_id_tenant_id"),
        _tenant("dashboards"),
    )
    op.create_index("uq_dashboards_default", "dashboards", ["tenant_id"], unique=True,
                    postgresql_where=sa.text("is_default"))
    op.create_index("ix_dashboards_tenant_id_created_at", "dashboards", ["tenant_id", "created_at"])
    op.create_table(
        "widgets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dashboard_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(64), nullable=True),
        sa.Column("live_part", sa.String(32), nullable=True),
        sa.Column("filters", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("group_by", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("dimension", sa.String(64), nullable=True),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("time_window", sa.String(8), nullable=True),
        sa.Column("granularity", sa.String(8), nullable=True),
        sa.Column("timezone", sa.String(64), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("visualisation", sa.String(16), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_widgets"),
        sa.ForeignKeyConstraint(["dashboard_id", "tenant_id"], ["dashboards.id", "dashboards.tenant_id"],
                                ondelete="CASCADE", name="fk_widgets_dashboard_id_tenant_id_dashboards"),
        sa.CheckConstraint("kind IN ('series', 'top', 'live')", name="ck_widgets_kind"),
    )
    op.create_index("ix_widgets_dashboard_id_position", "widgets", ["dashboard_id", "position"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("dimensions", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("condition", sa.String(8), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("baseline_minutes", sa.Integer(), server_default=sa.text("30"), nullable=False),
        sa.Column("webhook_url", sa.String(2048), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("id", "tenant_id", name="uq_alert_rules_id_tenant_id"),
        _tenant("alert_rules"),
        sa.CheckConstraint("condition IN ('gt', 'lt', 'gte', 'lte', 'anomaly')", name="ck_alert_rules_condition"),
        sa.CheckConstraint("condition = 'anomaly' OR threshold IS NOT NULL", name="ck_alert_rules_threshold"),
        sa.CheckConstraint("window_minutes BETWEEN 1 AND 1440", name="ck_alert_rules_window_minutes"),
        sa.CheckConstraint("baseline_minutes BETWEEN 3 AND 1440", name="ck_alert_rules_baseline_minutes"),
    )
    op.create_index("ix_alert_rules_tenant_id_created_at", "alert_rules", ["tenant_id", "created_at"])
    op.create_index("ix_alert_rules_updated_at", "alert_rules", ["updated_at"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("condition", sa.String(8), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False),
        sa.Column("breach_key", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.UniqueConstraint("idempotency_key", name="uq_alert_events_idempotency_key"),
        _tenant("alert_events"),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"], ondelete="SET NULL",
                                name="fk_alert_events_rule_id_alert_rules"),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name="ck_alert_events_status"),
    )
    op.create_index("ix_alert_events_tenant_id_occurred_at", "alert_events", ["tenant_id", "occurred_at"])
    op.create_index("ix_alert_events_rule_id_occurred_at", "alert_events", ["rule_id", "occurred_at"])


def downgrade() -> None:
    # Children first; dropping a table drops its indexes and constraints.
    for table in ("alert_events", "alert_rules", "widgets", "dashboards", "tenants"):
        op.drop_table(table)
