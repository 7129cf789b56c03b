"""Answers shared by the metrics API's worker processes: one computation per key for all of them.

uvicorn's workers are separate processes, each with its own answer cache, so without this every worker
computed every hot key once per TTL: with 2 workers, twice the broker queries and twice the API's CPU for the
same answers (BENCHMARKS.md, session 15). Here a worker that needs an answer first looks for the one another
worker computed less than a TTL ago; if there is none, it takes the key's lock (shared by the processes: an
`flock` on one of LOCK_STRIPES files, released by the kernel if its holder dies), looks again, and only then
computes and publishes.

An answer is a file in a private directory (0700), named by a hash of its key; it holds the key itself, which
is compared on every read, so an answer is only ever served for the exact key (path, authorised tenant and
parameters) it was computed for. Files are replaced atomically (rename), and old ones are swept.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

# Locks per directory: two keys on one stripe only wait for each other's computation (256 stripes, a few dozen
# hot keys: rarely). Stripe files are never deleted, which keeps flock free of the unlink race.
LOCK_STRIPES: Final = 256
SWEEP_EVERY_S: Final = 30.0
# An answer file this long past its TTL is deleted (nothing reads it any more: it is older than any TTL).
SWEEP_AFTER_S: Final = 60.0
# computed at (wall clock, seconds), length of the key's text
_HEADER: Final = struct.Struct("<dI")


class SharedAnswers:
    """Bytes answers per key, published by whichever worker computed them, for `ttl_s` after that."""

    def __init__(self, directory: Path, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._dir = directory
        self._ttl_s = ttl_s
        self._clock = clock
        self._locks = directory / "locks"
        self._locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self._next_sweep = clock() + SWEEP_EVERY_S
        self._sweep_lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], bytes], min_left_s: float = 0.0
                       ) -> tuple[bytes, float]:
        """(answer, its age in seconds): one another worker published for `key` with more than `min_left_s` of
        its TTL left, else `compute()`'s, published (age 0). Only one worker computes a key at a time."""
        text = repr(key).encode()
        name = hashlib.blake2b(text, digest_size=20).hexdigest()
        found = self._read(name, text, min_left_s)
        if found is not None:
            return found
        with self._stripe(name):
            found = self._read(name, text, min_left_s)  # published while we waited for the lock
            if found is not None:
                return found
            answer = compute()
            if isinstance(answer, bytes):
                self._publish(name, text, answer)
            return answer, 0.0

    @contextmanager
    def _stripe(self, name: str) -> Iterator[None]:
        # Its own open file per acquisition: flock excludes open files, so threads of one process exclude
        # each other too.
        try:
            lock = open(self._locks / f"{int(name[:4], 16) % LOCK_STRIPES:03d}", "ab")  # noqa: SIM115
        except OSError:  # the directory is gone: answer anyway, each worker for itself, as without sharing
            log.warning("the shared answers' lock cannot be opened; computing without it", exc_info=True)
            yield
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self, name: str, text: bytes, min_left_s: float) -> tuple[bytes, float] | None:
        try:
            data = (self._dir / name).read_bytes()
            computed_at, key_length = _HEADER.unpack_from(data)
        except (OSError, struct.error):
            return None  # none yet, swept, or cut short: compute it
        start = _HEADER.size
        if data[start:start + key_length] != text:
            return None
        age = max(0.0, self._clock() - computed_at)
        if self._ttl_s - age <= min_left_s:
            return None
        return data[start + key_length:], age

    def _publish(self, name: str, text: bytes, answer: bytes) -> None:
        now = self._clock()
        temporary = self._dir / f".{name}.{os.getpid()}.{threading.get_ident()}"
        try:
            temporary.write_bytes(_HEADER.pack(now, len(text)) + text + answer)
            os.replace(temporary, self._dir / name)
        except OSError:
            # The answer is still this worker's; the others compute their own, as without sharing.
            log.warning("publishing a shared answer failed", exc_info=True)
            temporary.unlink(missing_ok=True)
        if now >= self._next_sweep and self._sweep_lock.acquire(blocking=False):
            try:
                self._next_sweep = now + SWEEP_EVERY_S
                self._sweep(now)
            finally:
                self._sweep_lock.release()

    def _sweep(self, now: float) -> None:
        """Delete answers that no read would accept any more (both workers may do this; that is harmless)."""
        oldest = now - self._ttl_s - SWEEP_AFTER_S
        with os.scandir(self._dir) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < oldest:
                        os.unlink(entry.path)
                except OSError:
                    continue
