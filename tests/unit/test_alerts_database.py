"""Alerts from the configuration database, without one: stored rules as the evaluator's rules, events as history
rows, and what happens when the database cannot be reached (the source raises; the history keeps the events)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from lakepulse.alerts import DatabaseHistory, DatabaseRuleSource, Evaluator, reload_rules, rule_of
from lakepulse.alerts.history import event_fields
from lakepulse.alerts.rules import MINUTE_MS, webhook_of
from lakepulse.alerts.service import AlertSettings, first_read
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.models import AlertRule
from lakepulse.settings import Settings

T0 = 1_800_000_000_000 // MINUTE_MS * MINUTE_MS
UNREACHABLE = "postgresql+psycopg://lakepulse:x@127.0.0.1:1/lakepulse"  # nothing listens on port 1


def stored(**changes: object) -> AlertRule:
    fields: dict[str, object] = {
        "id": uuid.UUID("0b7f3f0e-6a4c-4e53-9d55-5f8a1c2b3d4e"), "tenant_id": "rest-1", "name": "Rush",
        "metric": "orders_placed", "dimensions": {"channel": "app"}, "condition": "gt", "threshold": 5.0,
        "window_minutes": 2, "baseline_minutes": 30, "webhook_url": "https://hooks.example.com/a", "enabled": True}
    return AlertRule(**{**fields, **changes})


def row(minute: int, count: int) -> dict[str, object]:
    return {"tenant_id": "rest-1", "metric": "orders_placed", "dims_key": "channel=app",
            "dims": json.dumps({"channel": "app"}), "window_start": T0 + minute * MINUTE_MS, "count": count,
            "sum": None, "updated_at": 1}


def test_a_stored_rule_becomes_the_evaluators_rule_of_its_tenant() -> None:
    rule = rule_of(stored())
    assert rule.model_dump() == {
        "id": "0b7f3f0e-6a4c-4e53-9d55-5f8a1c2b3d4e", "name": "Rush", "tenant_id": "rest-1",
        "metric": "orders_placed", "dimensions": {"channel": "app"}, "condition": "gt", "threshold": 5.0,
        "window_minutes": 2, "channel": "https://hooks.example.com/a", "baseline_minutes": 30}
    topic_only = rule_of(stored(webhook_url=None, condition="anomaly", threshold=None, baseline_minutes=10))
    assert (topic_only.channel, topic_only.webhook, topic_only.threshold, topic_only.baseline_minutes) == (
        "kafka", None, 0.0, 10)


def test_a_stored_rule_the_evaluator_cannot_take_is_refused() -> None:
    with pytest.raises(ValidationError, match="sketch metric"):
        rule_of(stored(metric="active_users"))


def test_a_webhook_scheme_in_capitals_is_still_delivered() -> None:
    assert rule_of(stored(webhook_url="HTTPS://hooks.example.com/a")).webhook == "HTTPS://hooks.example.com/a"
    assert webhook_of("kafka") is None


def test_an_unreachable_database_fails_the_read_and_keeps_the_rules_in_force() -> None:
    db = ConfigDatabase(UNREACHABLE, "lakepulse-tests")
    source = DatabaseRuleSource(db)
    try:
        with pytest.raises(Exception, match="(?i)connect|refused"):
            source()
        ev = Evaluator([rule_of(stored())])
        assert reload_rules(source, ev) is None  # a failed poll is no "every rule deleted"
        assert [r.name for r in ev.rules] == ["Rush"]
        with pytest.raises(Exception, match="(?i)connect|refused"):
            first_read(source, threading.Event(), wait_s=0)  # the first read raises once its wait is over
    finally:
        db.close()


def test_events_become_history_rows_with_the_rule_as_it_fired() -> None:
    ev = Evaluator([rule_of(stored())])
    changed = {s for r in (row(0, 2), row(1, 4)) if (s := ev.table.upsert(r)) is not None}
    (fired,) = ev.evaluate(changed)
    (resolved,) = ev.apply_rules([])  # deleted while firing
    rule_id = "0b7f3f0e-6a4c-4e53-9d55-5f8a1c2b3d4e"
    assert event_fields(fired) == {
        "tenant": "rest-1", "rule_id": uuid.UUID(rule_id), "status": "firing", "value": 6.0,
        "window_end": datetime.fromtimestamp((T0 + 2 * MINUTE_MS) / 1000, UTC),
        "breach_key": f"{rule_id}:rest-1:1", "idempotency_key": f"{rule_id}:rest-1:1:firing", "rule_name": "Rush",
        "metric": "orders_placed", "condition": "gt", "threshold": 5.0,
        "details": {"reason": "breached", "window_minutes": 2, "dimensions": {"channel": "app"}, "anomaly": False,
                    "baseline_mean": 2.0, "baseline_std": 0.0}}
    gone = event_fields(resolved)
    assert (gone["status"], gone["breach_key"], gone["rule_name"], gone["details"]["reason"]) == (
        "resolved", f"{rule_id}:rest-1:1", "Rush", "rule_deleted")
    assert gone["idempotency_key"] == f"{rule_id}:rest-1:1:resolved" != fired.id
    anomaly = rule_of(stored(condition="anomaly", threshold=None))
    assert event_fields(Evaluator([anomaly])._event(anomaly, "rest-1", {"since": T0}, "firing", "breached")
                        )["threshold"] is None


def test_history_the_database_does_not_take_is_kept_across_a_restart(tmp_path: Path) -> None:
    ev = Evaluator([rule_of(stored())])
    changed = {s for r in (row(0, 2), row(1, 4)) if (s := ev.table.upsert(r)) is not None}
    events = ev.evaluate(changed)
    pending = tmp_path / "history-pending.json"
    db = ConfigDatabase(UNREACHABLE, "lakepulse-tests")
    try:
        assert DatabaseHistory(db, pending).record(events) is False
        again = DatabaseHistory(db, pending)  # the next process
        assert again.pending == events
        assert again.record() is False and again.pending == events  # still down: still kept, once
    finally:
        db.close()


def test_the_database_is_the_default_source_and_the_pending_file_sits_beside_the_state(tmp_path: Path) -> None:
    alerts = AlertSettings()
    assert alerts.rules_source == "database"
    settings = Settings(state_dir=tmp_path)
    assert alerts.history_pending_path(settings).parent == alerts.state_path(settings).parent
