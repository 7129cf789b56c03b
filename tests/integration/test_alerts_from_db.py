"""Alert rules from PostgreSQL, end to end: a rule created through the metrics API (in-process, real PostgreSQL,
a minted tenant token) is evaluated by the alert service on the real Kafka, fires once per breach to a local
webhook receiver, resolves with a key of its own, never fires twice across a restart of the service, and both
events are in the alert history the API serves. Rules changed, disabled and deleted through the API apply
without a restart.

The evaluator runs in-process (`lakepulse.alerts.service.run`, its default database source and history) on
private metrics and alerts topics. The receiver listens on 127.0.0.1, which tenants' webhooks may only reach with
`alert_webhook_allow_private` (set here for both the API and the evaluator; test_config_api.py checks that the
API refuses such URLs by default).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient
from sqlalchemy import delete

from lakepulse.alerts.service import AlertSettings, Delivery, is_alive, run
from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.models import Tenant
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings
from tests.webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "postgres")]

MINUTE_MS = 60_000
WAIT_S = 60  # a bound on every wait, not a timing assertion
RULE = {"name": "Rush", "metric": "orders_placed", "dimensions": {"channel": "app"}, "condition": "gt",
        "threshold": 5, "window_minutes": 2}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver(refuse_first=0) as r:
        yield r


@pytest.fixture
def tenant(stack: Context) -> Iterator[str]:
    """A tenant of this test only, deleted afterwards with its rules and history."""
    name = f"it-alerts-db-{uuid.uuid4().hex[:10]}"
    yield name
    db = ConfigDatabase.from_settings(stack.settings, "lakepulse-tests")
    try:
        with db.session() as session:
            session.execute(delete(Tenant).where(Tenant.tenant_id == name))
            session.commit()
    finally:
        db.close()


@pytest.fixture
def api(stack: Context) -> Iterator[TestClient]:
    settings = stack.settings.model_copy(update={"alert_webhook_allow_private": True, "api_rate_limit_per_s": 0.0})
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(settings: Settings, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, ttl=timedelta(hours=1))}"}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if status != 204 else None


def topic_values(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every value of a one-partition topic, up to its current end (bounded wait)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"it-{uuid.uuid4()}"})
    end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(out) < end and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and (value := msg.value()) is not None:
                out.append(json.loads(value))
        return out
    finally:
        consumer.close()


class AlertService:
    """The alert service in a thread, rules from the configuration database, on private topics; it can be
    stopped and started again on the same state, as a restart of the process would."""

    def __init__(self, settings: Settings, tmp_path: Path, tenant: str) -> None:
        run_id = f"it-alerts-db-{uuid.uuid4().hex[:8]}"
        self.tenant = tenant
        self.settings = settings.model_copy(update={"topic_metrics_minute": f"{run_id}.metrics",
                                                    "topic_alerts": f"{run_id}.alerts",
                                                    "alert_webhook_allow_private": True})
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        for future in self.admin.create_topics([NewTopic(self.settings.topic_metrics_minute, 6, 1),
                                                NewTopic(self.settings.topic_alerts, 1, 1)]).values():
            future.result()
        self.heartbeat = tmp_path / "heartbeat"
        self.alerts = AlertSettings(state_file=tmp_path / "state.json", heartbeat_file=self.heartbeat,
                                    webhook_backoff_s=0.1, rules_poll_s=0.5)
        assert self.alerts.rules_source == "database"  # the default
        self.deliveries: list[tuple[str, Delivery]] = []
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})
        self.worker: threading.Thread | None = None
        self.stop = threading.Event()
        self.on_topic: list[dict[str, Any]] | None = None  # once finished

    def start(self) -> None:
        self.stop = threading.Event()
        self.heartbeat.unlink(missing_ok=True)  # alive means this run's loop is consuming
        self.worker = threading.Thread(target=run, args=(self.settings, self.alerts, self.stop),
                                       kwargs={"on_delivery": lambda e, d: self.deliveries.append((e.id, d))},
                                       daemon=True)
        self.worker.start()
        deadline = time.monotonic() + WAIT_S
        while not is_alive(self.heartbeat):
            assert time.monotonic() < deadline and self.worker.is_alive(), "the alert service did not start"
            time.sleep(0.1)

    def halt(self) -> None:
        assert self.worker is not None
        self.stop.set()
        self.worker.join(30)
        assert not self.worker.is_alive(), "the alert service did not stop"

    def send(self, *minutes: tuple[int, int, int]) -> None:
        """Minute rows (minute, count, updated_at) of the tenant's orders_placed on channel app."""
        for minute, count, updated_at in minutes:
            start = 1_800_000_000_000 // MINUTE_MS * MINUTE_MS + minute * MINUTE_MS
            row = {"tenant_id": self.tenant, "metric": "orders_placed", "dims_key": "channel=app",
                   "dims": json.dumps({"channel": "app"}), "window_start": start, "window_end": start + MINUTE_MS,
                   "count": count, "sum": None, "updated_at": updated_at}
            key = {k: row[k] for k in ("tenant_id", "metric", "dims_key", "window_start")}
            self.producer.produce(self.settings.topic_metrics_minute, json.dumps(row).encode(),
                                  json.dumps(key).encode())
        assert self.producer.flush(10) == 0

    def finish(self) -> list[dict[str, Any]]:
        """Stop the service, delete the topics; returns what reached the alerts topic (once; again after)."""
        if self.on_topic is None:
            if self.worker is not None and self.worker.is_alive():
                self.halt()
            self.on_topic = topic_values(self.settings, self.settings.topic_alerts)
            for future in self.admin.delete_topics([self.settings.topic_metrics_minute,
                                                    self.settings.topic_alerts]).values():
                future.result()
        return self.on_topic


