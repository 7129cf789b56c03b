"""Raw-archive rows from the event generator, as Kafka Connect would land them (for tests and benches)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from lakepulse.generator.scenario import GeneratorConfig, generate_events

RAW_TOPIC = "events.raw"
PARTITIONS = 6


def raw_rows(config: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """One dict per record the archive would hold: valid, late and duplicate sends (malformed ones never
    reach events.raw); received_at is the send time, Kafka position by tenant key."""
    offsets = [0] * PARTITIONS
    for sent in generate_events(config):
        if not sent.is_valid:
            continue
        event = orjson.loads(sent.line)
        partition = zlib.crc32(str(event["tenant_id"]).encode()) % PARTITIONS
        offsets[partition] += 1
        yield {
            "event_id": event["event_id"],
            "tenant_id": event["tenant_id"],
            "event_type": event["event_type"],
            "occurred_at": datetime.fromisoformat(event["occurred_at"]),
            "received_at": sent.emit_at,
            "source": event.get("source"),
            "device_family": None,
            "properties": orjson.dumps(event.get("properties", {})).decode(),
            "kafka_topic": RAW_TOPIC,
            "kafka_partition": partition,
            "kafka_offset": offsets[partition],
        }
