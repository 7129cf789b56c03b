"""Items of a request → per-event results and the Kafka records to write (pure functions)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import orjson
from user_agents import parse as parse_user_agent

from lakepulse.events import InvalidEvent, rfc3339_utc, validate_event
from lakepulse.ingest.body import Item


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One message for Kafka: key (tenant_id) and JSON value."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class EventResult:
    """What happened to one event of a request."""

    index: int
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class Batch:
    """The outcome of validating one request: results in request order and the records per topic."""

    results: list[EventResult] = field(default_factory=list)
    raw_records: list[KafkaRecord] = field(default_factory=list)
    dlq_records: list[KafkaRecord] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Number of events bound for the raw topic."""
        return len(self.raw_records)

    @property
    def rejected(self) -> int:
        """Number of events bound for the dead-letter topic."""
        return len(self.dlq_records)


@lru_cache(maxsize=4096)
def device_family(user_agent: str | None) -> str:
    """Device family of a User-Agent ('iPhone', 'Samsung SM-G960F', 'Other', ...); cached: parsing is slow."""
    if not user_agent:
        return "Other"
    return parse_user_agent(user_agent[:512]).device.family or "Other"


def process_items(
    items: Sequence[Item],
    received_at: datetime,
    user_agent: str | None,
    new_event_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Batch:
    """Validate each item; valid ones become enriched raw records, invalid ones dead-letter records."""
    batch = Batch()
    received = rfc3339_utc(received_at)
    family = device_family(user_agent)
    for index, item in enumerate(items):
        raw = item.value
        try:
            if item.parse_error is not None:
                raise InvalidEvent(item.parse_error)
            event = validate_event(raw)
        except InvalidEvent as invalid:
            event_id = _text_field(raw, "event_id")
            batch.results.append(EventResult(index, "rejected", event_id, invalid.reason))
            batch.dlq_records.append(_dead_letter(item, invalid.reason, received))
            continue
        event_id = event.event_id or new_event_id()
        # The value is the object as sent plus server fields, not a re-serialised model: exactly as sent.
        value = {**raw, "event_id": event_id, "received_at": received, "device_family": family}
        batch.results.append(EventResult(index, "accepted", event_id))
        batch.raw_records.append(KafkaRecord(event.tenant_id.encode(), orjson.dumps(value)))
    return batch


def _text_field(raw: Any, name: str) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


def _dead_letter(item: Item, reason: str, received: str) -> KafkaRecord:
    """DLQ record: the reason and the raw payload as text, with tenant and event id when readable."""
    raw_text = (
        item.raw.decode("utf-8", "replace") if item.raw is not None else orjson.dumps(item.value).decode()
    )
    tenant_id = _text_field(item.value, "tenant_id")
    value = {
        "reason": reason,
        "raw": raw_text,
        "received_at": received,
        "tenant_id": tenant_id,
        "event_id": _text_field(item.value, "event_id"),
    }
    return KafkaRecord(tenant_id.encode() if tenant_id else None, orjson.dumps(value))
