"""The viewers of one API process and what they are sent (runs on the event loop; no locks, no Kafka).

Every event is framed once per tenant — `id: <epoch>-<seq>` and one `data:` line of JSON — and the same bytes
go to each of that tenant's viewers: written at once when its response is idle (Viewer.writer), else appended
to its mailbox. A mailbox holds at most `queue_size` chunks (one chunk: everything one delivery had for the
tenant); a viewer whose mailbox is full is not keeping up and is dropped, so the process never waits for a slow
client. Each tenant keeps its recent frames so that a viewer
reconnecting with `Last-Event-ID` gets what it missed; when that is no longer possible it is sent a `reset`
event instead (refetch the state, then carry on).

`seq` counts one tenant's events in this process and `epoch` names the process's hub, so an id from another
worker or an earlier run is recognised as unknown rather than misread.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from lakepulse.api.push.shapes import encode

log = logging.getLogger(__name__)

# Resume: the last RESUME_EVENTS events of each tenant, and none older than RESUME_MAX_AGE_S (a browser's
# EventSource reconnects within seconds; a longer gap is cheaper as a reset and a snapshot read).
RESUME_EVENTS: Final = 256
RESUME_MAX_AGE_S: Final = 120.0
# The first bytes of every stream: the reconnection delay a browser should use, and a comment, so the client
# sees the stream is open before the first event.
OPENING: Final = b"retry: 3000\n: connected\n\n"


class ViewerCapReached(Exception):
    """The process serves as many viewers as it may: 503 with Retry-After."""


def frame(epoch: str, seq: int, body: bytes) -> bytes:
    """One SSE event: its id and its JSON on one data line (the JSON holds no newline)."""
    return b"id: %s-%d\ndata: %s\n\n" % (epoch.encode(), seq, body)


def parse_event_id(value: str | None) -> tuple[str, int] | None:
    """`<epoch>-<seq>` → (epoch, seq); None when absent or not of that form."""
    if not value:
        return None
    epoch, _, seq = value.strip().rpartition("-")
    if not epoch or not seq.isdigit() or len(seq) > 18:
        return None
    return epoch, int(seq)


class Viewer:
    """One connection's bounded mailbox of pre-framed chunks, emptied by its response.

    While the response is idle it sets `writer`: a chunk offered then is written at once by that function, on the
    fan-out's turn of the loop, instead of being queued and waking the response's task (at 10,000 viewers the
    wake-ups, and the garbage they leave for the collector, cost more than the writes). Chunks are queued while
    the response is busy, i.e. still writing an earlier chunk to a client that reads slowly."""

    __slots__ = ("tenant_id", "capacity", "closed", "dropped", "on_drop", "writer", "_chunks", "_waiter")

    def __init__(self, tenant_id: str, capacity: int) -> None:
        self.tenant_id = tenant_id
        self.capacity = capacity
        self.closed = False
        self.dropped = False
        # Set by the response: ends it even while it waits for a client that does not read.
        self.on_drop: Callable[[], None] | None = None
        # Set by the response while it is idle (nothing queued, no write under way); see the class docstring.
        self.writer: Callable[[bytes], None] | None = None
        self._chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, chunk: bytes) -> bool:
        """Write `chunk` now (an idle response) or queue it; False (and nothing done) when the mailbox is full or
        closed."""
        if self.closed or len(self._chunks) >= self.capacity:
            return False
        if self.writer is not None and not self._chunks:
            self.writer(chunk)
            return True
        self._chunks.append(chunk)
        self.wake()
        return True

    def close(self) -> None:
        """No more chunks: the response ends after what is queued."""
        self.closed = True
        self.writer = None
        self.wake()

    def drop(self) -> None:
        """Disconnect: forget what is queued and end the response now."""
        self.dropped = True
        self._chunks.clear()
        self.close()
        if self.on_drop is not None:
            self.on_drop()

    def wake(self) -> None:
        """End the response's `wait` (something is queued, the viewer is closed, or the response has work)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def queued(self) -> int:
        """Chunks waiting to be sent."""
        return len(self._chunks)

    def take(self) -> bytes | None:
        """Everything queued, as one chunk; None when nothing is."""
        if not self._chunks:
            return None
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        return chunk

    async def wait(self) -> None:
        """Until `wake` (returns at once when something is queued or the viewer is closed)."""
        if self._chunks or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def next_chunk(self) -> bytes | None:
        """Everything queued, as one chunk, once there is something; None when closed and empty."""
        while (chunk := self.take()) is None:
            if self.closed:
                return None
            await self.wait()
        return chunk


