"""Live push benchmark (issue 19): N concurrent SSE viewers of one tenant on ONE API process, the clients in other
processes on loopback; delivery latency from an update's arrival at the API to its receipt by each viewer.

    .venv/bin/python bench/sse.py                                   # 10,000 viewers, 2 client processes
    .venv/bin/python bench/sse.py --viewers 1000,5000,10000 --clients 2 --updates 30 --interval 1

Needs the stack's Kafka (`make run`): updates go through the topic the push reads.

**Server.** For each viewer count a fresh metrics API: uvicorn, one process (no `--workers`), uvloop and httptools
as the stack runs it, on a free 127.0.0.1 port, against the stack's Kafka. Its factory is `bench.sse:stamped_app`:
`create_app()` with one hook, on the hub's `publish` (where the Kafka feed's thread hands updates to the event
loop): the arrival time (`time.time()`) of each of the bench tenant's updates goes to a file. Settings for it:
the viewer cap above N, no rate limit (every viewer is one caller); heartbeats and mailboxes as configured.

**Viewers.** --clients processes, each opening its share of the N viewers with raw asyncio protocols (uvloop), at
most --connect-concurrency at once: a stream token minted per viewer, `GET /v1/stream?token=...`, and the time
(`time.time()`, same host and clock as the server's stamp) of every read holding one of the bench's updates.
One probe viewer opened first (not counted) starts the hub's feed; warm-up records follow until the hub stamps
one, so the feed reads the topic before anything is counted.

**Updates.** `orders.live` records of a tenant of the run's own (`bench-sse-<run>`), as the streaming job writes
them (the Pinot-encoded order row, keyed by tenant and order): --updates of them, one new order each, --interval
apart. Each becomes one `live_order` event of about 300 bytes. (They also reach Pinot's `orders_live` table,
under that tenant only.)

**Figures.** Delivery latency = receipt − arrival at the API, p50/p99/max (nearest rank) over every (viewer,
update) pair, and the same from the producer's send (adds the Kafka hop); the share of viewers that got every
update; server CPU seconds per update (psutil, user + system of the API process from the first update until
every viewer has the last one, heartbeats included); server RSS per connection ((RSS with the N viewers − RSS
with the probe alone) / N); the clients' CPU per update (they share the host's cores with the server). Exits
non-zero only when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]
STAMPS_ENV = "BENCH_SSE_STAMPS"
TENANT_ENV = "BENCH_SSE_TENANT"
READY_TIMEOUT_S = 120.0
WARMUP_TIMEOUT_S = 90.0
CONNECT_TIMEOUT_S = 300.0


# --- the server's hook ------------------------------------------------------------------------------------------


def stamped_app() -> Any:
    """`create_app()` whose hub writes "<arrival time> <order id>" of each update of $BENCH_SSE_TENANT to
    $BENCH_SSE_STAMPS as the Kafka feed hands it over (uvicorn factory of the bench's server)."""
    from lakepulse.api.app import create_app

    app = create_app()
    hub = app.state.hub
    tenant = os.environ[TENANT_ENV]
    out = open(os.environ[STAMPS_ENV], "a", buffering=1)  # noqa: SIM115 - open for the process's life
    publish = hub.publish

    def stamped(updates: list[tuple[str, bytes]]) -> None:
        now = time.time()
        for tenant_id, body in updates:
            if tenant_id == tenant:
                out.write(f"{now:.6f} {orjson.loads(body).get('order_id')}\n")
        publish(updates)

    hub.publish = stamped  # the feed is given `hub.publish` when it starts (the first viewer)
    return app


# --- pure parts -------------------------------------------------------------------------------------------------


def nearest_rank(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values by nearest rank; NaN when there are none."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal shares (the first ones larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def order_id(run: str, seq: int) -> str:
    """The order id of update `seq` of a run (0 and below: warm-up records)."""
    return f"{run}-{seq:06d}" if seq > 0 else f"{run}-warm{-seq:03d}"


def marker(run: str) -> re.Pattern[bytes]:
    """Finds the seqs of a run's counted updates in the bytes of a stream."""
    return re.compile(rb'"order_id":"' + re.escape(run.encode()) + rb'-(\d{6})"')


def order_row(tenant: str, oid: str, at_ms: int) -> tuple[bytes, bytes]:
    """An `orders.live` (key, value) as the streaming job writes them: a placed order, Pinot-encoded (epoch ms)."""
    key = orjson.dumps({"tenant_id": tenant, "order_id": oid})
    value = orjson.dumps({"tenant_id": tenant, "order_id": oid, "status": "placed", "status_at": at_ms,
                          "placed_at": at_ms, "amount": 23.5, "currency": "EUR", "last_event_at": at_ms,
                          "updated_at": at_ms})
    return key, value


def read_stamps(path: Path) -> dict[str, float]:
    """order id → its first arrival time at the API, from the hook's file."""
    stamps: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            at, _, oid = line.partition(" ")
            stamps.setdefault(oid, float(at))
    return stamps


@dataclass
class Summary:
    """One viewer count's latencies and delivery."""

    latencies: list[float] = field(default_factory=list)  # sorted, seconds, from the arrival at the API
    from_produce: list[float] = field(default_factory=list)  # sorted, seconds, from the producer's send
    viewers: int = 0
    complete: int = 0  # viewers that got every update
    missing: int = 0  # (viewer, update) pairs never received


def summarise(receipts: list[array], arrivals: list[float], produced: list[float]) -> Summary:
    """Receipt times per viewer (one slot per update, NaN when missed) against each update's arrival and send."""
    summary = Summary(viewers=len(receipts))
    for times in receipts:
        got = 0
        for i, at in enumerate(times):
            if math.isnan(at):
                summary.missing += 1
                continue
            got += 1
            if not math.isnan(arrivals[i]):
                summary.latencies.append(at - arrivals[i])
            summary.from_produce.append(at - produced[i])
        summary.complete += got == len(times)
    summary.latencies.sort()
    summary.from_produce.sort()
    return summary


# --- the client processes ---------------------------------------------------------------------------------------


class SseViewer(asyncio.Protocol):
    """One raw SSE connection: the response status, and the time of the first read holding each update."""

    __slots__ = ("request", "pattern", "received", "status", "opened", "lost", "_head", "_tail", "_transport")

    def __init__(self, request: bytes, pattern: re.Pattern[bytes], opened: asyncio.Future[None]) -> None:
        self.request = request
        self.pattern = pattern
        self.received: dict[int, float] = {}
        self.status = 0
        self.opened = opened
        self.lost = False
        self._head = b""
        self._tail = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self._head[9:12])
            data, self._head = self._head[end + 4:], b""
            if not self.opened.done():
                self.opened.set_result(None)
            if self.status != 200:
                if self._transport is not None:
                    self._transport.close()
                return
        # Only whole events (a blank line ends each): an id split across two reads is found in the second.
        data = self._tail + data
        cut = data.rfind(b"\n\n") + 2
        self._tail = data[cut:] if cut > 1 else data
        for match in self.pattern.finditer(data, 0, cut if cut > 1 else 0):
            self.received.setdefault(int(match.group(1)), now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.opened.done():
            self.opened.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def client_loop(conn: Connection, port: int, tenant: str, run: str, concurrency: int) -> None:
    """Serve the parent's commands: connect N viewers, count those with an update, hand over receipts, close."""
    from lakepulse.auth.tokens import Principal, mint_stream_token
    from lakepulse.settings import get_settings

    settings = get_settings()
    principal = Principal(subject="bench-sse", tenant_id=tenant, role="tenant")
    pattern = marker(run)
    loop = asyncio.get_running_loop()
    viewers: list[SseViewer] = []
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    os.set_blocking(conn.fileno(), True)  # add_reader made it non-blocking: a large reply would fail half-sent

    async def open_one(gate: asyncio.Semaphore) -> None:
        async with gate:
            token = mint_stream_token(settings, principal, tenant)[0]
            request = (f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Accept: text/event-stream\r\n\r\n").encode()
            opened: asyncio.Future[None] = loop.create_future()
            viewer = SseViewer(request, pattern, opened)
            viewers.append(viewer)
            try:
                await loop.create_connection(lambda: viewer, "127.0.0.1", port)
                await asyncio.wait_for(opened, 60)
            except (OSError, TimeoutError):
                viewer.lost = True

    while True:
        command, *args = await inbox.get()
        if command == "connect":
            started = time.perf_counter()
            gate = asyncio.Semaphore(concurrency)
            await asyncio.gather(*(open_one(gate) for _ in range(args[0])))
            statuses = Counter(v.status if not v.lost else -1 for v in viewers)
            conn.send(("connected", dict(statuses), time.perf_counter() - started))
        elif command == "have":  # viewers still open, and those that have update `seq`
            seq = args[0]
            conn.send(("have", sum(1 for v in viewers if v.status == 200 and not v.lost),
                       sum(1 for v in viewers if seq in v.received)))
        elif command == "receipts":  # one array per viewer that opened: receipt times of seqs 1..n (NaN: missed)
            n = args[0]
            conn.send(("receipts", [array("d", (v.received.get(s, math.nan) for s in range(1, n + 1)))
                                    for v in viewers if v.status == 200]))
        elif command == "close":
            for viewer in viewers:
                viewer.close()
            await asyncio.sleep(0.5)
            conn.send(("closed",))
            return


def client_main(conn: Connection, port: int, tenant: str, run: str, concurrency: int) -> None:
    """A client process: uvloop when installed, then `client_loop`."""
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    try:
        import uvloop
        uvloop.run(client_loop(conn, port, tenant, run, concurrency))
    except ImportError:
        asyncio.run(client_loop(conn, port, tenant, run, concurrency))


# --- the parent -------------------------------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    process: psutil.Process
    stamps: Path
    log: Path


@contextmanager
def own_api(viewers: int, tenant: str, workdir: Path) -> Iterator[Server]:
    """The metrics API (uvicorn, one process, the stamping factory) on a free port, for `viewers` viewers."""
    port = free_port()
    stamps = workdir / f"stamps-{port}.txt"
    log = workdir / f"api-{port}.log"
    prom = workdir / f"prom-{port}"
    prom.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom), STAMPS_ENV: str(stamps), TENANT_ENV: tenant,
           "LAKEPULSE_SSE_MAX_VIEWERS": str(viewers + 100), "LAKEPULSE_API_RATE_LIMIT_PER_S": "0"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.sse:stamped_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"the API exited with {server.returncode}; see {log}")
                with suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API was not ready after {READY_TIMEOUT_S:.0f} s; see {log}")
                time.sleep(0.3)
            yield Server(url, port, psutil.Process(server.pid), stamps, log)
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # also a test of ending every open stream at shutdown
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                print("  (the API did not stop within 30 s of SIGTERM; killed)")
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)


