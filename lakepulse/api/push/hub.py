"""The live push of one API process: the Kafka feed (a thread) handing updates to the viewers (the event loop).

The feed starts with the first viewer, once; until then the process touches no broker. Updates cross from the
feed's thread to the loop through one pending list: however many batches arrive while the loop is busy, the
loop takes them in one delivery, so a viewer's mailbox counts the deliveries it could not keep up with, not the
feed's batches. If the loop falls so far behind that MAX_PENDING updates wait, they are discarded and every
viewer is sent a `reset` (the process stays responsive; viewers refetch the state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Final, Protocol

from lakepulse.api.push.fanout import Fanout, FanoutStats, Viewer
from lakepulse.api.push.feed import KafkaFeed, Sink
from lakepulse.settings import Settings

log = logging.getLogger(__name__)

MAX_PENDING: Final = 100_000


class Feed(Protocol):
    """What the hub needs of its feed (KafkaFeed; a fake in tests)."""

    ready: threading.Event

    def start(self) -> None: ...

    def stop(self, timeout_s: float = ...) -> None: ...


FeedFactory = Callable[[Settings, Sink], Feed]


def kafka_feed(settings: Settings, sink: Sink) -> Feed:
    """The real feed: one Kafka consumer of the speed layer's topics."""
    return KafkaFeed(settings, sink)


class PushHub:
    """Viewers of this process (`subscribe`, on the loop) and the updates they get (`publish`, from any thread)."""

    def __init__(self, settings: Settings, feed_factory: FeedFactory = kafka_feed) -> None:
        self.settings = settings
        self.fanout = Fanout(settings.sse_max_viewers, settings.sse_queue_size)
        self._feed_factory = feed_factory
        self._feed: Feed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[str, bytes]] = []
        self._scheduled = False
        self._lost = False
        self._closed = False

    @property
    def ready(self) -> bool:
        """Whether the feed is reading the topics (False before the first viewer)."""
        return self._feed is not None and self._feed.ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block (a test's or tool's thread, never the loop) until the feed reads the topics; False on timeout."""
        return self._feed is not None and self._feed.ready.wait(timeout_s)

    def subscribe(self, tenant_id: str, last_event_id: str | None = None) -> tuple[Viewer, bytes]:
        """A viewer of `tenant_id` and its first bytes (see Fanout.subscribe); on the event loop. Starts the feed
        with the first viewer. ViewerCapReached at the cap."""
        viewer, first = self.fanout.subscribe(tenant_id, last_event_id)
        self._loop = asyncio.get_running_loop()  # the server's one loop (the same at every call)
        if self._feed is None and not self._closed:
            self._feed = self._feed_factory(self.settings, self.publish)
            self._feed.start()
        return viewer, first

    def unsubscribe(self, viewer: Viewer) -> None:
        """Forget a viewer whose response ended; on the event loop."""
        self.fanout.unsubscribe(viewer)

    def publish(self, updates: list[tuple[str, bytes]]) -> None:
        """Hand (tenant, JSON) updates to the loop; from any thread, never blocking on viewers."""
        if not updates:
            return
        with self._lock:
            if len(self._pending) + len(updates) > MAX_PENDING:
                # What waits is discarded; the viewers are reset, then get what comes from here on.
                self._pending = updates[-MAX_PENDING:]
                self._lost = True
            else:
                self._pending.extend(updates)
            if self._scheduled or self._loop is None:
                return
            self._scheduled = True
            loop = self._loop
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is shutting down
            loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            updates, self._pending = self._pending, []
            lost, self._lost = self._lost, False
            self._scheduled = False
        if lost:
            log.warning("live push fell %d updates behind; every viewer is sent a reset", MAX_PENDING)
            self.fanout.reset_all("the server fell behind and discarded updates")
        self.fanout.deliver(updates)

    def stats(self) -> FanoutStats:
        """The fan-out's counters."""
        return self.fanout.stats()

    def close(self) -> None:
        """Stop the feed and end every stream (app shutdown)."""
        self._closed = True
        if self._feed is not None:
            self._feed.stop()
        self.fanout.close_all()