@pytest.fixture
def service(stack: Context, tmp_path: Path, tenant: str) -> Iterator[AlertService]:
    svc = AlertService(stack.settings, tmp_path, tenant)
    yield svc
    svc.finish()  # stopped before the tenant is deleted (its rules would read as deleted)


def test_a_rule_made_through_the_api_fires_once_resolves_with_its_own_key_and_survives_a_restart(
        api: TestClient, settings: Settings, tenant: str, receiver: WebhookReceiver, service: AlertService) -> None:
    headers = bearer(settings, tenant)
    rule = ok(api.post("/v1/alerts/rules", headers=headers, json={**RULE, "webhook_url": receiver.url}), 201)
    breach = f"{rule['id']}:{tenant}:1"

    service.start()
    # Minute 1 grows as update mode re-emits it: 2+2 (ok) → 2+4 (breach).
    service.send((0, 2, 1), (1, 2, 1))
    service.send((1, 4, 2))
    assert [(a["status"], a["value"]) for a in receiver.wait_for(1)] == [("firing", 6.0)]

    # Restarted while the breach is open (and growing: 2+7), the service must not fire it again.
    service.send((1, 7, 3))
    service.halt()
    service.start()
    # Two quiet minutes: the 2-minute window drops to 2 → resolved, after anything a restart could have re-sent.
    service.send((2, 1, 1), (3, 1, 1))
    accepted = receiver.wait_for(2)
    on_topic = service.finish()

    assert [(a["status"], a["value"], a["key"], a["id"], a["breach_id"], a["rule_id"], a["rule_name"])
            for a in accepted] == [
        ("firing", 6.0, f"{breach}:firing", f"{breach}:firing", breach, rule["id"], "Rush"),
        ("resolved", 2.0, f"{breach}:resolved", f"{breach}:resolved", breach, rule["id"], "Rush")]
    assert [(e["id"], e["tenant_id"]) for e in on_topic] == [(a["id"], tenant) for a in accepted]
    assert [d.status for _, d in service.deliveries] == ["delivered", "delivered"]

    # The history the API serves: both events, newest first, linked by the breach, each with its own key.
    history = ok(api.get("/v1/alerts/history", headers=headers))
    assert history["next_before"] is None
    assert [(e["status"], e["value"], e["threshold"], e["condition"], e["rule_id"], e["rule_name"], e["metric"],
             e["breach_key"], e["idempotency_key"], e["details"]["reason"]) for e in history["events"]] == [
        ("resolved", 2.0, 5.0, "gt", rule["id"], "Rush", "orders_placed", breach, f"{breach}:resolved", "recovered"),
        ("firing", 6.0, 5.0, "gt", rule["id"], "Rush", "orders_placed", breach, f"{breach}:firing", "breached")]
    firing, resolved = reversed(history["events"])
    assert resolved["window_end"] > firing["window_end"]


def test_rules_changed_disabled_and_deleted_through_the_api_apply_without_a_restart(
        api: TestClient, settings: Settings, tenant: str, receiver: WebhookReceiver, service: AlertService) -> None:
    headers = bearer(settings, tenant)
    rule = ok(api.post("/v1/alerts/rules", headers=headers, json={**RULE, "webhook_url": receiver.url}), 201)
    url = f"/v1/alerts/rules/{rule['id']}"
    service.start()
    service.send((0, 2, 1), (1, 4, 1))  # 6 over two minutes

    def next_delivery() -> tuple[str, str, float | None]:
        n = len(receiver.accepted) + 1
        delivered = receiver.wait_for(n)
        assert len(delivered) == n, [(a["status"], a["reason"]) for a in delivered]
        return delivered[-1]["status"], delivered[-1]["reason"], delivered[-1]["value"]

    assert next_delivery() == ("firing", "breached", 6.0)
    ok(api.patch(url, headers=headers, json={"threshold": 10}))  # changed: the breach recovers
    assert next_delivery() == ("resolved", "recovered", 6.0)
    ok(api.patch(url, headers=headers, json={"threshold": 3, "window_minutes": 1}))  # 4 > 3: a new breach
    assert next_delivery() == ("firing", "breached", 4.0)
    ok(api.patch(url, headers=headers, json={"enabled": False}))  # disabled while firing: its receiver is told
    assert next_delivery() == ("resolved", "rule_deleted", None)
    ok(api.patch(url, headers=headers, json={"enabled": True}))  # enabled again: judged on the replayed rows
    assert next_delivery() == ("firing", "breached", 4.0)
    ok(api.delete(url, headers=headers), 204)  # deleted while firing
    assert next_delivery() == ("resolved", "rule_deleted", None)
    on_topic = service.finish()

    keys = [f"{rule['id']}:{tenant}:{n}:{status}" for n in (1, 2, 3) for status in ("firing", "resolved")]
    assert [a["key"] for a in receiver.accepted] == keys
    assert [e["id"] for e in on_topic] == keys
    # The history outlives the rule: every event kept, the rule id cleared, its name copied.
    events = ok(api.get("/v1/alerts/history", headers=headers))["events"]
    assert [e["idempotency_key"] for e in events] == keys[::-1]
    assert {(e["rule_id"], e["rule_name"]) for e in events} == {(None, "Rush")}
    assert [e["threshold"] for e in events[::-1]] == [5.0, 10.0, 3.0, 3.0, 3.0, 3.0]
