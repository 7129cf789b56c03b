"""Kafka writer of the ingest service: produces records and reports only once Kafka has acknowledged them."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from lakepulse.ingest.processing import KafkaRecord
from lakepulse.ingest.topics import record_overhead

DEFAULT_DELIVERY_TIMEOUT_S = 5.0
# librdkafka's default message.max.bytes: it refuses a larger record locally, before any broker sees it.
LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
QUEUE_FULL_BACKOFF_S = 0.005


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge every record in time; nothing of the request may be reported as accepted."""


class EventSink(Protocol):
    """Where the ingest route writes records; swapped for a fake only in tests about the route itself."""

    async def write(self, raw: Sequence[KafkaRecord], dlq: Sequence[KafkaRecord]) -> None:
        """Write both record lists durably; raise KafkaUnavailable if that cannot be confirmed."""
        ...

    async def healthy(self) -> bool:
        """True when the cluster answers a metadata request."""
        ...

    def close(self) -> None:
        """Flush what is pending and release the client."""
        ...


def producer_config(bootstrap: str, delivery_timeout_s: float, max_event_bytes: int | None = None) -> dict[str, Any]:
    """librdkafka settings: durable (acks=all, idempotent), batched, Java-compatible key partitioning, and
    room for the largest event the service accepts (`max_event_bytes`) when that exceeds librdkafka's default."""
    room = max(LIBRDKAFKA_MESSAGE_MAX_BYTES, (max_event_bytes or 0) + record_overhead(max_event_bytes or 0))
    return {
        "message.max.bytes": room,
        "bootstrap.servers": bootstrap,
        "client.id": "lakepulse-ingest",
        "acks": "all",
        "enable.idempotence": True,
        # Messages still queued when a request gives up expire too, so a 503 rarely leaves a stray copy.
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        # Same partition for a key as Java clients (Kafka Connect, Spark) would choose.
        "partitioner": "murmur2_random",
    }


class _Delivery:
    """Counts the delivery reports of one request and resolves an asyncio future when all have arrived."""

    __slots__ = ("_lock", "_loop", "error", "future", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self.remaining = expected
        self.error: str | None = None
        self.future: asyncio.Future[None] = loop.create_future()

    def on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        """Delivery callback, run on the poll thread once per record (so kept short)."""
        if error is not None:
            self.settle(1, str(error))
            return
        with self._lock:
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def settle(self, count: int, error: str | None) -> None:
        """Account for `count` records that are done (delivered, or failed with `error`)."""
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self.remaining -= count
            done = self.remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class KafkaSink:
    """confluent-kafka producer shared by all requests of a process, with one thread serving callbacks."""

    def __init__(
        self,
        bootstrap: str,
        raw_topic: str,
        dlq_topic: str,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        max_event_bytes: int | None = None,
    ) -> None:
        self.raw_topic = raw_topic
        self.dlq_topic = dlq_topic
        self.delivery_timeout_s = delivery_timeout_s
        self._producer = Producer(producer_config(bootstrap, delivery_timeout_s, max_event_bytes))
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def write(self, raw: Sequence[KafkaRecord], dlq: Sequence[KafkaRecord]) -> None:
        """Produce all records and wait for Kafka's acknowledgement of every one."""
        total = len(raw) + len(dlq)
        if total == 0:
            return
        delivery = _Delivery(asyncio.get_running_loop(), total)
        deadline = time.monotonic() + self.delivery_timeout_s
        outgoing = itertools.chain(((self.raw_topic, r) for r in raw), ((self.dlq_topic, r) for r in dlq))
        for position, (topic, record) in enumerate(outgoing):
            try:
                # Produce in a plain loop; only a full local queue costs a coroutine and a wait.
                queued = self._produce_now(topic, record, delivery) or await self._produce_when_room(
                    topic, record, delivery, deadline
                )
            except KafkaUnavailable:
                # Wait for the reports of what was queued before giving up, so none fires into a dead request.
                delivery.settle(total - position, "refused")
                await asyncio.wait_for(asyncio.shield(delivery.future), self.delivery_timeout_s + 5)
                raise
            if not queued:
                delivery.settle(total - position, "local producer queue stayed full")
                break
        try:
            # Reports arrive within message.timeout.ms; the margin only guards against a lost callback.
            await asyncio.wait_for(asyncio.shield(delivery.future), self.delivery_timeout_s + 5)
        except TimeoutError as error:
            raise KafkaUnavailable("Kafka did not report delivery in time") from error
        if delivery.error is not None:
            raise KafkaUnavailable(f"Kafka did not acknowledge every event: {delivery.error}")

    def _produce_now(self, topic: str, record: KafkaRecord, delivery: _Delivery) -> bool:
        """Queue one record without waiting; False when librdkafka's local queue is full."""
        try:
            self._producer.produce(topic, record.value, record.key, on_delivery=delivery.on_delivery)
        except KafkaException as error:
            # e.g. unknown topic: Kafka cannot take the record now; the request must not be acknowledged.
            raise KafkaUnavailable(f"Kafka refused the event: {error.args[0].str()}") from error
        except BufferError:
            return False
        return True

    async def _produce_when_room(self, topic: str, record: KafkaRecord, delivery: _Delivery, deadline: float) -> bool:
        """Queue one record once the local queue has room; False once the deadline has passed."""
        while time.monotonic() < deadline:
            await asyncio.sleep(QUEUE_FULL_BACKOFF_S)
            if self._produce_now(topic, record, delivery):
                return True
        return False

    async def healthy(self) -> bool:
        """True when the cluster answers a metadata request within a second."""
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=1.0)
        except KafkaException:
            return False
        return True

    def close(self) -> None:
        """Flush pending records (bounded) and stop the poll thread."""
        self._producer.flush(self.delivery_timeout_s)
        self._stop.set()
        self._poller.join(timeout=2)
