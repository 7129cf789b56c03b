"""Metrics API benchmark (issue 18): 24 h of 1-minute points, top-N and live state, and dashboard reads/s.

    .venv/bin/python bench/api.py load                      # once: 24 h of events for 3 new bench restaurants
    .venv/bin/python bench/api.py latency --tenant bench-<hex>-rest-0001
    .venv/bin/python bench/api.py throughput --tenant bench-<hex>-rest-0001 --rates 250,500,1000,2000,3000
    .venv/bin/python bench/api.py all                       # the three in a row (a new tenant)
    .venv/bin/python bench/api.py profile --tenant bench-<hex>-rest-0001   # where a 24 h series' time goes

Needs the whole stack (`make run`). Every latency and throughput figure is a real HTTP request; only
`profile` measures in-process, to show where a 24 h series' time goes (engine, reader, merge, JSON).

**load** (slow, skippable: the other steps take `--tenant` of an earlier load). The generator makes 24 h of
events (default 200,000; clean: no late, duplicate or malformed sends) for three restaurants
`bench-<hex>-rest-0001..0003` (Zipf popularity: rest-0001 gets ~46 %), ending at the last whole hour before
now minus one (so the range lies before the seam and is hours late for the speed layer's 2-minute watermark).
They go through the ingest API like any producer's; when Connect has archived and committed them, the
`lakepulse backfill` command (the backfill DAG) rebuilds the range in Delta and reconciles it, which
republishes the rows into Pinot. That is the product's own path into both layers; the step ends when Pinot
and Trino hold the same minute rows for rest-0001. It waits first for another engineer's e2e run (a line
`RC=` in --wait-file), and before the backfill for no queued/running hourly or backfill run and a quiet part
of the hour (the next hourly tick at least --quiet-minutes away).

**latency**: N sequential requests over one keep-alive connection after a warm-up; p50/p95/p99 by nearest
rank. Servers started here (uvicorn, the working tree's code), each on a free port:
- `live path`: the seam pinned to None by `pinned_app` below: every minute comes from Pinot's broker;
- `through Trino`: the seam pinned to 2100-01-01: every minute comes from Delta through Trino;
- `stack`: `lakepulse.api.app:create_app` as the stack runs it (the seam from S3, 2 workers).
Cases: 24 h of 1-minute points (`events`: rows every minute; `orders_placed`: the usual chart), top-N
(`items_sold` by `item_id` over the data's last hour and over its 24 h, as from/to: `last=` would end at now,
after the data), and `/v1/live` (on `stack`: its windowed numbers split at the real seam, the part before it
kept 60 s in the API's final-totals cache; for rest-0001 and demo-rest-0001, whose live tables hold rows),
and on `stack` a dashboard's last hour of demo-rest-0001 (which usually starts before the seam).
The answer cache (`LAKEPULSE_API_CACHE_TTL_S`, 1 s by default) is off on these servers (--cache-ttl), since N
identical requests would otherwise mostly be cache hits; the rate limit keeps its default (a sequential
client stays far below it).

**throughput**: dashboard reads against one API of 2 workers: by default (`--url auto`) the stack's service
on api_port (8000) if it serves /v1/live, else one started here exactly as the stack starts it (`--url own`:
same uvicorn command; settings' defaults: answer cache 1 s, rate limit 200/s per caller;
`--throughput-cache-ttl` changes its cache). A read is `/v1/live` or a 1-hour series of `orders_placed`
at 1 m (from/to on whole minutes, as a dashboard asks), alternating, for the demo restaurants
demo-rest-0001..0005 and the three bench ones. Viewers (default 10,000) each have their own analyst token
(`tenant=` names the restaurant; one subject per viewer, so the per-caller limit does not bite: 0.2 req/s
each at 2,000/s). With tenant tokens instead, all viewers of a restaurant share its 200/s. The load is
open-loop: request i is due at t0 + i/rate, whatever happened before; latency is counted from the due time
(queueing for one of --connections keep-alive connections included), so an overloaded server shows as
latency and a lower achieved rate, not as a politely slower client. Each step first sends its rate for
--step-warmup s (default 20) unmeasured: a step measures a steady audience, not the first seconds after the
previous step's pause, when every cached answer has expired (a step of 15 s with its first second cold spends
~7 % of its requests there, more than the p95 allows), nor a herd of 10,000 viewers whose tokens each worker
verifies for the first time (a worker sees a viewer every ~10 s at 2,000/s; 5 s left most of them to the
measured seconds, at ~0.15 ms of CPU each). The client is one process: uvloop and a
minimal HTTP/1.1 client on httptools, because the client shares the 2 cores with the server: against
`/health`, httpx's AsyncClient spent 1.3-1.4 ms of client CPU per request, this client 50-60 us. Its own CPU
use (share of one core) is printed per step. "Held" means: achieved >= 95 % of the offered rate, < 1 %
errors, p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.servers import api_server
from lakepulse.auth.tokens import mint_token
from lakepulse.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
SEAM_ENV = "LAKEPULSE_BENCH_SEAM"
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
DEMO_TENANTS = [f"demo-rest-{n:04d}" for n in range(1, 6)]
HOURLY_DAG, BACKFILL_DAG = "lakepulse_hourly", "lakepulse_backfill"
TICK_MINUTE = 5  # lakepulse_hourly runs at five past each hour
HELD_P95_S = 0.100
READS = {"live": "/v1/live", "series": "1 h series of orders_placed at 1 m"}


# --- the API under test ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedSeam:
    """A SeamReader that always answers the same seam."""

    at: datetime | None

    def current(self) -> datetime | None:
        return self.at


def pinned_app() -> Any:
    """`uvicorn --factory bench.api:pinned_app`: the metrics app with the seam pinned by LAKEPULSE_BENCH_SEAM
    ("none": every minute from Pinot; an RFC 3339 time: the minutes before it from Delta through Trino)."""
    from lakepulse.api.app import create_app

    text = os.environ.get(SEAM_ENV, "none")
    return create_app(seam=PinnedSeam(None if text == "none" else datetime.fromisoformat(text)))


# --- load: 24 h of events into both layers through the product's own path ---------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def wait_for_e2e(path: Path, poll_s: float = 20.0) -> None:
    """Until `path` (another engineer's e2e log) holds a line starting with RC= (no wait if it is absent)."""
    if not path.exists():
        print(f"{path} does not exist: not waiting for an e2e run", file=sys.stderr)
        return
    while not any(line.startswith("RC=") for line in path.read_text(errors="replace").splitlines()):
        print(f"waiting for the e2e run to finish ({path} has no RC= line yet)", file=sys.stderr)
        time.sleep(poll_s)


def wait_for_quiet_airflow(settings: Settings, quiet_minutes: float, poll_s: float = 20.0) -> None:
    """Until no hourly or backfill run is queued or running and the next hourly tick is at least
    `quiet_minutes` away (a backfill must not share the lake's tables with an hourly run)."""
    from lakepulse.batch.airflow_api import AirflowApi
    from lakepulse.platform import stack
    from lakepulse.platform.components.airflow import airflow_password

    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(stack.context(settings)))
    while True:
        # Filtered by state, not the newest N by logical date: a catch-up or e2e run can have an old one.
        # (AirflowApi.runs takes no state filter; its request helper does.)
        busy = [f"{dag} {r['dag_run_id']} {r['state']}" for dag in (HOURLY_DAG, BACKFILL_DAG)
                for r in api._call("GET", f"/dags/{dag}/dagRuns",
                                   params={"state": ["queued", "running"], "limit": 100})["dag_runs"]]
        now = datetime.now(UTC)
        tick = now.replace(minute=TICK_MINUTE, second=0, microsecond=0)
        if tick <= now:
            tick += timedelta(hours=1)
        to_tick = (tick - now).total_seconds() / 60
        if not busy and to_tick >= quiet_minutes:
            return
        why = ", ".join(busy) if busy else f"the next hourly tick is {to_tick:.0f} min away"
        print(f"waiting before the backfill: {why}", file=sys.stderr)
        time.sleep(poll_s)


