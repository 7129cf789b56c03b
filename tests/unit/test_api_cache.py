"""The answer cache: identical reads share an answer for ttl_s, never across tenants, never an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from lakepulse.api.cache import AnswerCache, request_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Blocking:
    """A computation that says it started, then waits until released, and returns `answer`."""

    def __init__(self, answer: str) -> None:
        self.answer, self.calls = answer, 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        self.release.wait(5)
        return self.answer


def in_thread(results: list[str], read: Callable[[], str]) -> threading.Thread:
    """`read()` in a started thread, its answer appended to `results`."""
    thread = threading.Thread(target=lambda: results.append(read()))
    thread.start()
    return thread


def test_an_answer_is_reused_until_it_expires() -> None:
    clock, calls = Clock(), []
    cache = AnswerCache(1.0, clock=clock)

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", compute) == 1
    clock.now = 0.9
    assert cache.get("k", compute) == 1
    clock.now = 1.1
    assert cache.get("k", compute) == 2


def test_errors_are_not_cached_and_zero_ttl_turns_it_off() -> None:
    cache = AnswerCache(5.0, clock=Clock())

    def fail() -> int:
        raise RuntimeError("engine down")

    with pytest.raises(RuntimeError):
        cache.get("k", fail)
    assert cache.get("k", lambda: 7) == 7
    off = AnswerCache(0)
    assert [off.get("k", lambda i=i: i) for i in range(3)] == [0, 1, 2]


def test_the_oldest_entries_go_when_full() -> None:
    cache = AnswerCache(60.0, max_entries=2, clock=Clock())
    for key in ("a", "b", "c"):
        cache.get(key, lambda key=key: key)
    assert cache.get("a", lambda: "again") == "again"
    assert cache.get("c", lambda: "again") == "c"


def test_keys_hold_the_authorised_tenant_and_ignore_parameter_order() -> None:
    params = [("from", "x"), ("to", "y"), ("tenant", "rest-b")]
    assert request_key("/v1/live", "rest-a", params) != request_key("/v1/live", "rest-b", params)
    assert request_key("/v1/live", "rest-a", params) == request_key("/v1/live", "rest-a", params[::-1])
    assert request_key("/v1/live", "rest-a", params) != request_key("/v1/catalog", "rest-a", params)


def test_concurrent_requests_for_one_key_share_one_computation() -> None:
    cache, slow = AnswerCache(60.0), Blocking("answer")
    answers: list[str] = []
    first = in_thread(answers, lambda: cache.get("k", slow))
    slow.started.wait(5)
    waiters = [in_thread(answers, lambda: cache.get("k", slow)) for _ in range(5)]
    other = cache.get("other", lambda: "not held up")  # another key does not wait for the slow one
    slow.release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert other == "not held up"
    assert answers == ["answer"] * 6 and slow.calls == 1


def test_final_minute_rows_are_read_once_a_minute_unless_too_many() -> None:
    from datetime import UTC, datetime, timedelta

    from lakepulse.api.sources import FinalMinuteRows, MinuteRows

    class Counting:
        def __init__(self) -> None:
            self.calls = 0
            self.closed = False

        def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
            self.calls += 1
            rows = [{"n": i} for i in range(int((end - start) / timedelta(minutes=1)))]
            return MinuteRows(rows)

        def close(self) -> None:
            self.closed = True

    source = Counting()
    final = FinalMinuteRows(source, max_rows=100)
    t = datetime(2026, 3, 2, 9, tzinfo=UTC)
    hour, day = (t, t + timedelta(hours=1)), (t, t + timedelta(days=1))
    assert final.minute_rows("t-a", "events", *hour) == final.minute_rows("t-a", "events", *hour)
    assert source.calls == 1
    final.minute_rows("t-b", "events", *hour)  # another tenant is another read
    assert source.calls == 2
    final.minute_rows("t-a", "events", *day)
    final.minute_rows("t-a", "events", *day)  # 1,440 rows: more than max_rows, never kept
    assert source.calls == 4
    final.close()
    assert source.closed


def test_while_an_expired_key_is_recomputed_the_others_get_the_expired_answer_for_at_most_stale_s() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock, stale_s=4.0)
    assert cache.get("k", lambda: "old") == "old"
    clock.now = 2.0  # expired 1 s ago
    slow = Blocking("new")
    refreshed: list[str] = []
    waited: list[str] = []
    refresher = in_thread(refreshed, lambda: cache.get("k", slow))
    slow.started.wait(5)
    # Meanwhile: the others get the expired answer at once, from get and from peek (the fast path's read).
    assert cache.get("k", lambda: "must not run") == "old"
    assert cache.peek("k") == "old"
    clock.now = 5.5  # 4.5 s past its TTL: too old to serve; this request waits for the computation instead
    waiter = in_thread(waited, lambda: cache.get("k", lambda: "must not run"))
    assert cache.peek("k") is None
    slow.release.set()
    for t in (refresher, waiter):
        t.join(5)
    assert refreshed == ["new"] and waited == ["new"] and slow.calls == 1
    assert cache.get("k", lambda: "must not run") == "new"


def test_with_nobody_recomputing_an_expired_answer_is_never_served() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock, stale_s=4.0)
    cache.get("k", lambda: "old")
    clock.now = 1.5
    assert cache.peek("k") is None
    assert cache.get("k", lambda: "new") == "new"


class Inline:
    """An executor that runs a submitted refresh when told to, in the test's thread."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], None]] = []

    def submit(self, work: Callable[[], None]) -> None:
        self.queued.append(work)

    def run(self) -> None:
        while self.queued:
            self.queued.pop(0)()


