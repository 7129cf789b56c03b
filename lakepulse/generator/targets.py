"""Where generated events go: an NDJSON file, the ingest API (through the SDK), or Kafka directly."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from confluent_kafka import Producer

from lakepulse.generator.scenario import GeneratedEvent, GeneratorConfig
from lakepulse.ingest.body import line_items
from lakepulse.ingest.processing import process_items
from lakepulse.ingest.sink import producer_config
from lakepulse.sdk import IngestClient

KAFKA_FLUSH_TIMEOUT_S = 60.0


class Target(Protocol):
    """Receives the generated lines in send order."""

    def write(self, event: GeneratedEvent) -> None:
        """Send or store one event."""
        ...

    def close(self) -> None:
        """Make everything durable; raise if some of it could not be."""
        ...


class FileTarget:
    """NDJSON file: one event per line, exactly the bytes the API would receive."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("wb")

    def write(self, event: GeneratedEvent) -> None:
        """Append the event's line."""
        self._file.write(event.line + b"\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class ApiTarget:
    """The ingest API through the batching SDK client."""

    def __init__(self, client: IngestClient) -> None:
        self.client = client

    def write(self, event: GeneratedEvent) -> None:
        """Queue the line in the SDK."""
        self.client.send_line(event.line)

    def close(self) -> None:
        """Flush the SDK (raises if events were given up) and close it."""
        self.client.close()
        stats = self.client.stats
        if stats.failed:
            raise RuntimeError(f"{stats.failed} events were not acknowledged: {stats.last_error}")


class KafkaTarget:
    """Kafka directly: validated and enriched like the ingest API does, invalid ones to the DLQ."""

    def __init__(self, bootstrap: str, raw_topic: str, dlq_topic: str, batch_size: int = 1000) -> None:
        self._producer = Producer(producer_config(bootstrap, delivery_timeout_s=KAFKA_FLUSH_TIMEOUT_S))
        self.raw_topic, self.dlq_topic, self.batch_size = raw_topic, dlq_topic, batch_size
        self._pending: list[bytes] = []
        self.errors: list[str] = []

    def write(self, event: GeneratedEvent) -> None:
        """Buffer the line; a full buffer is validated and produced."""
        self._pending.append(event.line)
        if len(self._pending) >= self.batch_size:
            self._produce()

    def _produce(self) -> None:
        items = line_items(b"\n".join(self._pending))
        self._pending = []
        batch = process_items(items, datetime.now(UTC), "lakepulse-generator")
        for topic, records in ((self.raw_topic, batch.raw_records), (self.dlq_topic, batch.dlq_records)):
            for record in records:
                self._produce_one(topic, record.key, record.value)
        self._producer.poll(0)

    def _produce_one(self, topic: str, key: bytes | None, value: bytes) -> None:
        for _ in range(1000):  # bounded wait while librdkafka's local queue drains
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)
        raise RuntimeError("Kafka producer queue stayed full")

    def _on_delivery(self, error: object, _message: object) -> None:
        if error is not None and len(self.errors) < 100:
            self.errors.append(str(error))

    def close(self) -> None:
        """Produce the rest and wait for Kafka to acknowledge everything."""
        if self._pending:
            self._produce()
        left = self._producer.flush(KAFKA_FLUSH_TIMEOUT_S)
        if left or self.errors:
            raise RuntimeError(f"Kafka did not acknowledge {left} events; errors: {self.errors[:3]}")


def paced(
    events: Iterable[GeneratedEvent],
    config: GeneratorConfig,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[GeneratedEvent]:
    """Release each event when the wall clock reaches its send time (never later than the run's end)."""
    started = clock()
    start = config.window_start
    for event in events:
        due = min((event.emit_at - start).total_seconds() / config.time_scale, config.duration_s)
        wait = due - (clock() - started)
        if wait > 0:
            sleep(wait)
        yield event


def run(events: Iterable[GeneratedEvent], target: Target, on_event: Callable[[], None] | None = None) -> Counter[str]:
    """Write every event to the target and close it; returns the count of events by kind."""
    counts: Counter[str] = Counter()
    try:
        for event in events:
            target.write(event)
            counts[event.kind] += 1
            if on_event is not None:
                on_event()
    finally:
        target.close()
    return counts
