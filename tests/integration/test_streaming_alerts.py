"""Alerts on the real Kafka: minute rows in → one firing and one resolve, on the topic and to a webhook;
rules edited while the evaluator runs; a webhook on an internal address refused at delivery.

The evaluator runs in-process (`lakepulse.alerts.service.run`) on a private metrics topic and alerts
topic; the webhook receiver is an HTTP server started here that refuses the first delivery (503), so the
retry is exercised and the firing must still arrive exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.alerts.service import AlertSettings, Delivery, is_alive, run
from lakepulse.settings import Settings
from tests.webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]

MINUTE_MS = 60_000
WAIT_S = 60


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver(refuse_first=1) as r:
        yield r


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


def minute_row(tenant: str, minute: int, count: int, updated_at: int) -> tuple[bytes, bytes]:
    start = 1_800_000_000_000 // MINUTE_MS * MINUTE_MS + minute * MINUTE_MS
    row = {"tenant_id": tenant, "metric": "orders_placed", "dims_key": "channel=app",
           "dims": json.dumps({"channel": "app"}), "window_start": start, "window_end": start + MINUTE_MS,
           "count": count, "sum": None, "updated_at": updated_at}
    key = {k: row[k] for k in ("tenant_id", "metric", "dims_key", "window_start")}
    return json.dumps(key).encode(), json.dumps(row).encode()


class Evaluation:
    """`lakepulse.alerts.service.run` in a thread on private topics, with its rules file (not the database: see
    test_alerts_from_db.py) and deliveries."""

    def __init__(self, settings: Settings, tmp_path: Path, allow_private: bool) -> None:
        run_id = f"it-alerts-{uuid.uuid4().hex[:8]}"
        self.tenant = f"{run_id}-t1"
        self.settings = settings.model_copy(update={"topic_metrics_minute": f"{run_id}.metrics",
                                                    "topic_alerts": f"{run_id}.alerts",
                                                    "alert_webhook_allow_private": allow_private})
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        for future in self.admin.create_topics([NewTopic(self.settings.topic_metrics_minute, 6, 1),
                                                NewTopic(self.settings.topic_alerts, 1, 1)]).values():
            future.result()
        self.rules = tmp_path / "rules.json"
        self.heartbeat = tmp_path / "heartbeat"
        self.alerts = AlertSettings(rules_source="file", rules_file=self.rules, state_file=tmp_path / "state.json",
                                    heartbeat_file=self.heartbeat, webhook_backoff_s=0.1, rules_poll_s=0.5)
        self.deliveries: list[tuple[str, Delivery]] = []
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})

    def write_rules(self, *rules: dict[str, Any]) -> None:
        tmp = self.rules.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"id": "rush", "metric": "orders_placed", "tenant_id": self.tenant,
                                    "condition": "gt", "threshold": 5, "window_minutes": 2, **r} for r in rules]))
        tmp.replace(self.rules)

    def start(self) -> None:
        self.worker = threading.Thread(target=run, args=(self.settings, self.alerts, self.stop),
                                       kwargs={"on_delivery": lambda e, d: self.deliveries.append((e.id, d))},
                                       daemon=True)
        self.worker.start()
        deadline = time.monotonic() + WAIT_S
        while not is_alive(self.heartbeat):
            assert time.monotonic() < deadline and self.worker.is_alive(), "evaluator did not start"
            time.sleep(0.2)

    def send(self, *minutes: tuple[int, int, int]) -> None:
        """Minute rows (minute, count, updated_at) of the tenant's orders_placed."""
        for minute, count, updated_at in minutes:
            key, value = minute_row(self.tenant, minute, count, updated_at)
            self.producer.produce(self.settings.topic_metrics_minute, value, key)
        assert self.producer.flush(10) == 0

    def finish(self) -> list[dict[str, Any]]:
        """Stop the evaluator, delete the topics; returns what reached the alerts topic."""
        self.stop.set()
        self.worker.join(30)
        on_topic = topic_values(self.settings, self.settings.topic_alerts)
        for future in self.admin.delete_topics([self.settings.topic_metrics_minute,
                                                self.settings.topic_alerts]).values():
            future.result()
        return on_topic


