"""A short-lived cache of answers: identical reads of one tenant within `ttl_s` share one engine query.

Dashboards poll: thousands of viewers of one restaurant ask the same question every few seconds, and the
answer cannot change faster than the speed layer updates (about a second). The key always holds the tenant
the request was authorised for, so one tenant's answer is never served to another.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Final

MAX_ENTRIES: Final = 10_000  # answers are a few kB to a few hundred kB; the oldest go first


class AnswerCache:
    """`get(key, compute)`: the answer computed for `key` less than `ttl_s` ago, else `compute()` (stored).

    Single flight: while one request computes a key, the others asking for it do not send the same query to the
    engine (measured: at 100 req/s of expiring keys Trino ran 348 queries where 225 were needed). They get the
    expired answer if it expired less than `stale_s` ago, else they wait for the new one. Without that, every
    read of a busy key waited for its recomputation once per TTL: 0.1-0.7 s for an active restaurant's live
    state, which made the p95 of cached dashboard reads (BENCHMARKS.md, session 13). `stale_s=0` always waits.
    """

    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, stale_s: float = 0.0) -> None:
        self._ttl_s = ttl_s
        self._stale_s = stale_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._in_flight: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def _fresh(self, key: Hashable) -> tuple[bool, Any]:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return True, hit[1]
        return False, None

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
            return answer if found else self._stale_while_computed(key)[1]

    def get(self, key: Hashable, compute: Callable[[], Any], keep: Callable[[Any], bool] | None = None) -> Any:
        """The cached answer or a fresh one; errors are never cached (the next request tries again), nor answers
        `keep` refuses (e.g. too large to hold)."""
        if self._ttl_s <= 0:
            return compute()
        with self._lock:
            found, answer = self._fresh(key)
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
            try:
                answer = compute()
            except BaseException:
                with self._lock:
                    self._in_flight.pop(key, None)
                raise
            with self._lock:  # stored before the flight ends, so no request in between starts another
                if keep is None or keep(answer):
                    self._entries[key] = (self._clock() + self._ttl_s, answer)
                    self._entries.move_to_end(key)
                    while len(self._entries) > self._max_entries:
                        self._entries.popitem(last=False)
                self._in_flight.pop(key, None)
            return answer


def request_key(path: str, tenant_id: str, params: list[tuple[str, str]]) -> Hashable:
    """The cache key of a read: its path, the authorised tenant and its query parameters (tenant dropped: the
    authorised one stands for it)."""
    return path, tenant_id, tuple(sorted((k, v) for k, v in params if k != "tenant"))