def open_probe(port: int, token: str) -> socket.socket:
    """One viewer that only reads the response head (it starts the hub's feed; its few updates fit its buffer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit(f"the API closed the probe viewer's stream: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the probe viewer was refused: {head.splitlines()[0]!r}")
    return sock


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def ask(conns: list[Connection], *command: Any) -> list[tuple[Any, ...]]:
    for conn in conns:
        conn.send(command)
    return [conn.recv() for conn in conns]


def bench_one(args: argparse.Namespace, viewers: int, workdir: Path) -> bool:
    """One viewer count on a fresh API; prints its figures; False when it could not run."""
    from confluent_kafka import Producer

    from lakepulse.auth.tokens import Principal, mint_stream_token
    from lakepulse.settings import get_settings

    settings = get_settings()
    run = f"sse{uuid.uuid4().hex[:8]}"
    tenant = f"bench-sse-{run}"
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 0})
    topic = settings.topic_orders_live

    def produce(seq: int) -> float:
        at = time.time()
        key, value = order_row(tenant, order_id(run, seq), int(at * 1000))
        producer.produce(topic, value=value, key=key)
        producer.flush(10)
        return at

    print(f"\n== {viewers:,} viewers of {tenant}, {args.clients} client processes, {args.updates} updates "
          f"{args.interval} s apart; load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    with own_api(viewers, tenant, workdir) as server:
        principal = Principal(subject="bench-sse", tenant_id=tenant, role="tenant")
        probe = open_probe(server.port, mint_stream_token(settings, principal, tenant)[0])
        # The feed reads from the topic's end once assigned: warm-up records until the hub has stamped one.
        deadline, warm = time.monotonic() + WARMUP_TIMEOUT_S, 0
        while not read_stamps(server.stamps):
            if time.monotonic() > deadline:
                print(f"  the hub got no update within {WARMUP_TIMEOUT_S:.0f} s (is Kafka up at "
                      f"{settings.kafka_bootstrap}?); see {server.log}")
                return False
            warm += 1
            produce(-warm)
            time.sleep(1.0)
        time.sleep(3.0)  # the feed's replay of metrics.minute settles
        rss_base = server.process.memory_info().rss

        ctx = mp.get_context("spawn")  # not fork: this process runs librdkafka's threads
        pipes = [ctx.Pipe() for _ in range(args.clients)]
        clients = [ctx.Process(target=client_main, args=(child, server.port, tenant, run, args.connect_concurrency),
                               daemon=True) for _, child in pipes]
        for process in clients:
            process.start()
        conns = [parent for parent, _ in pipes]
        try:
            for conn, share in zip(conns, split(viewers, args.clients), strict=True):
                conn.send(("connect", share))
            replies = [conn.recv() for conn in conns]
            statuses: Counter[int] = Counter()
            for _, counts, _ in replies:
                statuses.update(counts)
            opened = statuses.get(200, 0)
            connect_s = max(seconds for _, _, seconds in replies)
            refused = {k: v for k, v in statuses.items() if k != 200}
            print(f"  connected {opened:,} of {viewers:,} in {connect_s:.1f} s"
                  + (f"; not opened (status: count, -1 = connection failed): {refused}" if refused else ""))
            if not opened:
                return False
            time.sleep(args.settle)
            rss = server.process.memory_info().rss
            client_procs = [psutil.Process(p.pid) for p in clients]

            cpu0, client0 = cpu_seconds(server.process), sum(cpu_seconds(p) for p in client_procs)
            produced: list[float] = []
            started = time.monotonic()
            for seq in range(1, args.updates + 1):
                produced.append(produce(seq))
                pause = started + seq * args.interval - time.monotonic()
                if seq < args.updates and pause > 0:
                    time.sleep(pause)
            deadline, still_open = time.monotonic() + args.drain, opened
            while time.monotonic() < deadline:
                answers = ask(conns, "have", args.updates)
                still_open = sum(a[1] for a in answers)
                if sum(a[2] for a in answers) >= still_open:
                    break
                time.sleep(0.05)
            cpu1, client1 = cpu_seconds(server.process), sum(cpu_seconds(p) for p in client_procs)

            receipts: list[array] = []
            for reply in ask(conns, "receipts", args.updates):
                receipts += reply[1]
            ask(conns, "close")
        finally:
            for process in clients:
                process.join(10)
                if process.is_alive():
                    process.kill()
            probe.close()

    stamps = read_stamps(server.stamps)
    arrivals = [stamps.get(order_id(run, seq), math.nan) for seq in range(1, args.updates + 1)]
    summary = summarise(receipts, arrivals, produced)
    lat, prod = summary.latencies, summary.from_produce
    unstamped = sum(math.isnan(a) for a in arrivals)
    print(f"  delivery latency from arrival at the API: p50 {nearest_rank(lat, 0.5) * 1e3:,.0f} ms  "
          f"p99 {nearest_rank(lat, 0.99) * 1e3:,.0f} ms  max {nearest_rank(lat, 1.0) * 1e3:,.0f} ms  "
          f"({len(lat):,} receipts)" + (f"; {unstamped} updates never stamped by the hub" if unstamped else ""))
    print(f"  from the producer's send (+ Kafka hop): p50 {nearest_rank(prod, 0.5) * 1e3:,.0f} ms  "
          f"p99 {nearest_rank(prod, 0.99) * 1e3:,.0f} ms  max {nearest_rank(prod, 1.0) * 1e3:,.0f} ms")
    print(f"  viewers with every update: {summary.complete:,} of {summary.viewers:,} "
          f"({summary.complete / max(summary.viewers, 1):.1%}); missed receipts {summary.missing:,}; "
          f"open at the end {still_open:,}")
    print(f"  server CPU per update {(cpu1 - cpu0) / args.updates * 1e3:,.0f} ms "
          f"({cpu1 - cpu0:.1f} s over {args.updates} updates); clients' CPU per update "
          f"{(client1 - client0) / args.updates * 1e3:,.0f} ms")
    print(f"  server RSS {rss / 2**20:,.0f} MB with the viewers, {rss_base / 2**20:,.0f} MB with the probe only: "
          f"{(rss - rss_base) / opened / 1024:,.1f} kB per connection; load average now "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", default="10000", help="viewer counts, comma-separated (a fresh API for each)")
    parser.add_argument("--clients", type=int, default=2, help="client processes sharing the viewers")
    parser.add_argument("--updates", type=int, default=30, help="updates per viewer count")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds from the last connect to the first update")
    parser.add_argument("--drain", type=float, default=30.0, help="longest wait for the last update to reach all")
    parser.add_argument("--connect-concurrency", type=int, default=200, help="connects in flight per client process")
    args = parser.parse_args()
    counts = [int(n.replace("_", "")) for n in args.viewers.split(",") if n.strip()]
    limit = raise_nofile()
    if max(counts) + 200 > limit:
        raise SystemExit(f"{max(counts):,} viewers need more open files than RLIMIT_NOFILE allows ({limit:,})")
    print(f"SSE fan-out: {', '.join(f'{n:,}' for n in counts)} viewers; {os.cpu_count()} cores; "
          f"RLIMIT_NOFILE {limit:,}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sse-"))  # kept: the API's logs
    ran = [bench_one(args, n, workdir) for n in counts]
    print(f"\nthe API's logs: {workdir}")
    if not any(ran):
        raise SystemExit("no viewer count could be run")


if __name__ == "__main__":
    main()
