"""The alerting process: consume `metrics.minute`, evaluate rules, publish to `alerts` and webhooks.

On start it replays the last hour-ish of `metrics.minute` (offsets by timestamp, no consumer-group state),
so windows and baselines are rebuilt, and evaluates once the replay is done; breach state is persisted, so a
restart never fires twice. Rules come from a `RuleSource`, by default every tenant's enabled rules in the
configuration database (PostgreSQL, written through the API), re-read every few seconds: created, changed,
disabled and deleted rules apply without a restart (a new metric or a longer window replays the rows it needs).
Every published event is written to the alert history (`history.py`). Webhook URLs are checked at every
delivery (`webhooks.py`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakepulse.alerts.history import DatabaseHistory
from lakepulse.alerts.rules import AlertEvent, Evaluator, Rule
from lakepulse.alerts.sources import DatabaseRuleSource, FileRuleSource, RuleSource, reload_rules
from lakepulse.alerts.webhooks import pinned, webhook_addresses
from lakepulse.config.db import ConfigDatabase
from lakepulse.settings import Settings, get_settings

log = logging.getLogger("lakepulse.alerts")


class AlertSettings(BaseSettings):
    """Knobs of the alerting process (`LAKEPULSE_ALERTS_*`)."""

    model_config = SettingsConfigDict(env_prefix="LAKEPULSE_ALERTS_", env_file=".env", extra="ignore")

    # database: every tenant's enabled rules in the configuration database (written through the API), and events
    # recorded in its alert history; file: rules from `rules_file` (local experiments), no history.
    rules_source: Literal["database", "file"] = "database"
    rules_file: Path | None = None  # default: <state_dir>/alerts/rules.json
    state_file: Path | None = None  # default: <state_dir>/alerts/state.json
    heartbeat_file: Path | None = None  # default: <state_dir>/alerts/heartbeat (touched every poll)
    webhook_attempts: int = 5
    webhook_backoff_s: float = 0.5
    webhook_timeout_s: float = 5.0
    poll_s: float = 0.5
    rules_poll_s: float = Field(default=2.0, gt=0)  # how often the rule source is re-read
    first_read_s: float = Field(default=60.0, ge=0)  # how long the first read may keep failing before giving up

    def rules_path(self, settings: Settings) -> Path:
        return self.rules_file or settings.state_dir / "alerts" / "rules.json"

    def state_path(self, settings: Settings) -> Path:
        return self.state_file or settings.state_dir / "alerts" / "state.json"

    def heartbeat_path(self, settings: Settings) -> Path:
        return self.heartbeat_file or settings.state_dir / "alerts" / "heartbeat"

    def history_pending_path(self, settings: Settings) -> Path:
        """Events not yet in the history (the database was down), beside the evaluator's state."""
        return self.state_path(settings).with_name("history-pending.json")


def is_alive(heartbeat: Path, max_age_s: float = 30.0) -> bool:
    """True when the evaluator touched its heartbeat file within `max_age_s` (its readiness check)."""
    try:
        return time.time() - heartbeat.stat().st_mtime < max_age_s
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Delivery:
    """How a webhook delivery ended: delivered, refused (the URL may not be called), rejected (the receiver
    answered 4xx) or failed (no success after every attempt)."""

    status: Literal["delivered", "refused", "rejected", "failed"]
    detail: str = ""


def post_webhook(url: str, event: AlertEvent, attempts: int, backoff_s: float, timeout_s: float,
                 allow_private: bool = False) -> Delivery:
    """POST the event with retries (exponential backoff), its id as the Idempotency-Key; every attempt
    re-checks the URL (`check_webhook_url`: DNS may have changed) and connects to an address it vetted."""
    target = httpx.URL(url)
    for attempt in range(attempts):
        try:
            addresses = webhook_addresses(url, allow_private)
        except ValueError as exc:
            log.warning("webhook for %s refused: %s", event.id, exc)
            return Delivery("refused", str(exc))
        # Connect to an address just vetted, not to what the client's own lookup might answer.
        request_url, headers, extensions = pinned(target, addresses[attempt % len(addresses)] if addresses else None)
        headers.update({"Content-Type": "application/json", "Idempotency-Key": event.id})
        try:
            with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
                response = client.post(request_url, content=event.to_json(), headers=headers,
                                       extensions=extensions)
            if response.is_success:
                return Delivery("delivered", str(response.status_code))
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                log.warning("webhook %s rejected %s: %s", url, event.id, response.status_code)
                return Delivery("rejected", str(response.status_code))
        except httpx.HTTPError as exc:
            log.warning("webhook %s attempt %d failed: %s", url, attempt + 1, exc)
        time.sleep(backoff_s * 2**attempt)
    log.error("webhook %s gave up on %s after %d attempts", url, event.id, attempts)
    return Delivery("failed", f"{attempts} attempts")


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


def _replay(consumer: Consumer, topic: str, minutes: int) -> dict[int, int]:
    """Assign the consumer from the records of the last `minutes`; returns, per partition with records to
    replay, the end offset the replay must reach before the table is whole."""
    starts = _offsets_since(consumer, topic, int(time.time() * 1000) - minutes * 60_000)
    assigned: list[TopicPartition] = []
    ends: dict[int, int] = {}
    for tp in starts:
        end = consumer.get_watermark_offsets(tp, timeout=10)[1]
        # No record since then: start at the current end as a concrete offset (OFFSET_END would resolve
        # lazily at the first fetch and skip what is produced in between).
        start = tp.offset if tp.offset >= 0 else end
        assigned.append(TopicPartition(topic, tp.partition, start))
        if start < end:
            ends[tp.partition] = end
    consumer.assign(assigned)
    return ends


