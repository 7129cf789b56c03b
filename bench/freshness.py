"""Speed-layer freshness: an event accepted by the ingest API → its minute row visible in Pinot.

    .venv/bin/python bench/freshness.py --rates 1000,20000 --duration 60

Needs kafka, pinot and ingest (`lakepulse up`) and a streaming job on events.raw: the stack's (when its
metrics port answers) or, with --start-job (default when none answers), one started here with a fresh
checkpoint (starting at the end of events.raw) and stopped at the end.

Per rate: a background load of generated marketplace events (fresh ids, occurred_at = now) is produced
straight to events.raw at the rate (so that the load does not also pay for the API's CPU on the same
cores), while probe events go through the API, each for its own tenant. A probe's
freshness is the time from the API's 202 to the first Pinot broker answer that shows its `events` row
(polled every 100 ms, so figures carry up to ~0.1 s + one query of granularity). Stream lag (records the
minute query has not read) is sampled from the job's /metrics to tell whether the job keeps up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from lakepulse.auth.tokens import RenewingToken
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.ingest.sink import producer_config
from lakepulse.settings import Settings, get_settings
from streaming.config import StreamingSettings

REPO = Path(__file__).resolve().parents[1]
TICK_S = 0.1
DRAIN_S = 90.0


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def templates(prefix: str, count: int = 2000) -> list[dict[str, Any]]:
    """Valid generated events (mixed types) to cycle through as background load."""
    config = GeneratorConfig(rate=500, duration_s=120, time_scale=60, seed=5, tenants=20, run_id=prefix)
    lines = (e.line for e in generate_events(config) if e.is_valid)
    return [orjson.loads(line) for line in itertools.islice(lines, count)]


def load(settings: Settings, rate: int, duration: float, prefix: str, stop: threading.Event) -> int:
    """Produce `rate` events/s to events.raw for `duration` s in 100 ms ticks; returns events sent."""
    producer = Producer(producer_config(settings.kafka_bootstrap, delivery_timeout_s=60))
    pool = templates(prefix)
    sent, started = 0, time.monotonic()
    while not stop.is_set() and (elapsed := time.monotonic() - started) < duration:
        due = int(rate * (elapsed + TICK_S))
        stamp, received = now_stamp(), now_stamp()
        for n in range(sent, due):
            event = pool[n % len(pool)]
            record = {**event, "event_id": f"{prefix}-{n}", "occurred_at": stamp, "received_at": received}
            while True:
                try:
                    producer.produce(settings.topic_events_raw, orjson.dumps(record), event["tenant_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.01)
        sent = max(sent, due)
        producer.poll(0)
        time.sleep(max(0.0, started + elapsed + TICK_S - time.monotonic()))
    producer.flush(60)
    return sent


class Probes:
    """Probe events through the API and their first sighting in Pinot."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings, self.prefix = settings, prefix
        self.accepted: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.api = httpx.Client(base_url=f"http://{settings.bind_host}:{settings.ingest_port}", timeout=10)
        # Each probe has a tenant of its own, so the probes write with a local admin token (renewed: a run
        # can outlast one token's hour).
        self.token = RenewingToken(settings, role="admin", subject="bench-freshness")
        self.broker = httpx.Client(base_url=settings.pinot_broker_url, timeout=10)

    def send(self, n: int) -> None:
        tenant = f"{self.prefix}-p{n}"
        event = {"event_id": f"{tenant}-e", "tenant_id": tenant, "event_type": "page_view",
                 "occurred_at": now_stamp(), "source": "bench-freshness",
                 "properties": {"user_id": "u", "page": "home", "country": "DE", "device": "web",
                                "category": "pizza"}}
        response = self.api.post("/v1/events", json=event, headers={"authorization": f"Bearer {self.token()}"})
        if response.status_code == 202 and response.json().get("accepted") == 1:
            self.accepted[tenant] = time.time()

    def poll(self) -> None:
        sql = (f"SELECT tenant_id FROM metrics_minute WHERE tenant_id LIKE '{self.prefix}-p%' "
               "AND metric = 'events' LIMIT 100000")
        body = self.broker.post("/query/sql", json={"sql": sql}).json()
        at = time.time()
        for (tenant,) in body.get("resultTable", {}).get("rows", []):
            self.seen.setdefault(tenant, at)

    def latencies(self) -> list[float]:
        return sorted(self.seen[t] - self.accepted[t] for t in self.accepted if t in self.seen)


