"""One Kafka consumer per API process reading the speed layer's topics for the push, in a thread of its own.

The consumer joins no group: it is assigned every partition of every topic, with a group id of its own that it
never commits, so every API worker on every host reads every record (a shared group would split the
partitions, and each viewer would see only its worker's share). It starts at the end of each topic, except for
`metrics.minute`, which it replays from KEEP_MINUTES back so that a minute's total counts rows written before
the process started; replayed records rebuild that state and push nothing.

Each batch of records is shaped and coalesced (shapes.Shaper), each update serialised once, and the list of
(tenant, JSON) handed to `sink` — the hub, which passes it to the event loop. Nothing here waits for viewers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from lakepulse.api.push.shapes import Shaper, encode
from lakepulse.catalog import Catalog
from lakepulse.settings import Settings

log = logging.getLogger(__name__)

Sink = Callable[[list[tuple[str, bytes]]], None]
# One poll waits this long for the first record, then takes what else is already fetched (up to MAX_BATCH):
# a lone update goes out at once, a burst in one piece.
POLL_S: Final = 0.5
MAX_BATCH: Final = 5000
KAFKA_TIMEOUT_S: Final = 10.0
# A broker that is down (or topics not created yet) is retried with a growing pause, up to this.
MAX_BACKOFF_S: Final = 30.0


class KafkaFeed:
    """The push's consumer thread: `start` once, `stop` at shutdown; `ready` is set while it is assigned."""

    def __init__(self, settings: Settings, sink: Sink, catalog: Catalog | None = None) -> None:
        self._settings = settings
        self._sink = sink
        self.shaper = Shaper(settings, catalog)
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live_from_ms = 0  # records of metrics.minute written before it are a replay
        self.records = 0

    def start(self) -> None:
        """Start the thread (a second call does nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="lakepulse-push-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = KAFKA_TIMEOUT_S) -> None:
        """Ask the thread to stop and wait for it (bounded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            consumer: Consumer | None = None
            try:
                consumer = self._consumer()
                self._assign(consumer)
                self.ready.set()
                backoff = 1.0
                self._consume(consumer)
            except (KafkaException, RuntimeError) as exc:
                log.warning("live push feed: %s; retrying in %.0f s", exc, backoff)
            except Exception:  # never let the thread die silently: the push would stop for good
                log.exception("live push feed failed; retrying in %.0f s", backoff)
            finally:
                self.ready.clear()
                if consumer is not None:
                    consumer.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self._settings.kafka_bootstrap,
            # Never committed, never shared: see the module docstring.
            "group.id": f"lakepulse-api-push-{uuid.uuid4().hex}",
            "client.id": "lakepulse-api-push",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 100,
        })

    def _assign(self, consumer: Consumer) -> None:
        """Assign every partition: `metrics.minute` from the replay start, the others from their current end."""
        start = time.time()
        replay_from = datetime.fromtimestamp(start, UTC) - self.shaper.minutes.keep
        self.shaper.minutes.restart(replay_from)
        self._live_from_ms = int(start * 1000)
        topics = consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics
        assignment: list[TopicPartition] = []
        for topic in self.shaper.topics:
            metadata = topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise RuntimeError(f"topic {topic} does not exist (yet)")
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            if topic == self._settings.topic_metrics_minute:
                since_ms = int(replay_from.timestamp() * 1000)
                partitions = consumer.offsets_for_times([TopicPartition(topic, tp.partition, since_ms)
                                                         for tp in partitions], timeout=KAFKA_TIMEOUT_S)
            # Concrete offsets: OFFSET_END would resolve at the first fetch and skip what came in between.
            assignment += [tp if tp.offset >= 0 else TopicPartition(
                topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT_S)[1])
                for tp in partitions]
        consumer.assign(assignment)
        log.info("live push feed assigned %d partitions of %s", len(assignment), ", ".join(self.shaper.topics))

    def _consume(self, consumer: Consumer) -> None:
        while not self._stop.is_set():
            first = consumer.poll(POLL_S)
            if first is None:
                self._flush()
                continue
            batch: list[Message] = [first, *consumer.consume(MAX_BATCH - 1, timeout=0)]
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("live push feed: %s", error)
                    continue
                self.records += 1
                _, timestamp_ms = message.timestamp()
                topic = message.topic()
                if topic is not None:
                    replay = topic == self._settings.topic_metrics_minute and timestamp_ms < self._live_from_ms
                    self.shaper.add(topic, message.value(), emit=not replay)
            self._flush()

    def _flush(self) -> None:
        updates = self.shaper.flush(datetime.now(UTC))
        if updates:
            self._sink([(update.tenant_id, encode(update.event)) for update in updates])
