"""Server-side CPU of one repeated dashboard read, called straight on the metrics API's ASGI app (no sockets,
no HTTP parsing): through the routes (FastAPI routing, dependencies, thread pool, answer cache) and from the
cache before routing (lakepulse/api/fastpath.py). The engine layers are the unit tests' fakes: only the
request path is measured; every read after the first is a cache hit.

    .venv/bin/python bench/api_fastpath.py [--reads 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta
from typing import Any

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.settings import get_settings
from tests.unit.test_api_app import MINUTE, T9, FakeLayer, FakeSeam, pinot_row, trino_row

PATH = "/v1/metrics/orders_placed/series"
QUERY = b"from=2026-03-02T09:00:00Z&to=2026-03-02T10:00:00Z&granularity=1m"


def scope(token: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": PATH, "raw_path": PATH.encode(), "query_string": QUERY, "root_path": "",
            "headers": [(b"host", b"bench"), (b"authorization", b"Bearer " + token)],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}


async def cpu_per_read(fast_path: bool, reads: int, rounds: int) -> list[float]:
    """CPU microseconds per cached read, one figure per round."""
    settings = get_settings().model_copy(update={"api_rate_limit_per_s": 0.0, "api_cache_ttl_s": 60.0})
    batch = FakeLayer([trino_row("t-a", "orders_placed", T9 + i * MINUTE, 2) for i in range(120)])
    speed = FakeLayer([pinot_row("t-a", "orders_placed", T9 + i * MINUTE, 3) for i in range(120)])
    app = create_app(settings, batch=batch, speed=speed, seam=FakeSeam())
    if not fast_path:  # the stack is built on the first call: drop the middleware before it
        app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ != "CachedAnswerMiddleware"]
    token = mint_token(settings, tenant="t-a", ttl=timedelta(hours=1)).encode()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # the first fills the cache; the rest warm up
        await app(scope(token), receive, send)
    assert set(statuses) == {200}, statuses
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(reads):
            await app(scope(token), receive, send)
        figures.append((time.process_time() - started) / reads * 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for fast_path, name in ((False, "through the routes"), (True, "from the cache before routing")):
        figures = asyncio.run(cpu_per_read(fast_path, args.reads, args.rounds))
        print(f"{name:32s} CPU per cached read: median {statistics.median(figures):,.0f} µs "
              f"(rounds: {', '.join(f'{f:,.0f}' for f in figures)})")


if __name__ == "__main__":
    main()
