"""Alerts on the real Kafka: minute rows in → one firing and one resolve, on the topic and to a webhook.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.alerts.service import AlertSettings, is_alive, run
from lakepulse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]

MINUTE_MS = 60_000
WAIT_S = 60


class Receiver:
    """A webhook endpoint: 503 on the very first request, then 200; records every attempt."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts.append(body)
                ok = len(receiver.attempts) > 1
                if ok:
                    receiver.accepted.append({**body, "key": self.headers["Idempotency-Key"]})
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_S
        while len(self.accepted) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.accepted


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


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
            if msg is not None and not msg.error():
                out.append(json.loads(msg.value()))
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


def test_alert_fires_once_per_breach_and_resolves(stack, settings: Settings, tmp_path: Path,
                                                  receiver: Receiver) -> None:
    run_id = f"it-alerts-{uuid.uuid4().hex[:8]}"
    tenant = f"{run_id}-t1"
    private = settings.model_copy(update={"topic_metrics_minute": f"{run_id}.metrics",
                                          "topic_alerts": f"{run_id}.alerts"})
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(private.topic_metrics_minute, 6, 1),
                                       NewTopic(private.topic_alerts, 1, 1)]).values():
        future.result()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"id": "rush", "metric": "orders_placed", "tenant_id": tenant,
                                  "condition": "gt", "threshold": 5, "window_minutes": 2,
                                  "channel": receiver.url}]))
    alerts = AlertSettings(rules_file=rules, state_file=tmp_path / "state.json",
                           heartbeat_file=tmp_path / "heartbeat", webhook_backoff_s=0.1)
    stop = threading.Event()
    worker = threading.Thread(target=run, args=(private, alerts, stop), daemon=True)
    worker.start()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})

    def send(*rows: tuple[bytes, bytes]) -> None:
        for key, value in rows:
            producer.produce(private.topic_metrics_minute, value, key)
        assert producer.flush(10) == 0

    try:
        deadline = time.monotonic() + WAIT_S
        while not is_alive(tmp_path / "heartbeat"):
            assert time.monotonic() < deadline and worker.is_alive(), "evaluator did not start"
            time.sleep(0.2)
        # Minute 1 grows as update mode re-emits it: 2+2 (ok) → 2+4 (breach) → 2+7 (still the same breach).
        send(minute_row(tenant, 0, 2, 1), minute_row(tenant, 1, 2, 1))
        send(minute_row(tenant, 1, 4, 2))
        assert [a["status"] for a in receiver.wait_for(1)] == ["firing"]
        send(minute_row(tenant, 1, 7, 3))
        # Two quiet minutes: the 2-minute window drops to 2 → resolved.
        send(minute_row(tenant, 2, 1, 1), minute_row(tenant, 3, 1, 1))
        accepted = receiver.wait_for(2)
        time.sleep(3)  # a duplicate firing would arrive within this (the rows above are all consumed)
    finally:
        stop.set()
        worker.join(30)
    on_topic = topic_values(settings, private.topic_alerts)
    for future in admin.delete_topics([private.topic_metrics_minute, private.topic_alerts]).values():
        future.result()

    assert [(a["status"], a["value"]) for a in receiver.accepted] == [("firing", 6.0), ("resolved", 2.0)]
    assert len(receiver.attempts) == 3  # the refused first delivery was retried once
    assert accepted[0]["key"] == accepted[1]["key"] == accepted[0]["id"]
    assert [(e["status"], e["tenant_id"], e["rule_id"]) for e in on_topic] == [
        ("firing", tenant, "rush"), ("resolved", tenant, "rush")]
