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
    """`get(key, compute)`: the answer computed for `key` less than `ttl_s` ago, else `compute()` (stored)."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached answer or a fresh one; errors are never cached (the next request tries again)."""
        if self._ttl_s <= 0:
            return compute()
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        answer = compute()  # outside the lock: other keys are not held up by a slow engine
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl_s, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return answer


def request_key(path: str, tenant_id: str, params: list[tuple[str, str]]) -> Hashable:
    """The cache key of a read: its path, the authorised tenant and its query parameters (tenant dropped: the
    authorised one stands for it)."""
    return path, tenant_id, tuple(sorted((k, v) for k, v in params if k != "tenant"))
