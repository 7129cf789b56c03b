"""Python SDK for the ingest API: a batching client that retries until the API has acknowledged.

    with IngestClient("http://127.0.0.1:8001", token=producer_token) as client:
        client.send({"tenant_id": "rest-1", "event_type": "page_view", ...})
    # leaving the block flushes; client.stats tells what was accepted, rejected or given up

`token` is the producer's bearer JWT (`lakepulse token --role producer --tenant rest-1` locally), or a function
returning the current one (called per request, so a client outliving one token can renew it). An event of a
tenant the token may not write comes back rejected (`tenant_not_allowed: ...`); a missing or bad token is a
401, which fails the batch without retries.

Events get a client-side `event_id` when they lack one, so a retried batch is a no-op downstream.
Batches go out as NDJSON when `batch_size` events are waiting or the oldest has waited `flush_interval_s`.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
MAX_KEPT_REJECTIONS = 1000


class BufferFullError(RuntimeError):
    """The client holds `max_buffer` unsent events; the API is slow or unreachable."""


class DeliveryError(RuntimeError):
    """Some events were given up after the retries were exhausted or the API refused the batch."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event the API refused, with its reason."""

    event_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The API's answer to one batch."""

    accepted_ids: list[str]
    rejections: list[Rejection]


@dataclass(slots=True)
class ClientStats:
    """Running totals of one client."""

    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    requests: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _Buffer:
    lines: deque[bytes] = field(default_factory=deque)
    oldest_at: float = 0.0
    in_flight: int = 0
    flush_requested: bool = False
    closing: bool = False


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, retry_after: str | None, rng: random.Random
) -> float:
    """Seconds before retry `attempt` (from 1): Retry-After if given, else capped jittered exponential."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), cap_s)
    return min(cap_s, base_s * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


def with_event_id(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with an event_id, assigned here when absent so that retries stay idempotent."""
    if event.get("event_id"):
        return dict(event)
    return {**event, "event_id": str(uuid.uuid4())}


def parse_batch_result(content: bytes, lines: list[bytes]) -> BatchResult:
    """Accepted ids and rejections from a 202 body (indices refer to `lines`)."""
    body = orjson.loads(content)
    accepted: list[str] = []
    rejections: list[Rejection] = []
    for result in body["results"]:
        if result["status"] == "accepted":
            accepted.append(result["event_id"])
        else:
            rejections.append(Rejection(result.get("event_id"), result.get("reason", "")))
    return BatchResult(accepted, rejections)


