"""The answer cache: identical reads share an answer for ttl_s, never across tenants, never an error."""

from __future__ import annotations

import pytest

from lakepulse.api.cache import AnswerCache, request_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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
    import threading

    cache, calls, started = AnswerCache(60.0), [], threading.Event()
    release = threading.Event()

    def slow() -> str:
        calls.append(1)
        started.set()
        release.wait(5)
        return "answer"

    answers: list[str] = []
    first = threading.Thread(target=lambda: answers.append(cache.get("k", slow)))
    first.start()
    started.wait(5)
    waiters = [threading.Thread(target=lambda: answers.append(cache.get("k", slow))) for _ in range(5)]
    for t in waiters:
        t.start()
    other = cache.get("other", lambda: "not held up")  # another key does not wait for the slow one
    release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert other == "not held up"
    assert answers == ["answer"] * 6 and len(calls) == 1


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
    import threading

    clock = Clock()
    cache = AnswerCache(1.0, clock=clock, stale_s=4.0)
    assert cache.get("k", lambda: "old") == "old"
    clock.now = 2.0  # expired 1 s ago
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "new"

    refreshed: list[str] = []
    refresher = threading.Thread(target=lambda: refreshed.append(cache.get("k", slow)))
    refresher.start()
    started.wait(5)
    # Meanwhile: the others get the expired answer at once, from get and from peek (the fast path's read).
    assert cache.get("k", lambda: "must not run") == "old"
    assert cache.peek("k") == "old"
    clock.now = 5.5  # 4.5 s past its TTL: too old to serve; this request waits for the computation instead
    waited: list[str] = []
    waiter = threading.Thread(target=lambda: waited.append(cache.get("k", lambda: "must not run")))
    waiter.start()
    assert cache.peek("k") is None
    release.set()
    for t in (refresher, waiter):
        t.join(5)
    assert refreshed == ["new"] and waited == ["new"]
    assert cache.get("k", lambda: "must not run") == "new"


def test_with_nobody_recomputing_an_expired_answer_is_never_served() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock, stale_s=4.0)
    cache.get("k", lambda: "old")
    clock.now = 1.5
    assert cache.peek("k") is None
    assert cache.get("k", lambda: "new") == "new"