def test_alert_fires_once_per_breach_and_resolves(stack, settings: Settings, tmp_path: Path,
                                                  receiver: WebhookReceiver) -> None:
    # The receiver listens on 127.0.0.1, which tenants' webhooks may not reach unless the setting allows it.
    ev = Evaluation(settings, tmp_path, allow_private=True)
    ev.write_rules({"channel": receiver.url})
    try:
        ev.start()
        # Minute 1 grows as update mode re-emits it: 2+2 (ok) → 2+4 (breach) → 2+7 (still the same breach).
        ev.send((0, 2, 1), (1, 2, 1))
        ev.send((1, 4, 2))
        assert [a["status"] for a in receiver.wait_for(1)] == ["firing"]
        ev.send((1, 7, 3))
        # Two quiet minutes: the 2-minute window drops to 2 → resolved.
        ev.send((2, 1, 1), (3, 1, 1))
        accepted = receiver.wait_for(2)
        time.sleep(3)  # a duplicate firing would arrive within this (the rows above are all consumed)
    finally:
        on_topic = ev.finish()

    assert [(a["status"], a["value"]) for a in receiver.accepted] == [("firing", 6.0), ("resolved", 2.0)]
    assert len(receiver.attempts) == 3  # the refused first delivery was retried once
    # One breach, two events: linked by the breach id, each with its own Idempotency-Key.
    assert [(a["key"], a["id"], a["breach_id"]) for a in accepted] == [
        ("rush:" + ev.tenant + ":1:firing", "rush:" + ev.tenant + ":1:firing", "rush:" + ev.tenant + ":1"),
        ("rush:" + ev.tenant + ":1:resolved", "rush:" + ev.tenant + ":1:resolved", "rush:" + ev.tenant + ":1")]
    assert [(e["status"], e["tenant_id"], e["rule_id"], e["id"]) for e in on_topic] == [
        (a["status"], ev.tenant, "rush", a["id"]) for a in accepted]
    assert [d.status for _, d in ev.deliveries] == ["delivered", "delivered"]


def test_rules_reload_without_a_restart(stack, settings: Settings, tmp_path: Path, receiver: WebhookReceiver) -> None:
    ev = Evaluation(settings, tmp_path, allow_private=True)
    try:
        ev.start()  # no rules file yet: no rules
        ev.send((0, 2, 1), (1, 4, 1))  # 6 over two minutes, before any rule reads orders_placed
        # A created rule is judged on the rows sent before it existed (its metric's rows are replayed).
        ev.write_rules({"channel": receiver.url})
        assert [(a["status"], a["value"]) for a in receiver.wait_for(1)] == [("firing", 6.0)]
        ev.write_rules({"channel": receiver.url, "threshold": 10})  # changed: the breach recovers
        assert [(a["status"], a["reason"]) for a in receiver.wait_for(2)[1:]] == [("resolved", "recovered")]
        ev.write_rules({"channel": receiver.url, "window_minutes": 1, "threshold": 3})  # 4 > 3: a new breach
        assert [(a["status"], a["value"]) for a in receiver.wait_for(3)[2:]] == [("firing", 4.0)]
        ev.write_rules()  # deleted while firing: its receiver gets the resolve
        assert [(a["status"], a["reason"]) for a in receiver.wait_for(4)[3:]] == [("resolved", "rule_deleted")]
    finally:
        on_topic = ev.finish()

    breach = f"rush:{ev.tenant}"
    assert [(a["key"], a["breach_id"]) for a in receiver.accepted] == [
        (f"{breach}:1:firing", f"{breach}:1"), (f"{breach}:1:resolved", f"{breach}:1"),
        (f"{breach}:2:firing", f"{breach}:2"), (f"{breach}:2:resolved", f"{breach}:2")]
    assert [e["id"] for e in on_topic] == [a["key"] for a in receiver.accepted]


def test_webhook_to_an_internal_address_is_refused_at_delivery(stack, settings: Settings, tmp_path: Path,
                                                               receiver: WebhookReceiver) -> None:
    ev = Evaluation(settings, tmp_path, allow_private=False)
    ev.write_rules({"channel": receiver.url})  # 127.0.0.1: refused without alert_webhook_allow_private
    try:
        ev.start()
        ev.send((0, 2, 1), (1, 4, 1))
        deadline = time.monotonic() + WAIT_S
        while not ev.deliveries and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        on_topic = ev.finish()

    assert [(key, d.status) for key, d in ev.deliveries] == [(f"rush:{ev.tenant}:1:firing", "refused")]
    assert "127.0.0.1 is a loopback address" in ev.deliveries[0][1].detail
    assert receiver.attempts == []  # never called
    assert [e["status"] for e in on_topic] == ["firing"]  # the alerts topic still has the event