def test_a_key_read_near_its_expiry_is_refreshed_in_the_background_and_nobody_waits() -> None:
    clock, refresher = Clock(), Inline()
    cache = AnswerCache(1.0, clock=clock, refresh_ahead_s=0.25, refresher=refresher)  # type: ignore[arg-type]
    assert cache.get("k", lambda: "first") == "first"
    clock.now = 0.5
    assert cache.peek("k") == "first" and cache.get("k", lambda: "must not run") == "first"  # not due yet
    assert not refresher.queued
    clock.now = 0.8  # 0.2 s left: due. peek has no computation, so it leaves the key to the route's get
    assert cache.peek("k") is None
    assert cache.peek("k") == "first"  # one request is enough for that: the others are answered meanwhile
    assert cache.get("k", lambda: "second") == "first"  # the answer at hand, and the refresh queued
    assert len(refresher.queued) == 1
    assert cache.peek("k") == "first"  # being refreshed: the fast path serves it again
    assert cache.get("k", lambda: "must not run") == "first" and len(refresher.queued) == 1  # one refresh
    refresher.run()
    clock.now = 1.5  # past the first answer's expiry: the refreshed one (stored at 0.8) is fresh
    assert cache.peek("k") == "second" and cache.get("k", lambda: "must not run") == "second"


def test_a_failed_refresh_is_not_stored_and_the_answer_still_expires() -> None:
    clock, refresher = Clock(), Inline()
    cache = AnswerCache(1.0, clock=clock, refresh_ahead_s=0.5, refresher=refresher)  # type: ignore[arg-type]
    cache.get("k", lambda: "first")
    clock.now = 0.6

    def fail() -> str:
        raise RuntimeError("engine down")

    assert cache.get("k", fail) == "first"
    refresher.run()  # logged, not raised
    assert cache.peek("k") is None  # due again: the next get retries
    clock.now = 1.2
    with pytest.raises(RuntimeError):
        cache.get("k", fail)  # expired and nobody refreshing: the request computes it and sees the error
    assert cache.get("k", lambda: "recovered") == "recovered"


def test_refresh_ahead_runs_on_a_real_thread_pool() -> None:
    cache = AnswerCache(60.0, refresh_ahead_s=60.0)  # always due: every get refreshes in the background
    assert cache.get("k", lambda: 1) == 1
    assert cache.get("k", lambda: 2) == 1  # the answer at hand; 2 is computed on the refresher's thread
    deadline = time.monotonic() + 5
    while (answer := cache.get("k", lambda: 2)) == 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answer == 2


def test_a_refresh_that_cannot_be_scheduled_leaves_no_flight_behind() -> None:
    class ShutDown:
        def submit(self, work: Callable[[], None]) -> None:
            raise RuntimeError("cannot schedule new futures after shutdown")

    clock = Clock()
    cache = AnswerCache(1.0, clock=clock, refresh_ahead_s=0.5, refresher=ShutDown())  # type: ignore[arg-type]
    cache.get("k", lambda: "first")
    clock.now = 0.6
    assert cache.get("k", lambda: "second") == "first"
    clock.now = 1.5  # expired, and nobody is computing it: this request computes it instead of waiting forever
    assert cache.get("k", lambda: "third") == "third"