class IngestClient:
    """Thread-safe batching client; `send` never blocks on the network, `flush` waits for the API."""

    def __init__(
        self,
        base_url: str,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 0.2,
        max_buffer: int = 100_000,
        max_retries: int = 8,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        timeout_s: float = 30.0,
        senders: int = 2,
        compress: bool = False,
        on_result: Callable[[BatchResult], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        token: str | Callable[[], str] | None = None,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size or senders < 1:
            raise ValueError("need batch_size >= 1, max_buffer >= batch_size and senders >= 1")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.compress = compress
        self.on_result = on_result
        self._token = token
        self.rejections: deque[Rejection] = deque(maxlen=MAX_KEPT_REJECTIONS)
        self._stats = ClientStats()
        self._failed_at_last_flush = 0
        self._buffer = _Buffer()
        self._changed = threading.Condition()
        self._rng = random.Random()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            headers={"user-agent": "lakepulse-sdk/1.0"},
        )
        self._senders = [
            threading.Thread(target=self._send_forever, name=f"lakepulse-sender-{n}", daemon=True)
            for n in range(senders)
        ]
        for sender in self._senders:
            sender.start()

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the running totals."""
        with self._changed:
            return replace(self._stats)

    def send(self, event: Mapping[str, Any]) -> str:
        """Queue one event; returns its event_id. Raises BufferFullError when the buffer is full."""
        complete = with_event_id(event)
        self.send_line(orjson.dumps(complete))
        return str(complete["event_id"])

    def send_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue several events; returns their event_ids."""
        return [self.send(event) for event in events]

    def send_line(self, line: bytes) -> None:
        """Queue one already serialised event (one NDJSON line, sent as is)."""
        with self._changed:
            buffer = self._buffer
            if buffer.closing:
                raise RuntimeError("client is closed")
            if len(buffer.lines) + buffer.in_flight >= self.max_buffer:
                raise BufferFullError(
                    f"{self.max_buffer} events are waiting for the ingest API "
                    f"(last error: {self._stats.last_error or 'none'}); call flush() or raise max_buffer"
                )
            if not buffer.lines:
                buffer.oldest_at = time.monotonic()
            buffer.lines.append(line)
            # Wake a sender for a full batch, or for the first line so its flush timer starts.
            if len(buffer.lines) in (1, self.batch_size):
                self._changed.notify()

    def flush(self, timeout_s: float | None = None) -> ClientStats:
        """Send everything queued and wait for the answers; raises DeliveryError if events were given up."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            self._buffer.flush_requested = True
            self._changed.notify_all()
            while self._buffer.lines or self._buffer.in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{len(self._buffer.lines) + self._buffer.in_flight} events still unsent"
                    )
                self._changed.wait(remaining)
            self._buffer.flush_requested = False
            failed_now = self._stats.failed - self._failed_at_last_flush
            self._failed_at_last_flush = self._stats.failed
            snapshot = replace(self._stats)
        if failed_now:
            raise DeliveryError(f"{failed_now} events were given up; last error: {snapshot.last_error}")
        return snapshot

    def close(self) -> None:
        """Flush, then stop the sender threads and the HTTP client."""
        try:
            self.flush()
        finally:
            with self._changed:
                self._buffer.closing = True
                self._changed.notify_all()
            for sender in self._senders:
                sender.join(timeout=self.max_backoff_s + 1)
            self._http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _take_batch(self) -> list[bytes] | None:
        """Wait until a batch is due and take it; None when the client is closing and nothing is left."""
        with self._changed:
            buffer = self._buffer
            while True:
                waiting = len(buffer.lines)
                age = time.monotonic() - buffer.oldest_at
                if waiting and (
                    waiting >= self.batch_size or buffer.flush_requested or age >= self.flush_interval_s
                ):
                    count = min(waiting, self.batch_size)
                    batch = [buffer.lines.popleft() for _ in range(count)]
                    buffer.in_flight += count
                    buffer.oldest_at = time.monotonic()
                    return batch
                if buffer.closing:
                    return None
                self._changed.wait(self.flush_interval_s if waiting else 1.0)

    def _send_forever(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                result, error = self._post_with_retries(batch)
            except Exception as unexpected:  # a sender thread must survive anything to keep its promise
                result, error = None, f"{type(unexpected).__name__}: {unexpected}"
            with self._changed:
                self._buffer.in_flight -= len(batch)
                if result is None:
                    self._stats.failed += len(batch)
                    self._stats.last_error = error
                else:
                    self._stats.accepted += len(result.accepted_ids)
                    self._stats.rejected += len(result.rejections)
                    self.rejections.extend(result.rejections)
                self._changed.notify_all()
            if result is not None and self.on_result is not None:
                self.on_result(result)

    def _post_with_retries(self, batch: list[bytes]) -> tuple[BatchResult | None, str | None]:
        """POST one batch until a 202, a non-retryable answer, or the retries run out."""
        body = b"\n".join(batch)
        headers = {"content-type": "application/x-ndjson"}
        if isinstance(self._token, str):
            headers["authorization"] = f"Bearer {self._token}"
        if self.compress:
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        error = "not sent"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self._changed:
                    self._stats.requests += 1
                if callable(self._token):  # asked per attempt: a retry after a renewal sends the new token
                    headers["authorization"] = f"Bearer {self._token()}"
                response = self._http.post("/v1/events", content=body, headers=headers)
                if response.status_code == 202:
                    return parse_batch_result(response.content, batch), None
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE_STATUSES:
                    return None, error
                retry_after = response.headers.get("retry-after")
            except httpx.TransportError as transport_error:
                error = f"{type(transport_error).__name__}: {transport_error}"
            if attempt == self.max_retries:
                break
            with self._changed:
                self._stats.retries += 1
                self._stats.last_error = error
            time.sleep(backoff_delay(attempt + 1, self.backoff_s, self.max_backoff_s, retry_after, self._rng))
        return None, f"gave up after {self.max_retries} retries: {error}"
