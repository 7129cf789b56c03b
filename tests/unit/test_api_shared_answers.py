"""Answers shared by the API's worker processes: one computation per key, only for the exact key, never older
than the TTL; worker processes are real processes here (the lock is theirs, not a thread's)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from lakepulse.api import shared_answers
from lakepulse.api.cache import AnswerCache, request_key
from lakepulse.api.shared_answers import SharedAnswers


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_answer_published_by_one_worker_is_taken_by_another_with_its_age(tmp_path: Path) -> None:
    clock = Clock()
    one, other = SharedAnswers(tmp_path, 1.0, clock), SharedAnswers(tmp_path, 1.0, clock)
    key = request_key("/v1/live", "t-a", [("tenant", "t-a")])
    assert one.get_or_compute(key, lambda: b"computed") == (b"computed", 0.0)
    clock.now += 0.4
    answer, age = other.get_or_compute(key, lambda: b"must not run")
    assert answer == b"computed" and age == pytest.approx(0.4)
    # With no more than `min_left_s` of its TTL left it is not taken: the caller computes a new one.
    assert other.get_or_compute(key, lambda: b"new", min_left_s=0.7) == (b"new", 0.0)
    clock.now += 1.0  # past the TTL: nobody takes it
    assert one.get_or_compute(key, lambda: b"newer") == (b"newer", 0.0)


def test_an_answer_is_only_served_for_its_own_key(tmp_path: Path) -> None:
    shared = SharedAnswers(tmp_path, 60.0)
    shared.get_or_compute(request_key("/v1/live", "t-a", []), lambda: b"tenant a")
    assert shared.get_or_compute(request_key("/v1/live", "t-b", []), lambda: b"tenant b") == (b"tenant b", 0.0)
    # Even a file under another key's name (a hash collision, or a file put there) is checked against the key.
    (name,) = [p.name for p in tmp_path.iterdir() if p.is_file() and p.read_bytes().endswith(b"tenant a")]
    b_file = next(p for p in tmp_path.iterdir() if p.is_file() and p.read_bytes().endswith(b"tenant b"))
    b_file.write_bytes((tmp_path / name).read_bytes())
    assert shared.get_or_compute(request_key("/v1/live", "t-b", []), lambda: b"b again")[0] == b"b again"


def test_the_directory_is_private_and_a_broken_file_is_recomputed(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    shared = SharedAnswers(directory, 60.0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    shared.get_or_compute("k", lambda: b"whole")
    (answer_file,) = [p for p in directory.iterdir() if p.is_file()]
    answer_file.write_bytes(b"\x01\x02")  # cut short
    assert shared.get_or_compute("k", lambda: b"again") == (b"again", 0.0)


def test_a_directory_removed_under_a_running_worker_costs_sharing_not_answers(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    shared = SharedAnswers(directory, 60.0)
    shutil.rmtree(directory)
    assert shared.get_or_compute("k", lambda: b"still answered") == (b"still answered", 0.0)


def test_only_bytes_are_published(tmp_path: Path) -> None:
    shared = SharedAnswers(tmp_path, 60.0)
    assert shared.get_or_compute("k", lambda: {"a": 1}) == ({"a": 1}, 0.0)  # type: ignore[arg-type,return-value]
    assert shared.get_or_compute("k", lambda: b"bytes") == (b"bytes", 0.0)


def test_old_answers_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_answers, "SWEEP_EVERY_S", 0.0)
    shared = SharedAnswers(tmp_path, 1.0)
    shared.get_or_compute("old", lambda: b"old")
    (old,) = [p for p in tmp_path.iterdir() if p.is_file()]
    long_ago = time.time() - 1.0 - shared_answers.SWEEP_AFTER_S - 5
    os.utime(old, (long_ago, long_ago))
    shared._next_sweep = 0.0
    shared.get_or_compute("new", lambda: b"new")
    assert not old.exists() and len([p for p in tmp_path.iterdir() if p.is_file()]) == 1


def _compute_in_worker(directory: str, start: threading.Event, results: multiprocessing.Queue[bytes]) -> None:
    shared = SharedAnswers(Path(directory), 60.0)

    def compute() -> bytes:
        time.sleep(0.3)  # long enough for the other worker to find the key locked
        return f"computed by {os.getpid()}".encode()

    start.wait(10)
    results.put(shared.get_or_compute("hot key", compute)[0])


def test_two_worker_processes_compute_a_key_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_compute_in_worker, args=(str(tmp_path), start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    answers = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert answers[0] == answers[1]  # one computed and published, the other waited for the lock and took it


def test_threads_of_one_worker_also_compute_a_key_once(tmp_path: Path) -> None:
    shared = SharedAnswers(tmp_path, 60.0)
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        time.sleep(0.2)
        return b"once"

    threads = [threading.Thread(target=shared.get_or_compute, args=("k", compute)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1


def test_a_cache_keeps_a_shared_answer_only_for_the_rest_of_its_ttl(tmp_path: Path) -> None:
    wall, local = Clock(), Clock(0.0)
    publisher = AnswerCache(1.0, clock=local, shared=SharedAnswers(tmp_path, 1.0, wall))
    taker = AnswerCache(1.0, clock=local, shared=SharedAnswers(tmp_path, 1.0, wall))
    assert publisher.get("k", lambda: b"first") == b"first"
    wall.now += 0.6
    local.now += 0.6
    assert taker.get("k", lambda: b"must not run") == b"first"
    wall.now += 0.5
    local.now += 0.5  # 1.1 s after it was computed: expired for both, though the taker got it 0.5 s ago
    assert taker.peek("k") is None
    assert taker.get("k", lambda: b"second") == b"second"


def test_a_claim_whose_request_never_reached_the_route_ends_when_the_key_is_computed() -> None:
    clock = Clock(0.0)
    cache = AnswerCache(1.0, clock=clock, refresh_ahead_s=0.25)
    cache.get("k", lambda: "first")
    clock.now = 0.8
    assert cache.peek("k") is None  # claimed: that request was refused on its way, so no get follows
    assert cache.peek("k") == "first"
    clock.now = 1.1  # expired without a refresh: the next request computes it, as without refresh-ahead
    assert cache.peek("k") is None
    assert cache.get("k", lambda: "second") == "second"
    clock.now = 1.9  # due again, and claimable again
    assert cache.peek("k") is None