@dataclass(slots=True)
class _Framed:
    seq: int
    at: float
    data: bytes


class ResumeBuffer:
    """One tenant's recent frames by seq, for `Last-Event-ID`."""

    def __init__(self, size: int = RESUME_EVENTS) -> None:
        self._frames: deque[_Framed] = deque(maxlen=size)

    def append(self, seq: int, data: bytes, at: float) -> None:
        """Keep the frame of event `seq` (seqs only grow), forgetting the oldest beyond the size."""
        self._frames.append(_Framed(seq, at, data))

    def since(self, last_seq: int, current_seq: int) -> list[bytes] | None:
        """The frames after `last_seq` when the buffer still holds all of them (none when the viewer is current);
        None when some are gone or `last_seq` is not one this tenant has reached."""
        if last_seq == current_seq:
            return []
        if last_seq > current_seq or not self._frames or self._frames[0].seq > last_seq + 1:
            return None
        return [f.data for f in self._frames if f.seq > last_seq]

    def prune(self, before: float) -> None:
        """Forget frames kept before the time `before`."""
        while self._frames and self._frames[0].at < before:
            self._frames.popleft()

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class FanoutStats:
    """Counters of one process's push."""

    viewers: int
    tenants_viewed: int
    tenants_buffered: int
    events: int
    dropped: int
    refused: int
    resets: int


