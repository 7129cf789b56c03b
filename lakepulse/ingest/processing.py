"""Items of a request → per-event results and the Kafka records to write (pure functions)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import orjson
from user_agents import parse as parse_user_agent

from lakepulse.events import InvalidEvent, event_time_problem, event_too_large, rfc3339_utc, validate_event_json
from lakepulse.ingest.body import Item

if TYPE_CHECKING:
    from lakepulse.settings import Settings

# How much of a refused payload a dead letter keeps when the whole would not fit the DLQ's message limit.
DLQ_PREVIEW_BYTES = 4096


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


@dataclass(frozen=True, slots=True)
class EventRules:
    """Per-event rules beyond the contract: the largest serialised event (None: any size; it also bounds each
    dead letter), and how far `occurred_at` may be ahead of the server's clock or behind it (None: unchecked,
    no horizon)."""

    max_event_bytes: int | None = None
    max_future_skew_s: float | None = None
    max_age_days: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EventRules:
        """The rules the ingest service applies: `ingest_max_event_bytes`, `event_max_future_skew_s`,
        `event_max_age_days`."""
        return cls(settings.ingest_max_event_bytes, settings.event_max_future_skew_s, settings.event_max_age_days)

    def time_problem(self, occurred_at: datetime, now: datetime) -> str | None:
        """Why `occurred_at` is refused at server time `now`, or None (see events.event_time_problem)."""
        if self.max_future_skew_s is None and self.max_age_days is None:
            return None
        skew_s = self.max_future_skew_s if self.max_future_skew_s is not None else float("inf")
        return event_time_problem(occurred_at, now, skew_s, self.max_age_days)

    def time_bounds(self, now: datetime) -> tuple[float, float]:
        """(latest, earliest) `occurred_at` kept at server time `now`, as epoch seconds (infinite: unbounded).
        The hot path compares each event's timestamp() with them (one call into its tzinfo; comparing aware
        datetimes calls it twice per comparison); time_problem words the reason for the few outside."""
        base = now.timestamp()
        latest = base + self.max_future_skew_s if self.max_future_skew_s is not None else math.inf
        earliest = base - self.max_age_days * 86400 if self.max_age_days is not None else -math.inf
        return latest, earliest

    def too_large(self, size: int) -> str | None:
        """Why an event of `size` serialised bytes is refused, or None."""
        if self.max_event_bytes is not None and size > self.max_event_bytes:
            return event_too_large(size, self.max_event_bytes)
        return None


NO_RULES = EventRules()


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
    rules: EventRules = NO_RULES,
) -> Batch:
    """Validate each item; valid ones the caller `may_write` (None: every tenant) that keep the `rules` (size,
    event time against `received_at`) become enriched raw records, the others dead-letter records with the
    reason (each dead letter within the size limit too)."""
    batch = Batch()
    limit = rules.max_event_bytes
    latest, earliest = rules.time_bounds(received_at)
    received = rfc3339_utc(received_at)
    family = device_family(user_agent)
    # Server fields appended to a line as sent: valid events never carry them (unknown fields are refused).
    server_fields = b',"received_at":' + orjson.dumps(received) + b',"device_family":' + orjson.dumps(family)
    for index, item in enumerate(items):
        try:
            if item.error is not None:
                raise InvalidEvent(item.error)
            # Before validation: a multi-megabyte event is refused without being parsed into a model.
            if (too_large := rules.too_large(len(item.line))) is not None:
                raise InvalidEvent(too_large)
            event = validate_event_json(item.line)
        except InvalidEvent as invalid:
            _reject(batch, index, item, invalid.reason, received, limit)
            continue
        if may_write is not None and not may_write(event.tenant_id):
            _reject(batch, index, item, tenant_not_allowed(event.tenant_id), received, limit)
            continue
        occurred_at = event.occurred_at
        if not earliest <= occurred_at.timestamp() <= latest and (
            time_problem := rules.time_problem(occurred_at, received_at)
        ) is not None:
            _reject(batch, index, item, time_problem, received, limit)
            continue
        event_id = event.event_id
        if event_id is not None:
            # The object exactly as sent (its text ends with the closing brace) plus the server fields.
            value = item.line[:-1] + server_fields + b"}"
        else:  # absent or null: set it, which means re-encoding the object
            event_id = new_event_id()
            enriched = {**_decoded(item), "event_id": event_id, "received_at": received, "device_family": family}
            value = orjson.dumps(enriched)
        if (too_large := rules.too_large(len(value))) is not None:  # what Kafka would get: server fields too
            _reject(batch, index, item, too_large, received, limit)
            continue
        batch.results.append(Accepted(index, event_id))
        batch.raw_records.append(KafkaRecord(event.tenant_id.encode(), value))
    return batch


def _reject(batch: Batch, index: int, item: Item, reason: str, received: str, max_bytes: int | None) -> None:
    """Record the item as rejected with `reason`, bound for the dead-letter topic."""
    raw = _decoded(item)
    batch.results.append(Rejected(index, _text_field(raw, "event_id"), reason))
    batch.dlq_records.append(_dead_letter(item, raw, reason, received, max_bytes))


def _decoded(item: Item) -> Any:
    """The item's JSON value; None for text that is not JSON."""
    try:
        return orjson.loads(item.line)
    except orjson.JSONDecodeError:
        return None


def _text_field(raw: Any, name: str) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


def _dead_letter(item: Item, raw: Any, reason: str, received: str, max_bytes: int | None) -> KafkaRecord:
    """DLQ record: the reason and the payload as text, with tenant and event id when readable. A record that
    would exceed `max_bytes` keeps only the start of the payload (`raw_truncated`, and `raw_bytes` its size):
    a refused event must never make the dead letter itself too large for Kafka."""
    tenant_id = _text_field(raw, "tenant_id")
    value: dict[str, Any] = {
        "reason": reason,
        "raw": item.line.decode("utf-8", "replace"),
        "received_at": received,
        "tenant_id": tenant_id,
        "event_id": _text_field(raw, "event_id"),
    }
    encoded = orjson.dumps(value)
    preview = DLQ_PREVIEW_BYTES
    while max_bytes is not None and len(encoded) > max_bytes and preview > 0:
        # Escaping can grow text up to 6x (control characters), so halve until the record fits.
        value |= {"raw": item.line[:preview].decode("utf-8", "replace"), "raw_truncated": True,
                  "raw_bytes": len(item.line)}
        encoded = orjson.dumps(value)
        preview //= 2
    return KafkaRecord(tenant_id.encode() if tenant_id else None, encoded)
