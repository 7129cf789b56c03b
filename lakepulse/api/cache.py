"""A short-lived cache of answers: identical reads of one tenant within `ttl_s` share one engine query.

Dashboards poll: thousands of viewers of one restaurant ask the same question every few seconds, and the
answer cannot change faster than the speed layer updates (about a second). The key always holds the tenant
the request was authorised for, so one tenant's answer is never served to another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final

from lakepulse.api.shared_answers import SharedAnswers

log = logging.getLogger(__name__)

MAX_ENTRIES: Final = 10_000  # answers are a few kB to a few hundred kB; the oldest go first
# Refreshes ahead of expiry run here, a few at a time: they are engine reads, and a queued one still serves the
# answer it replaces until that expires (then stale, see the class).
REFRESH_WORKERS: Final = 4


class AnswerCache:
    """`get(key, compute)`: the answer computed for `key` less than `ttl_s` ago, else `compute()` (stored).

    Single flight: while one request computes a key, the others asking for it do not send the same query to the
    engine (measured: at 100 req/s of expiring keys Trino ran 348 queries where 225 were needed). They get the
    expired answer if it expired less than `stale_s` ago, else they wait for the new one. Without that, every
    read of a busy key waited for its recomputation once per TTL: 0.1-0.7 s for an active restaurant's live
    state, which made the p95 of cached dashboard reads (BENCHMARKS.md, session 13). `stale_s=0` always waits.

    Refresh ahead: a `get` that finds an answer with less than `refresh_ahead_s` left returns it and recomputes
    the key in the background, so a key read steadily is replaced before it expires and nobody waits for it.
    The refresh uses that request's `compute`, built for the request at hand (a "last hour" is the last hour
    now); `peek` has none, so it leaves such a key to `get` (the route). Answers are never older than `ttl_s`.
    """

    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, stale_s: float = 0.0,
                 refresh_ahead_s: float = 0.0, refresher: Executor | None = None,
                 shared: SharedAnswers | None = None) -> None:
        self._ttl_s = ttl_s
        self._stale_s = stale_s
        self._refresh_ahead_s = min(refresh_ahead_s, ttl_s)
        self._refresher = refresher
        self._shared = shared
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._in_flight: dict[Hashable, threading.Lock] = {}
        # Due keys whose refresh a request was sent on to the route for (see peek).
        self._claimed: set[Hashable] = set()
        self._lock = threading.Lock()

    def _fresh(self, key: Hashable) -> tuple[bool, Any]:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return True, hit[1]
        return False, None

    def _due(self, key: Hashable) -> bool:
        """Whether the fresh answer of `key` should be recomputed ahead of its expiry, and nobody is yet."""
        hit = self._entries.get(key)
        return (self._refresh_ahead_s > 0 and hit is not None and key not in self._in_flight
                and hit[0] - self._clock() < self._refresh_ahead_s)

    def _stale_while_computed(self, key: Hashable) -> tuple[bool, Any]:
        """The expired answer of `key` while another request computes the new one (at most `stale_s` old)."""
        hit = self._entries.get(key)
        if hit is not None and key in self._in_flight and hit[0] + self._stale_s > self._clock():
            return True, hit[1]
        return False, None

    def peek(self, key: Hashable) -> Any:
        """The answer cached for `key` if fresh (or being recomputed, see the class), else None (nothing is
        computed)."""
        with self._lock:
            found, answer = self._fresh(key)
            if found:
                if self._due(key) and key not in self._claimed:
                    # This one request goes on to the route, whose get starts the refresh; the others get the
                    # answer meanwhile (at 2,000 req/s, 5-13 % of all requests went through routing while a
                    # refresh was due and not yet started). A claim whose request never reaches get (refused on
                    # the way) ends when the key is next computed: the key then expires as without refresh.
                    self._claimed.add(key)
                    return None
                return answer
            return self._stale_while_computed(key)[1]

    def get(self, key: Hashable, compute: Callable[[], Any], keep: Callable[[Any], bool] | None = None) -> Any:
        """The cached answer or a fresh one; errors are never cached (the next request tries again), nor answers
        `keep` refuses (e.g. too large to hold)."""
        if self._ttl_s <= 0:
            return compute()
        with self._lock:
            found, answer = self._fresh(key)
            if found and self._due(key):
                self._claimed.discard(key)
                flight = self._in_flight[key] = threading.Lock()
                flight.acquire()  # released by the refresh, whichever thread runs it
                self._refresh_later(key, compute, keep, flight)
            if not found:
                found, answer = self._stale_while_computed(key)
            if found:
                return answer
            flight = self._in_flight.setdefault(key, threading.Lock())
        # One computation per key at a time, outside the cache's lock: other keys are not held up.
        with flight:
            with self._lock:
                found, answer = self._fresh(key)  # computed by the request we waited for
            if found:
                return answer
            return self._compute(key, compute, keep)

    def _compute(self, key: Hashable, compute: Callable[[], Any], keep: Callable[[Any], bool] | None) -> Any:
        """`compute()` stored under `key` (if `keep` agrees), and the flight of `key` ended, also on failure."""
        try:
            if self._shared is None:
                answer, age = compute(), 0.0
            else:
                answer, age = self._shared.get_or_compute(key, compute, self._refresh_ahead_s)
        except BaseException:
            with self._lock:
                self._in_flight.pop(key, None)
            raise
        with self._lock:  # stored before the flight ends, so no request in between starts another
            if keep is None or keep(answer):
                self._entries[key] = (self._clock() + self._ttl_s - age, answer)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._claimed.discard(self._entries.popitem(last=False)[0])
            self._claimed.discard(key)
            self._in_flight.pop(key, None)
        return answer

    def _refresh_later(self, key: Hashable, compute: Callable[[], Any], keep: Callable[[Any], bool] | None,
                       flight: threading.Lock) -> None:
        """Recompute `key` on the refresher's threads; `flight` (acquired by the caller) is released after."""

        def refresh() -> None:
            try:
                self._compute(key, compute, keep)
            except Exception:  # the answer expires as usual; the next request computes it and sees the error
                log.warning("refreshing a cached answer ahead of its expiry failed", exc_info=True)
            finally:
                flight.release()

        if self._refresher is None:
            self._refresher = ThreadPoolExecutor(REFRESH_WORKERS, thread_name_prefix="lakepulse-refresh")
        try:
            self._refresher.submit(refresh)
        except RuntimeError:  # the pool is shut down (the process is exiting): no refresh, and no flight left
            self._in_flight.pop(key, None)  # held: the caller holds the cache's lock
            flight.release()


def request_key(path: str, tenant_id: str, params: list[tuple[str, str]]) -> Hashable:
    """The cache key of a read: its path, the authorised tenant and its query parameters (tenant dropped: the
    authorised one stands for it)."""
    return path, tenant_id, tuple(sorted((k, v) for k, v in params if k != "tenant"))
