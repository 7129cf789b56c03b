"""A per-caller request budget for the metrics API: token buckets, refused with 429 and Retry-After.

Each caller (a tenant, or an analyst/admin token's subject) has a bucket of `burst` tokens that refills at
`rate` per second; a request takes one token. The buckets live in the process: with several uvicorn workers
each holds `1/workers` of the budget, so the whole API still allows about `rate` per caller.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar, Final

from lakepulse.auth.tokens import Principal

# Callers come from verified tokens, so the key space is small; the cap only bounds memory if a token
# issuer mints many subjects. The least recently seen bucket goes first (it is the likeliest to be full).
MAX_CALLERS: Final = 100_000


def caller_key(principal: Principal) -> str:
    """Whose budget a request spends: a restaurant's (all its tokens share one), else the token subject's."""
    if principal.tenant_id is not None:
        return f"tenant:{principal.tenant_id}"
    return f"{principal.role}:{principal.subject}"


class RateLimited(Exception):
    """429: this caller spent its budget; `retry_after_s` says when one more request will be allowed."""

    status_code: ClassVar[int] = 429

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many requests for this tenant; slow down and retry after the Retry-After delay")
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        """Whole seconds (RFC 9110 §10.2.3), at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """Token buckets per caller key; `charge(key)` takes one token or raises RateLimited."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = MAX_CALLERS) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limiter needs a positive rate and a burst of at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_callers = max_callers
        # key → (tokens left, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, key: str) -> None:
        """Take one token from `key`'s bucket; RateLimited (with the wait for the next token) if it is empty."""
        with self._lock:
            now = self._clock()
            tokens, counted = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - counted) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited((1.0 - tokens) / self._rate)
            self._buckets[key] = (tokens - 1.0, now)
            while len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)


def per_worker(rate_per_s: float, burst: int, workers: int) -> RateLimiter | None:
    """This process's share of a caller's budget (None when the limit is off, rate 0)."""
    if rate_per_s <= 0:
        return None
    workers = max(1, workers)
    return RateLimiter(rate_per_s / workers, max(1, burst // workers))