class Fanout:
    """The viewers of one process by tenant, each tenant's event count and recent frames; `deliver` frames and
    queues updates. Every method is called on the event loop's thread."""

    def __init__(self, max_viewers: int, queue_size: int, resume_events: int = RESUME_EVENTS,
                 resume_max_age_s: float = RESUME_MAX_AGE_S, clock: Callable[[], float] = time.monotonic,
                 epoch: str | None = None) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self.max_viewers = max_viewers
        self.queue_size = queue_size
        self._resume_events = resume_events
        self._resume_max_age_s = resume_max_age_s
        self._clock = clock
        self._viewers: dict[str, set[Viewer]] = {}
        self._count = 0
        self._seq: dict[str, int] = {}
        self._buffers: dict[str, ResumeBuffer] = {}
        self._next_prune = clock() + resume_max_age_s
        self._events = self._dropped = self._refused = self._resets = 0

    @property
    def viewer_count(self) -> int:
        """Viewers connected to this process."""
        return self._count

    def viewers_of(self, tenant_id: str) -> int:
        """Viewers of one tenant."""
        return len(self._viewers.get(tenant_id, ()))

    def subscribe(self, tenant_id: str, last_event_id: str | None = None) -> tuple[Viewer, bytes]:
        """A new viewer of `tenant_id` and the bytes to send it first: the opening, then the events it missed
        since `last_event_id` or a `reset` event when they cannot be replayed. ViewerCapReached at the cap."""
        if self._count >= self.max_viewers:
            self._refused += 1
            raise ViewerCapReached(f"this API process serves {self.max_viewers} live viewers already")
        viewer = Viewer(tenant_id, self.queue_size)
        self._viewers.setdefault(tenant_id, set()).add(viewer)
        self._count += 1
        return viewer, OPENING + b"".join(self._backlog(tenant_id, last_event_id))

    def _backlog(self, tenant_id: str, last_event_id: str | None) -> list[bytes]:
        if not last_event_id:
            return []
        current = self._seq.get(tenant_id, 0)
        parsed = parse_event_id(last_event_id)
        missed: list[bytes] | None = None
        if parsed is not None and parsed[0] == self.epoch:
            buffer = self._buffers.get(tenant_id)
            missed = (buffer.since(parsed[1], current) if buffer is not None
                      else [] if parsed[1] == current else None)
        if missed is not None:
            return missed
        self._resets += 1
        # The reset carries the current id, so that a reconnect after it resumes from here.
        return [frame(self.epoch, current, encode({"type": "reset", "tenant": tenant_id,
                                                  "reason": "missed events are no longer available"}))]

    def unsubscribe(self, viewer: Viewer) -> None:
        """Forget `viewer` (any number of times)."""
        viewers = self._viewers.get(viewer.tenant_id)
        if viewers is None or viewer not in viewers:
            return
        viewers.discard(viewer)
        self._count -= 1
        if not viewers:
            del self._viewers[viewer.tenant_id]

    def _drop(self, viewer: Viewer) -> None:
        self.unsubscribe(viewer)
        self._dropped += 1
        log.info("dropped a live viewer of %s: %d updates queued and unsent", viewer.tenant_id, viewer.queued)
        viewer.drop()

    def deliver(self, updates: Iterable[tuple[str, bytes]]) -> None:
        """Frame each (tenant, JSON body) once, keep it for resume, and queue each tenant's frames of this delivery
        as one chunk to each of its viewers; a viewer with a full mailbox is dropped."""
        now = self._clock()
        framed: dict[str, list[bytes]] = {}
        for tenant_id, body in updates:
            seq = self._seq.get(tenant_id, 0) + 1
            self._seq[tenant_id] = seq
            data = frame(self.epoch, seq, body)
            buffer = self._buffers.get(tenant_id)
            if buffer is None:
                buffer = self._buffers[tenant_id] = ResumeBuffer(self._resume_events)
            buffer.append(seq, data, now)
            framed.setdefault(tenant_id, []).append(data)
            self._events += 1
        for tenant_id, frames in framed.items():
            viewers = self._viewers.get(tenant_id)
            if viewers:
                self._offer(viewers, frames[0] if len(frames) == 1 else b"".join(frames))
        if now >= self._next_prune:
            self._prune(now)

    def _offer(self, viewers: set[Viewer], chunk: bytes) -> None:
        slow = [viewer for viewer in viewers if not viewer.offer(chunk)]
        for viewer in slow:
            self._drop(viewer)

    def reset_all(self, reason: str) -> None:
        """Updates were lost (the loop fell too far behind): every tenant's resume buffer is cleared and its count
        moved on, so no resume can skip the gap, and every viewer is sent a `reset`."""
        for tenant_id in set(self._seq) | set(self._viewers):
            self._seq[tenant_id] = seq = self._seq.get(tenant_id, 0) + 1
            viewers = self._viewers.get(tenant_id)
            if viewers:
                self._resets += len(viewers)
                self._offer(viewers, frame(self.epoch, seq, encode({"type": "reset", "tenant": tenant_id,
                                                                   "reason": reason})))
        self._buffers.clear()

    def _prune(self, now: float) -> None:
        before = now - self._resume_max_age_s
        for tenant_id in list(self._buffers):
            buffer = self._buffers[tenant_id]
            buffer.prune(before)
            if not buffer:
                del self._buffers[tenant_id]
        self._next_prune = now + self._resume_max_age_s / 4

    def close_all(self) -> None:
        """End every viewer's stream (shutdown)."""
        for viewers in list(self._viewers.values()):
            for viewer in list(viewers):
                viewer.close()
        self._viewers.clear()
        self._count = 0

    def stats(self) -> FanoutStats:
        """The counters so far."""
        return FanoutStats(viewers=self._count, tenants_viewed=len(self._viewers), tenants_buffered=len(self._buffers),
                           events=self._events, dropped=self._dropped, refused=self._refused, resets=self._resets)

