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

from lakepulse.events import InvalidEvent, rfc3339_utc, validate_event_json
from lakepulse.ingest.body import Item


@dataclass(slots=True)
class KafkaRecord:
    """One message for Kafka: key (tenant_id) and JSON value."""

    key: bytes | None
    value: bytes


# Results are dataclasses so that orjson writes the per-event list of a 202 without Python dicts.
@dataclass(slots=True)
class Accepted:
    """An event bound for the raw topic."""

    index: int
    event_id: str
    status: Literal["accepted"] = "accepted"


@dataclass(slots=True)
class Rejected:
    """An event bound for the dead-letter topic, and why."""

    index: int
    event_id: str | None
    reason: str
    status: Literal["rejected"] = "rejected"


EventResult = Accepted | Rejected


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


def tenant_not_allowed(tenant_id: str) -> str:
    """The reason an event of `tenant_id` is refused to a caller that may not write that tenant."""
    # The tenant id has passed the contract's pattern by then, so quoting it is safe.
    return f"tenant_not_allowed: this credential may not write tenant '{tenant_id}'"


def process_items(
    items: Sequence[Item],
    received_at: datetime,
    user_agent: str | None,
    new_event_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    may_write: Callable[[str], bool] | None = None,
) -> Batch:
    """Validate each item; valid ones the caller `may_write` (None: every tenant) become enriched raw records,
    the others dead-letter records with the reason."""
    batch = Batch()
    received = rfc3339_utc(received_at)
    family = device_family(user_agent)
    # Server fields appended to a line as sent: valid events never carry them (unknown fields are refused).
    server_fields = b',"received_at":' + orjson.dumps(received) + b',"device_family":' + orjson.dumps(family)
    for index, item in enumerate(items):
        try:
            if item.error is not None:
                raise InvalidEvent(item.error)
            event = validate_event_json(item.line)
        except InvalidEvent as invalid:
            _reject(batch, index, item, invalid.reason, received)
            continue
        if may_write is not None and not may_write(event.tenant_id):
            _reject(batch, index, item, tenant_not_allowed(event.tenant_id), received)
            continue
        event_id = event.event_id
        if event_id is not None:
            # The object exactly as sent (its text ends with the closing brace) plus the server fields.
            value = item.line[:-1] + server_fields + b"}"
        else:  # absent or null: set it, which means re-encoding the object
            event_id = new_event_id()
            enriched = {**_decoded(item), "event_id": event_id, "received_at": received, "device_family": family}
            value = orjson.dumps(enriched)
        batch.results.append(Accepted(index, event_id))
        batch.raw_records.append(KafkaRecord(event.tenant_id.encode(), value))
    return batch


def _reject(batch: Batch, index: int, item: Item, reason: str, received: str) -> None:
    """Record the item as rejected with `reason`, bound for the dead-letter topic."""
    raw = _decoded(item)
    batch.results.append(Rejected(index, _text_field(raw, "event_id"), reason))
    batch.dlq_records.append(_dead_letter(item, raw, reason, received))


def _decoded(item: Item) -> Any:
    """The item's JSON value; None for text that is not JSON."""
    try:
        return orjson.loads(item.line)
    except orjson.JSONDecodeError:
        return None


def _text_field(raw: Any, name: str) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


def _dead_letter(item: Item, raw: Any, reason: str, received: str) -> KafkaRecord:
    """DLQ record: the reason and the payload as text, with tenant and event id when readable."""
    raw_text = item.line.decode("utf-8", "replace")
    tenant_id = _text_field(raw, "tenant_id")
    value = {
        "reason": reason,
        "raw": raw_text,
        "received_at": received,
        "tenant_id": tenant_id,
        "event_id": _text_field(raw, "event_id"),
    }
    return KafkaRecord(tenant_id.encode() if tenant_id else None, orjson.dumps(value))