def _caught_up(consumer: Consumer, topic: str, ends: dict[int, int]) -> None:
    """Drop from `ends` the partitions whose consumed position reached their replay end."""
    if ends:
        for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
            if tp.offset >= ends[tp.partition]:
                del ends[tp.partition]


def first_read(source: RuleSource, stop: threading.Event, wait_s: float, retry_s: float = 2.0) -> list[Rule]:
    """The rules, read before anything is consumed; a failing read is retried for `wait_s` (the database may
    still be starting), then raises: with no rules at all there would be nothing to evaluate."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return source()
        except Exception as exc:
            if time.monotonic() >= deadline or stop.is_set():
                raise
            log.warning("reading alert rules from %s failed (%s); retrying", source, exc)
            stop.wait(retry_s)


def run(settings: Settings, alerts: AlertSettings, stop: threading.Event, source: RuleSource | None = None,
        on_delivery: Callable[[AlertEvent, Delivery], None] | None = None,
        history: DatabaseHistory | None = None) -> None:
    """Evaluate until `stop` is set: rules from `source`, re-read every `rules_poll_s`; published events go to
    `history`. Without a source, `alerts.rules_source` chooses: the configuration database (rules, and the
    history too unless given) or the rules file. `on_delivery` is told how each webhook delivery ended."""
    db: ConfigDatabase | None = None
    if source is None and alerts.rules_source == "database":
        db = ConfigDatabase.from_settings(settings, "lakepulse-alerts")
        source = DatabaseRuleSource(db)
        history = history or DatabaseHistory(db, alerts.history_pending_path(settings))
    source = source or FileRuleSource(alerts.rules_path(settings))
    try:
        _run(settings, alerts, stop, source, on_delivery, history)
    finally:
        if db is not None:
            db.close()


def _run(settings: Settings, alerts: AlertSettings, stop: threading.Event, source: RuleSource,
         on_delivery: Callable[[AlertEvent, Delivery], None] | None, history: DatabaseHistory | None) -> None:
    state_path = alerts.state_path(settings)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    evaluator = Evaluator([], state)
    # Read once before consuming, and fail loudly: a first read that fails would leave nothing to evaluate.
    rules = first_read(source, stop, alerts.first_read_s)
    topic = settings.topic_metrics_minute
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "lakepulse-alerts",
                         "enable.auto.commit": False, "auto.offset.reset": "latest"})
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True})

    def publish(events: list[AlertEvent]) -> None:
        for event in events:
            producer.produce(settings.topic_alerts, event.to_json(), f"{event.rule_id}|{event.tenant_id}")
        producer.flush(30)
        # History before the webhooks (which may retry for a while): what the topic has, the history has; an
        # event the database does not take now is kept and written later.
        if history is not None and events:
            history.record(events)
        for event in events:
            log.info("%s %s (%s, value %s)", event.status, event.id, event.reason, event.value)
            if event.webhook:
                delivery = post_webhook(event.webhook, event, alerts.webhook_attempts, alerts.webhook_backoff_s,
                                        alerts.webhook_timeout_s, settings.alert_webhook_allow_private)
                if on_delivery is not None:
                    on_delivery(event, delivery)
        # Saved once topic and webhook have the events: a crash before this re-sends (same event ids, the
        # receiver's idempotency keys), never skips.
        _save_state(state_path, evaluator.state)

    try:
        # Breaches of rules deleted or redefined while the service was down are resolved first.
        publish(evaluator.apply_rules(rules))
        # Rebuild windows and baselines from the records of the last `keep_minutes`; nothing is evaluated
        # until the replay reaches the end it had at the start, so no rule judges a half-rebuilt window.
        behind = _replay(consumer, topic, evaluator.table.keep_minutes)
        backlog: set[tuple[str, str]] = set()
        log.info("evaluating %d rules from %s on %s", len(evaluator.rules), source, topic)
        heartbeat = alerts.heartbeat_path(settings)
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        next_rules = time.monotonic() + alerts.rules_poll_s
        while not stop.is_set():
            heartbeat.touch()
            if time.monotonic() >= next_rules:
                next_rules = time.monotonic() + alerts.rules_poll_s
                if history is not None and history.pending:
                    history.record()  # events the database did not take before
                if (reload := reload_rules(source, evaluator)) is not None:
                    publish(reload.events)
                    # Changed thresholds and windows, and new rules, are judged on the rows already kept;
                    # a new metric or a longer window needs rows the table dropped: replay them first.
                    backlog |= set(evaluator.table.series)
                    if reload.needs_replay:
                        behind = _replay(consumer, topic, evaluator.table.keep_minutes)
            metrics = {r.metric for r in evaluator.rules}
            for msg in consumer.consume(1000, timeout=alerts.poll_s):
                if (error := msg.error()) is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consume error: %s", error)
                    continue
                if (value := msg.value()) is None:  # a tombstone carries no row
                    continue
                row = json.loads(value)
                if row.get("metric") in metrics and (series := evaluator.table.upsert(row)) is not None:
                    backlog.add(series)
            _caught_up(consumer, topic, behind)
            if behind or not backlog:
                continue
            events = evaluator.evaluate(backlog)
            backlog = set()
            if events:
                publish(events)
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