def layer_totals(settings: Settings, tenant: str, metric: str, start: datetime, end: datetime) -> tuple[int, int]:
    """SUM(count) of the tenant's `metric` minute rows in [start, end) in Pinot (current rows) and in Delta."""
    import trino.dbapi

    from lakepulse.batch.pinot import broker_rows

    pinot = broker_rows(settings.pinot_broker_url,
                        f"SELECT SUM(\"count\") AS n FROM metrics_minute WHERE tenant_id = '{tenant}' "
                        f"AND metric = '{metric}' AND window_start >= {int(start.timestamp() * 1000)} "
                        f"AND window_start < {int(end.timestamp() * 1000)}")
    conn = trino.dbapi.connect(host=settings.trino_url, user=settings.trino_user, source="bench-api")
    cursor = conn.cursor()
    cursor.execute("SELECT SUM(\"count\") FROM delta.lakepulse.metrics_minute WHERE tenant_id = ? AND metric = ? "
                   "AND window_start >= ? AND window_start < ?", [tenant, metric, start, end])
    delta = cursor.fetchall()[0][0]
    conn.close()
    return int(pinot[0]["n"] if pinot and pinot[0]["n"] is not None else 0), int(delta or 0)


def load(settings: Settings, events: int, seed: int, wait_file: Path, quiet_minutes: float) -> tuple[str, datetime]:
    """Post 24 h of generated events for 3 new restaurants, wait until archived, backfill the range; returns
    the first restaurant and the range's end."""
    from lakepulse.generator.scenario import GeneratorConfig, generate_events
    from tests.e2e.served import committed_past, end_offsets, post_all

    wait_for_e2e(wait_file)  # 200,000 events at once would also slow down its speed-layer checks
    run_id = f"bench-{uuid.uuid4().hex[:6]}"
    end = floor_hour(datetime.now(UTC)) - timedelta(hours=1)
    start = end - timedelta(hours=24)
    config = GeneratorConfig(rate=events / 1440, duration_s=1440, time_scale=60, seed=seed, tenants=3,
                             start=start, run_id=run_id)
    began = time.monotonic()
    lines = [sent.line for sent in generate_events(config) if sent.is_valid]
    tenant = f"{run_id}-rest-0001"
    print(f"generated {len(lines):,} events for {run_id}-rest-0001..0003 in [{rfc3339(start)}, {rfc3339(end)}) "
          f"in {time.monotonic() - began:.0f} s", file=sys.stderr)
    began = time.monotonic()
    accepted = post_all(settings, lines)
    posted_up_to = end_offsets(settings)
    print(f"ingest API accepted {len(accepted):,} in {time.monotonic() - began:.0f} s", file=sys.stderr)
    if len(accepted) != len(lines):
        raise SystemExit(f"only {len(accepted)} of {len(lines)} events accepted")
    deadline = time.monotonic() + 900
    while not committed_past(settings, posted_up_to):
        if time.monotonic() > deadline:
            raise SystemExit("Connect has not committed the posted events after 15 min")
        time.sleep(5)
    print(f"archived and committed after {time.monotonic() - began:.0f} s", file=sys.stderr)

    wait_for_quiet_airflow(settings, quiet_minutes)
    began = time.monotonic()
    subprocess.run([str(Path(sys.executable).parent / "lakepulse"), "backfill", "--start", rfc3339(start),
                    "--end", rfc3339(end)], cwd=REPO, check=True)
    print(f"backfill took {time.monotonic() - began:.0f} s", file=sys.stderr)
    # Reconcile republishes through Kafka: Pinot shows the rows shortly after the run ends.
    deadline = time.monotonic() + 600
    while True:
        pinot, delta = layer_totals(settings, tenant, "events", start, end)
        if pinot == delta > 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"Pinot holds {pinot} events of {tenant}, Delta {delta}, after 10 min")
        time.sleep(5)
    print(f"both layers hold {delta:,} events of {tenant}", file=sys.stderr)
    return tenant, end


