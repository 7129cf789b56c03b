"""The alerting process: consume `metrics.minute`, evaluate rules, publish to `alerts` and webhooks.

On start it replays the last hour-ish of `metrics.minute` (offsets by timestamp, no consumer-group state),
so windows and baselines are rebuilt; breach state is persisted, so a restart never fires twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakepulse.alerts.rules import AlertEvent, Evaluator, load_rules
from lakepulse.settings import Settings, get_settings

log = logging.getLogger("lakepulse.alerts")


class AlertSettings(BaseSettings):
    """Knobs of the alerting process (`LAKEPULSE_ALERTS_*`)."""

    model_config = SettingsConfigDict(env_prefix="LAKEPULSE_ALERTS_", env_file=".env", extra="ignore")

    rules_file: Path | None = None  # default: <state_dir>/alerts/rules.json
    state_file: Path | None = None  # default: <state_dir>/alerts/state.json
    heartbeat_file: Path | None = None  # default: <state_dir>/alerts/heartbeat (touched every poll)
    webhook_attempts: int = 5
    webhook_backoff_s: float = 0.5
    webhook_timeout_s: float = 5.0
    poll_s: float = 0.5

    def rules_path(self, settings: Settings) -> Path:
        return self.rules_file or settings.state_dir / "alerts" / "rules.json"

    def state_path(self, settings: Settings) -> Path:
        return self.state_file or settings.state_dir / "alerts" / "state.json"

    def heartbeat_path(self, settings: Settings) -> Path:
        return self.heartbeat_file or settings.state_dir / "alerts" / "heartbeat"


def is_alive(heartbeat: Path, max_age_s: float = 30.0) -> bool:
    """True when the evaluator touched its heartbeat file within `max_age_s` (its readiness check)."""
    try:
        return time.time() - heartbeat.stat().st_mtime < max_age_s
    except FileNotFoundError:
        return False


def post_webhook(url: str, event: AlertEvent, attempts: int, backoff_s: float, timeout_s: float) -> bool:
    """POST the event with retries (exponential backoff); the event id doubles as the idempotency key."""
    for attempt in range(attempts):
        try:
            response = httpx.post(url, content=event.to_json(), timeout=timeout_s,
                                  headers={"Content-Type": "application/json", "Idempotency-Key": event.id})
            if response.is_success:
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                log.warning("webhook %s refused %s: %s", url, event.id, response.status_code)
                return False
        except httpx.HTTPError as exc:
            log.warning("webhook %s attempt %d failed: %s", url, attempt + 1, exc)
        time.sleep(backoff_s * 2**attempt)
    log.error("webhook %s gave up on %s after %d attempts", url, event.id, attempts)
    return False


def _save_state(path: Path, state: dict[str, dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _offsets_since(consumer: Consumer, topic: str, since_ms: int, attempts: int = 30) -> list[TopicPartition]:
    """Per partition, the first offset at or after `since_ms` (retried while a new topic elects leaders)."""
    for attempt in range(attempts):
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return list(consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts],
                                                   timeout=10))
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    return []


def run(settings: Settings, alerts: AlertSettings, stop: threading.Event) -> None:
    """Evaluate until `stop` is set."""
    rules = load_rules(alerts.rules_path(settings))
    state_path = alerts.state_path(settings)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    evaluator = Evaluator(rules, state)
    metrics = {r.metric for r in rules}
    topic = settings.topic_metrics_minute
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "lakepulse-alerts",
                         "enable.auto.commit": False, "auto.offset.reset": "latest"})
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True})
    try:
        # Rebuild windows and baselines: start from the records of the last `keep_minutes`.
        since_ms = int(time.time() * 1000) - evaluator.table.keep_minutes * 60_000
        starts = _offsets_since(consumer, topic, since_ms)
        # No record since then: start at the current end as a concrete offset (OFFSET_END would resolve
        # lazily at the first fetch and skip what is produced in between).
        consumer.assign([tp if tp.offset >= 0 else TopicPartition(
            topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=10)[1]) for tp in starts])
        log.info("evaluating %d rules on %s", len(rules), topic)
        heartbeat = alerts.heartbeat_path(settings)
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            heartbeat.touch()
            messages = consumer.consume(1000, timeout=alerts.poll_s)
            changed: set[tuple[str, str]] = set()
            for msg in messages:
                if (error := msg.error()) is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consume error: %s", error)
                    continue
                if (value := msg.value()) is None:  # a tombstone carries no row
                    continue
                row = json.loads(value)
                if row.get("metric") in metrics and (series := evaluator.table.upsert(row)) is not None:
                    changed.add(series)
            if not changed:
                continue
            events = evaluator.evaluate(changed)
            for event in events:
                producer.produce(settings.topic_alerts, event.to_json(), f"{event.rule_id}|{event.tenant_id}")
            producer.flush(30)
            for event in events:
                log.info("%s %s (value %s)", event.status, event.id, event.value)
                rule = next(r for r in rules if r.id == event.rule_id)
                if rule.webhook:
                    post_webhook(rule.webhook, event, alerts.webhook_attempts, alerts.webhook_backoff_s,
                                 alerts.webhook_timeout_s)
            # Saved once topic and webhook have the events: a crash before this re-sends (same event id,
            # the receiver's idempotency key), never skips.
            _save_state(state_path, evaluator.state)
    finally:
        consumer.close()
        producer.flush(10)


def main() -> None:
    """Entry point of `python -m lakepulse.alerts`."""
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(get_settings(), AlertSettings(), stop)