def offsets_behind(metrics_url: str) -> float | None:
    """The minute query's stream lag from the job's Prometheus exposition."""
    try:
        text = httpx.get(metrics_url, timeout=3).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith('lakepulse_streaming_offsets_behind{query="minute"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_rate(settings: Settings, rate: int, duration: float, probe_interval: float, metrics_url: str) -> dict:
    """One measurement at one background rate."""
    run = f"bench-fresh-{uuid.uuid4().hex[:6]}"
    probes = Probes(settings, run)
    stop = threading.Event()
    sent: list[int] = []
    loader = threading.Thread(target=lambda: sent.append(load(settings, rate, duration, run, stop)))
    lags: list[float] = []
    loader.start()
    started = time.monotonic()
    n = 0
    next_probe = next_lag = started
    while loader.is_alive():
        now = time.monotonic()
        if now >= next_probe and now - started < duration:
            probes.send(n)
            n, next_probe = n + 1, now + probe_interval
        if now >= next_lag:
            if (lag := offsets_behind(metrics_url)) is not None:
                lags.append(lag)
            next_lag = now + 2
        probes.poll()
        time.sleep(0.1)
    load_s = time.monotonic() - started
    deadline = time.monotonic() + DRAIN_S
    while set(probes.accepted) - set(probes.seen) and time.monotonic() < deadline:
        probes.poll()
        time.sleep(0.1)
    lat = probes.latencies()
    half = len(lags) // 2
    return {
        "rate": rate, "duration_s": duration, "sent": sent[0] if sent else 0,
        "achieved_rate": round((sent[0] if sent else 0) / load_s),
        "probes": len(probes.accepted), "seen": len(lat),
        "p50_s": round(percentile(lat, 0.50), 2), "p99_s": round(percentile(lat, 0.99), 2),
        "max_s": round(lat[-1], 2) if lat else None,
        "lag_first_half_mean": round(statistics.fmean(lags[:half]), 0) if half else None,
        "lag_second_half_mean": round(statistics.fmean(lags[half:]), 0) if lags[half:] else None,
        "lag_max": max(lags) if lags else None,
    }


def warm_up(settings: Settings, timeout_s: float = 600.0) -> float:
    """Send 10 s of load plus probes until a probe is visible in Pinot: every query's first micro-batch
    with data compiles its plan (tens of seconds on this machine), which is not freshness."""
    started = time.monotonic()
    probes = Probes(settings, f"bench-warm-{uuid.uuid4().hex[:6]}")
    load(settings, 500, 10, f"{probes.prefix}-load", threading.Event())
    n = 0
    while not probes.seen and time.monotonic() - started < timeout_s:
        probes.send(n)
        n += 1
        time.sleep(2)
        probes.poll()
    time.sleep(10)  # the later queries (prep) compile on their first data too
    return time.monotonic() - started


def start_job(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A streaming job on events.raw with a fresh checkpoint; returns it and its metrics URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAKEPULSE_STREAMING_CHECKPOINT_DIR": str(workdir / "checkpoints"),
           "LAKEPULSE_STREAMING_METRICS_PORT": str(port), "LAKEPULSE_STREAMING_STARTING_OFFSETS": "latest"}
    log = (workdir / "job.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streaming.job"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).is_success:
                return proc, f"http://127.0.0.1:{port}/metrics"
        except httpx.HTTPError:
            pass
        time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(f"streaming job not ready; see {workdir / 'job.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,20000", help="background events/s, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per rate")
    parser.add_argument("--probe-interval", type=float, default=0.5, help="seconds between API probes")
    parser.add_argument("--start-job", action=argparse.BooleanOptionalAction, default=None,
                        help="start a streaming job here (default: only when the stack's does not answer)")
    args = parser.parse_args()
    settings, streaming = get_settings(), StreamingSettings()
    metrics_url = f"http://{streaming.metrics_host}:{streaming.metrics_port}/metrics"
    start = args.start_job
    if start is None:
        start = offsets_behind(metrics_url) is None
    proc = None
    if start:
        workdir = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
        proc, metrics_url = start_job(workdir)
        print(f"started a streaming job (log {workdir / 'job.log'})", file=sys.stderr)
    print(f"warm-up took {warm_up(settings):.0f}s", file=sys.stderr)
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            print(json.dumps(run_rate(settings, rate, args.duration, args.probe_interval, metrics_url)),
                  flush=True)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