def data_end(settings: Settings, tenant: str) -> datetime:
    """The end of a loaded tenant's range: the hour after its newest minute row in Delta."""
    import trino.dbapi

    conn = trino.dbapi.connect(host=settings.trino_url, user=settings.trino_user, source="bench-api")
    cursor = conn.cursor()
    cursor.execute("SELECT max(window_start) FROM delta.lakepulse.metrics_minute WHERE tenant_id = ?", [tenant])
    newest = cursor.fetchall()[0][0]
    conn.close()
    if newest is None:
        raise SystemExit(f"no minute rows of {tenant} in Delta: run `bench/api.py load` first")
    return floor_hour(newest.replace(tzinfo=newest.tzinfo or UTC)) + timedelta(hours=1)


# --- latency: sequential requests -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[max(0, math.ceil(q * len(values)) - 1)] if values else float("nan")


def summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms."""
    ordered = sorted(seconds)
    return {name: round(percentile(ordered, q) * 1000, 1)
            for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99), ("max_ms", 1.0))}


def answer_shape(body: dict[str, Any]) -> str:
    """What an answer held, to show that the figures are about real data: windows with data and their layers,
    or the top list's size, or the live funnel's orders."""
    if "windows" in body:
        layers = Counter(w["layer"] for w in body["windows"] if w["count"])
        return f"{len(body['windows'])} windows, {sum(layers.values())} with data ({dict(layers)})"
    if "top" in body:
        return f"top {len(body['top'])} of {body['groups']} groups ({body['layer']})"
    return f"funnel {json.dumps(body.get('funnel'))[:80]}"


def sequential(url: str, token: str, path: str, params: dict[str, str], requests: int, warmup: int) -> dict[str, Any]:
    """`requests` GETs one after the other on one keep-alive connection (after `warmup`); latency summary."""
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as client:
        timings, statuses = [], Counter[int]()
        for n in range(warmup + requests):
            began = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = time.perf_counter() - began
            if n >= warmup:
                timings.append(elapsed)
                statuses[response.status_code] += 1
    size = len(response.content)
    detail = answer_shape(response.json()) if response.status_code == 200 else response.text[:200]
    return {**summary(timings), "n": len(timings), "status": dict(statuses), "bytes": size, "answer": detail}


def latency(settings: Settings, tenant: str, end: datetime, requests: int, warmup: int, metrics: list[str],
            cache_ttl: float, logs: Path) -> list[dict[str, Any]]:
    """The latency cases on the three servers; one result dict per case."""
    start = end - timedelta(hours=24)
    token = mint_token(settings, role="analyst", subject="bench-api-latency", ttl=timedelta(hours=2))
    env = {"LAKEPULSE_API_CACHE_TTL_S": str(cache_ttl)}
    results = []

    def run(server: str, url: str, case: str, path: str, params: dict[str, str]) -> None:
        result = {"server": server, "case": case,
                  **sequential(url, token, path, {"tenant": params.pop("tenant", tenant), **params}, requests, warmup)}
        print(json.dumps(result), flush=True)
        results.append(result)

    day = {"from": rfc3339(start), "to": rfc3339(end)}
    for server, seam in (("live path", "none"), ("through Trino", FAR_FUTURE.isoformat())):
        with api_server(server.replace(" ", "-"), "bench.api:pinned_app", 1, {**env, SEAM_ENV: seam}, logs) as url:
            for metric in metrics:
                run(server, url, f"24h of 1m {metric}", f"/v1/metrics/{metric}/series", {**day, "granularity": "1m"})
            for label, span in (("1h", {"from": rfc3339(end - timedelta(hours=1)), "to": rfc3339(end)}), ("24h", day)):
                run(server, url, f"top 10 items_sold by item_id, {label}", "/v1/metrics/items_sold/top",
                    {**span, "by": "item_id", "n": "10"})
            if seam == "none":  # through Trino, the live state's day would be one read, then its cache's
                run(server, url, "live state", "/v1/live", {})
    with api_server("stack", "lakepulse.api.app:create_app", 2, env, logs) as url:
        for who in (tenant, DEMO_TENANTS[0]):
            run("stack (real seam)", url, f"live state {who}", "/v1/live", {"tenant": who})
        for metric in metrics[:1]:
            run("stack (real seam)", url, f"24h of 1m {metric}", f"/v1/metrics/{metric}/series",
                {**day, "granularity": "1m"})
        # A dashboard's last hour: for most of each hour it starts before the seam, so part comes from Trino.
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        run("stack (real seam)", url, f"last 1h of 1m orders_placed {DEMO_TENANTS[0]}",
            "/v1/metrics/orders_placed/series", {"tenant": DEMO_TENANTS[0], "granularity": "1m",
                                                 "from": rfc3339(minute - timedelta(minutes=59)),
                                                 "to": rfc3339(minute + timedelta(minutes=1))})
    return results


def profile(settings: Settings, tenant: str, end: datetime, metric: str, reps: int) -> list[dict[str, Any]]:
    """Where a 24 h series' time goes, in this process (no HTTP): the engine's own time for the query (Trino's
    elapsed time, Pinot's timeUsedMs), the reader's call (query + transfer + rows to dicts), the merge into
    windows and the JSON encoding; per layer, p50 ms over `reps` after one warm-up."""
    import orjson
    import trino.dbapi

    from lakepulse.api.series import SeriesRequest, merge_series
    from lakepulse.api.sources import BatchSource, SpeedSource, needs_sketches, partial_columns
    from lakepulse.catalog import get_catalog

    start = end - timedelta(hours=24)
    request = SeriesRequest(metric=metric, start=start, end=end, granularity="1m")
    speed, batch = SpeedSource(settings), BatchSource(settings)
    trino_conn = trino.dbapi.connect(host=settings.trino_url, user=settings.trino_user, source="bench-api",
                                     legacy_prepared_statements=False)
    sketches = needs_sketches(get_catalog().metric(metric).kind)
    columns = ", ".join(f'"{c}"' for c in partial_columns(sketches))
    pinot_sql = (f"SELECT {columns} FROM metrics_minute WHERE tenant_id = '{tenant}' AND metric = '{metric}' "
                 f"AND window_start >= {int(start.timestamp() * 1000)} "
                 f"AND window_start < {int(end.timestamp() * 1000)} LIMIT 100001")
    results = []
    for layer, source in (("speed (Pinot)", speed), ("batch (Trino)", batch)):
        times: dict[str, list[float]] = {"engine": [], "read": [], "merge": [], "encode": []}
        rows = 0
        for n in range(reps + 1):
            if source is batch:
                cursor = trino_conn.cursor()
                # The reader's own statement and parameters (a private attribute: this is a bench).
                cursor.execute(batch._sql[sketches], [tenant, metric, start.date().isoformat(),
                                            (end - timedelta(microseconds=1)).date().isoformat(), start, end])
                cursor.fetchall()
                engine = cursor.stats["elapsedTimeMillis"] / 1000
            else:
                answer = httpx.post(f"{settings.pinot_broker_url}/query/sql", json={"sql": pinot_sql}, timeout=30)
                engine = answer.json()["timeUsedMs"] / 1000
            began = time.perf_counter()
            read = source.minute_rows(tenant, metric, start, end)
            read_at = time.perf_counter()
            seam = None if source is speed else FAR_FUTURE
            merged = merge_series(request, tenant, seam, read.rows if source is batch else [],
                                  read.rows if source is speed else [])
            merged_at = time.perf_counter()
            orjson.dumps(merged.to_dict())
            encoded_at = time.perf_counter()
            if n:
                for key, value in (("engine", engine), ("read", read_at - began), ("merge", merged_at - read_at),
                                   ("encode", encoded_at - merged_at)):
                    times[key].append(value)
            rows = len(read.rows)
        results.append({"layer": layer, "metric": metric, "rows": rows,
                        **{f"{k}_p50_ms": summary(v)["p50_ms"] for k, v in times.items()}})
        print(json.dumps(results[-1]), flush=True)
    trino_conn.close()
    return results


# --- throughput: open-loop dashboard reads ---------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request, await the status of its complete response."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def get(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class Reads:
    """Dashboard reads, one per call: viewer v (its own analyst token) reads tenant v % len(tenants),
    alternately its live state and its last hour of orders at 1 m."""

    host: str
    tokens: list[str]
    tenants: list[str]
    metric: str = "orders_placed"
    mix: tuple[str, ...] = ("live", "series")

    def request(self, i: int, now: datetime) -> bytes:
        viewer = (i // len(self.mix)) % len(self.tokens)
        tenant = self.tenants[viewer % len(self.tenants)]
        if self.mix[i % len(self.mix)] == "live":
            target = f"/v1/live?tenant={tenant}"
        else:
            minute = now.replace(second=0, microsecond=0)
            target = (f"/v1/metrics/{self.metric}/series?tenant={tenant}&granularity=1m"
                      f"&from={rfc3339(minute - timedelta(minutes=59))}&to={rfc3339(minute + timedelta(minutes=1))}")
        return (f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.tokens[viewer]}\r\n"
                "Accept: application/json\r\n\r\n").encode()


async def offered_load(host: str, port: int, reads: Reads, rate: float, duration: float, connections: int,
                       timeout: float = 10.0, warmup: float = 0.0) -> dict[str, Any]:
    """Requests due at t0 + i/rate for `warmup` + `duration` s over a pool of keep-alive connections; for the
    last `duration` s: latency from the due time, statuses, achieved rate and the client's own CPU share."""
    loop = asyncio.get_running_loop()

    async def connect() -> Connection:
        _, conn = await loop.create_connection(Connection, host, port)
        return conn

    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in await asyncio.gather(*(connect() for _ in range(connections))):
        idle.put_nowait(conn)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    behind: list[float] = []
    finished_at = 0.0

    async def one(request: bytes, due: float, measured: bool) -> None:
        nonlocal finished_at
        conn = await idle.get()
        try:
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                conn = await connect()
            status = await asyncio.wait_for(conn.get(request), timeout)
            if measured:
                statuses[str(status)] += 1
                if 200 <= status < 300:
                    latencies.append(loop.time() - due)
        except (TimeoutError, ConnectionError, OSError) as exc:
            if measured:
                statuses[type(exc).__name__] += 1
            if conn.transport is not None:
                conn.transport.close()
            conn = await connect()
        finally:
            finished_at = loop.time()
            idle.put_nowait(conn)

    unmeasured, total = int(rate * warmup), int(rate * duration)
    tasks = []
    t0 = loop.time() + 0.05
    for i in range(unmeasured + total):
        due = t0 + i / rate
        if (ahead := due - loop.time()) > 0.001:
            await asyncio.sleep(ahead)
        if i == unmeasured:
            cpu0, measured_from = time.process_time(), due
        if i >= unmeasured:
            behind.append(max(0.0, loop.time() - due))
        tasks.append(asyncio.ensure_future(one(reads.request(i, datetime.now(UTC)), due, i >= unmeasured)))
    await asyncio.wait(tasks, timeout=timeout + 5)
    elapsed = max(finished_at, measured_from + duration) - measured_from
    cpu = time.process_time() - cpu0
    while not idle.empty():
        conn = idle.get_nowait()
        if conn.transport is not None:
            conn.transport.close()
    if unfinished := total - sum(statuses.values()):
        statuses["unfinished"] = unfinished  # still waiting when the step's grace period ended
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return {
        "offered": rate, "requests": total, "achieved": round(ok / elapsed), **summary(latencies),
        "status": dict(statuses), "errors": total - ok,
        "client_behind_p95_ms": round(percentile(sorted(behind), 0.95) * 1000, 1),
        "client_cpu": f"{cpu / elapsed:.0%}",
    }


def held(step: dict[str, Any]) -> bool:
    """The rate counts as held: nearly all of it achieved, (almost) no errors, p95 under 100 ms."""
    return (step["achieved"] >= 0.95 * step["offered"] and step["errors"] <= 0.01 * step["requests"]
            and step["p95_ms"] < HELD_P95_S * 1000)


def throughput(settings: Settings, url: str | None, tenants: list[str], rates: list[float], duration: float,
               viewers: int, connections: int, cache_ttl: float | None, logs: Path,
               mix: tuple[str, ...] = ("live", "series"), seam: str = "real",
               step_warmup: float = 0.0) -> list[dict[str, Any]]:
    """One open-loop step per rate against `url` (or an API started here as the stack starts it); each step
    sends its rate for `step_warmup` s before the `duration` s it measures."""
    import uvloop

    tokens = [mint_token(settings, role="analyst", subject=f"bench-viewer-{v}", ttl=timedelta(hours=2))
              for v in range(viewers)]

    def steps(base: str) -> list[dict[str, Any]]:
        parsed = httpx.URL(base)
        reads = Reads(f"{parsed.host}:{parsed.port}", tokens, tenants, mix=mix)
        results = []
        for rate in rates:
            step = uvloop.run(offered_load(parsed.host, parsed.port or 80, reads, rate, duration, connections,
                                           warmup=step_warmup))
            results.append(step)
            print(json.dumps(step), flush=True)
            time.sleep(3)
        return results

    if url is not None:
        return steps(url)
    env = {} if cache_ttl is None else {"LAKEPULSE_API_CACHE_TTL_S": str(cache_ttl)}
    factory = "lakepulse.api.app:create_app" if seam == "real" else "bench.api:pinned_app"
    with api_server("throughput", factory, settings.api_workers, {**env, SEAM_ENV: seam}, logs) as base:
        # Warm both workers' engine connections before the first measured step.
        parsed = httpx.URL(base)
        uvloop.run(offered_load(parsed.host, parsed.port or 80, Reads(f"{parsed.host}:{parsed.port}", tokens,
                                                                      tenants), 50, 3, 8))
        return steps(base)


def stack_api(settings: Settings) -> str | None:
    """The stack's API URL if it serves every route of the dashboard reads (it may run older code)."""
    url = f"http://{settings.bind_host}:{settings.api_port}"
    token = mint_token(settings, role="analyst", subject="bench-api-probe", ttl=timedelta(minutes=5))
    try:
        answer = httpx.get(f"{url}/v1/live", params={"tenant": DEMO_TENANTS[0]}, timeout=10,
                           headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        return None
    return url if answer.status_code == 200 else None


# --- the command ------------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of `columns` of `rows`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    load_p = sub.add_parser("load", help="24 h of events for new bench restaurants into both layers")
    lat_p = sub.add_parser("latency", help="sequential requests: 24 h series, top-N, live state")
    thr_p = sub.add_parser("throughput", help="open-loop dashboard reads at stepped rates")
    all_p = sub.add_parser("all", help="load, latency and throughput")
    prof_p = sub.add_parser("profile", help="where a 24 h series' time goes (in-process, per layer)")
    prof_p.add_argument("--tenant", required=True)
    prof_p.add_argument("--metrics", default="events,orders_placed")
    prof_p.add_argument("--requests", type=int, default=20)
    for p in (load_p, all_p):
        p.add_argument("--events", type=int, default=200_000, help="events of the 24 h (3 restaurants)")
        p.add_argument("--seed", type=int, default=18)
        p.add_argument("--wait-file", type=Path, default=Path("/tmp/e2e.log"),
                       help="do not backfill until this file has a line starting with RC= (if it exists)")
        p.add_argument("--quiet-minutes", type=float, default=20.0,
                       help="backfill only when the next hourly tick is at least this far away")
    for p in (lat_p, thr_p):
        p.add_argument("--tenant", required=True, help="a restaurant of an earlier `load` (bench-<hex>-rest-0001)")
    for p in (lat_p, all_p):
        p.add_argument("--requests", type=int, default=100, help="measured requests per case")
        p.add_argument("--warmup", type=int, default=5)
        p.add_argument("--metrics", default="events,orders_placed", help="metrics of the 24 h series")
        p.add_argument("--cache-ttl", type=float, default=0.0, help="the latency servers' answer cache (s)")
    for p in (thr_p, all_p):
        p.add_argument("--rates", default="25,50,100,250,500,1000,2000,3000",
                       help="offered requests/s, comma-separated")
        p.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
        p.add_argument("--step-warmup", type=float, default=20.0,
                       help="seconds each rate is sent before the measured --duration (caches warm at that rate)")
        p.add_argument("--viewers", type=int, default=10_000)
        p.add_argument("--mix", default="live,series", help="what a dashboard read is, in turn: live and/or series")
        p.add_argument("--connections", type=int, default=128)
        p.add_argument("--url", default="auto", help="the API to load: a URL, `own` (one started here as the stack "
                                                     "starts it) or `auto` (the stack's on api_port if it serves "
                                                     "/v1/live, else own)")
        p.add_argument("--seam", choices=("real", "none"), default="real",
                       help="the started API's seam: real (from S3), or none (every minute from Pinot)")
        p.add_argument("--throughput-cache-ttl", type=float, default=None,
                       help="the started API's answer cache (s); default: the settings' (1 s)")
    args = parser.parse_args()
    settings = get_settings()
    logs = Path(tempfile.mkdtemp(prefix="bench-api-"))
    print(f"server logs in {logs}", file=sys.stderr)

    if args.what in ("load", "all"):
        tenant, end = load(settings, args.events, args.seed, args.wait_file, args.quiet_minutes)
        print(f"loaded: --tenant {tenant} (24 h ending {rfc3339(end)})", flush=True)
    else:
        tenant = args.tenant
        end = data_end(settings, tenant)
    prefix = tenant.rsplit("-rest-", 1)[0]
    if args.what == "profile":
        rows = [r for m in args.metrics.split(",") for r in profile(settings, tenant, end, m, args.requests)]
        print(table(rows, ["layer", "metric", "rows", "engine_p50_ms", "read_p50_ms", "merge_p50_ms",
                           "encode_p50_ms"]))
        return
    if args.what in ("latency", "all"):
        results = latency(settings, tenant, end, args.requests, args.warmup, args.metrics.split(","),
                          args.cache_ttl, logs)
        print(table(results, ["server", "case", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "status", "bytes",
                              "answer"]))
        for row in results:
            print(f"api latency: {row['server']}, {row['case']}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
                  f"p99 {row['p99_ms']} ms ({row['n']} sequential requests, {tenant}, answer cache "
                  f"{args.cache_ttl:g} s)")
    if args.what in ("throughput", "all"):
        tenants = [*DEMO_TENANTS, *(f"{prefix}-rest-{n:04d}" for n in range(1, 4))]
        url = None if args.url == "own" else stack_api(settings) if args.url == "auto" else args.url
        if args.url == "auto" and url is None:
            print("the stack's API does not serve /v1/live (older code?): loading an API started here",
                  file=sys.stderr)
        mix = tuple(args.mix.split(","))
        steps = throughput(settings, url, tenants, [float(r) for r in args.rates.split(",")], args.duration,
                           args.viewers, args.connections, args.throughput_cache_ttl, logs, mix, args.seam,
                           args.step_warmup)
        print(table(steps, ["offered", "achieved", "p50_ms", "p95_ms", "p99_ms", "max_ms", "status",
                            "client_behind_p95_ms", "client_cpu"]))
        best = max((s["offered"] for s in steps if held(s)), default=None)
        print(f"api throughput: highest offered rate held with p95 < 100 ms: "
              f"{'none of ' + args.rates if best is None else f'{best:,.0f} req/s'} "
              f"(dashboard reads {' + '.join(READS[m] for m in mix)}, {len(tenants)} restaurants, "
              f"{args.viewers:,} viewers, {args.connections} connections, {args.duration:g} s per rate after "
              f"{args.step_warmup:g} s of warm-up, "
              f"{url or 'API started here as the stack starts it, 2 workers, seam ' + args.seam}, answer cache "
              f"{'default' if args.throughput_cache_ttl is None or url else f'{args.throughput_cache_ttl:g} s'})")


if __name__ == "__main__":
    main()
