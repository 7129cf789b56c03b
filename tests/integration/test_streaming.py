"""Speed layer on the real stack: generated events → `python -m streaming.job` → Kafka → Pinot upsert rows,
compared with an independent recount in plain Python.

Isolation: the test runs its own job process on a private input topic (`it-<id>.raw`, plus private DLQ,
late, prep and dedup topics) with its own checkpoint and metrics port, and writes to the real `metrics.minute` /
`orders.live` topics that Pinot consumes. Its tenants carry the run id, so the stack's own streaming job
(which never reads the private topic) and this test cannot touch each other's rows.

Phases, each on event time of the private stream only (absolute wall time does not matter):
1. 40 min of generated traffic (with duplicates and slight disorder) + an order whose ready_for_pickup is
   sent before its confirmed → Pinot rows == recount.
2. Injected: events 20 min behind the stream (beyond the 2-minute watermark), on-time stragglers,
   resent duplicates and unparseable messages → rows == recount of the on-time ones; the late ones in the
   late topic and the late counter; the junk in the DLQ with a reason.
3. `kill -9` of the job (its whole process group) while a further 10 minutes stream in, restart from the
   checkpoint → rows == recount: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.catalog import get_catalog
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.platform import stack as platform_stack
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "pinot")]

REPO = Path(__file__).resolve().parents[2]
WATERMARK_S = 120
JOB_READY_S = 420
CONVERGE_S = 300
Key = tuple[str, str, str, int]  # tenant, metric, dims_key, window_start (epoch ms)


# --- the independent recount ------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("=", "\\=")


def _dims(**dims: Any) -> str:
    return "|".join(f"{k}={_esc(v)}" for k, v in sorted(dims.items()))


def _minute_ms(at: datetime) -> int:
    return int(at.timestamp()) // 60 * 60_000


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Recount:
    """Per (tenant, metric, dims_key, minute): count, sum, min, max and buckets, straight from the events."""

    def __init__(self) -> None:
        self.rows: dict[Key, dict[str, Any]] = {}
        self.bounds = list(get_catalog().metric("prep_time_seconds").buckets)

    def add(self, tenant: str, metric: str, dims: str, at: datetime, value: float | None = None) -> None:
        row = self.rows.setdefault((tenant, metric, dims, _minute_ms(at)),
                                   {"count": 0, "sum": 0.0, "min": None, "max": None, "buckets": None})
        row["count"] += 1
        if value is not None:
            row["sum"] += value
            row["min"] = value if row["min"] is None else min(row["min"], value)
            row["max"] = value if row["max"] is None else max(row["max"], value)

    def add_prep(self, tenant: str, at: datetime, seconds: float) -> None:
        self.add(tenant, "prep_time_seconds", "", at, seconds)
        row = self.rows[(tenant, "prep_time_seconds", "", _minute_ms(at))]
        row["buckets"] = row["buckets"] or [0] * (len(self.bounds) + 1)
        row["buckets"][next((i for i, b in enumerate(self.bounds) if seconds <= b), len(self.bounds))] += 1


def recount(events: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Minute rows of every catalog metric from on-time events (deduplicated here by event_id)."""
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        seen.setdefault(e["event_id"], e)
    rc = Recount()
    confirmed: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    ready: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    for e in seen.values():
        t, kind, p, at = e["tenant_id"], e["event_type"], e.get("properties") or {}, _at(e["occurred_at"])
        rc.add(t, "events", _dims(event_type=kind, country=p.get("country"), device=p.get("device")), at)
        if p.get("user_id"):
            rc.add(t, "active_users", _dims(country=p.get("country"), device=p.get("device")), at)
        if kind == "order_placed":
            rc.add(t, "orders_placed", _dims(channel=p.get("channel"), country=p.get("country"),
                                             device=p.get("device")), at)
            rc.add(t, "gross_sales", _dims(channel=p.get("channel"), country=p.get("country")), at,
                   float(p["amount"]))
            for item in p.get("items") or []:
                rc.add(t, "items_sold", _dims(item_id=item["item_id"], category=item.get("category")), at,
                       float(item["quantity"]))
        elif kind == "order_status_changed":
            if p.get("status") == "delivered":
                rc.add(t, "orders_completed", "", at)
            elif p.get("status") == "cancelled":
                rc.add(t, "orders_cancelled", "", at)
            elif p.get("status") == "confirmed":
                confirmed[(t, p["order_id"])].add(at)
            elif p.get("status") == "ready_for_pickup":
                ready[(t, p["order_id"])].add(at)
        elif kind == "rating_submitted":
            rc.add(t, "food_rating", "", at, float(p["food_rating"]))
            rc.add(t, "delivery_rating", "", at, float(p["delivery_rating"]))
        elif kind == "app_error":
            rc.add(t, "app_errors", _dims(service=p.get("service"), code=p.get("code")), at)
    for (t, order), readies in ready.items():
        for r in readies:
            for c in confirmed.get((t, order), ()):
                if c <= r <= c + timedelta(hours=6):
                    rc.add_prep(t, r, (r - c).total_seconds())
    return rc.rows


# --- Kafka, Pinot and the job process --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value, key)
        producer.poll(0)
    assert producer.flush(30) == 0


def event_records(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(e["tenant_id"].encode(), orjson.dumps(e)) for e in events]


def consume_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every message of a (small) topic from the beginning."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"it-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p.partition, 0) for p in parts])
        out: list[dict[str, Any]] = []
        done: set[int] = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(parts) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            out.append(json.loads(msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        consumer.close()


def pinot_sql(settings: Settings, sql: str) -> list[list[Any]]:
    response = httpx.post(f"{settings.pinot_broker_url}/query/sql", json={"sql": sql}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert not body.get("exceptions"), body["exceptions"]
    return body["resultTable"]["rows"]


def pinot_minute_rows(settings: Settings, prefix: str) -> dict[Key, dict[str, Any]]:
    rows = pinot_sql(settings, 'SELECT tenant_id, metric, dims_key, CAST(window_start AS LONG), "count", '
                               '"sum", "min", "max", buckets FROM metrics_minute '
                               f"WHERE tenant_id LIKE '{prefix}%' LIMIT 1000000")
    return {(r[0], r[1], r[2], int(r[3])): {"count": r[4], "sum": r[5], "min": r[6], "max": r[7],
                                             "buckets": json.loads(r[8])} for r in rows}


def comparable(rows: dict[Key, dict[str, Any]]) -> dict[Key, tuple]:
    """Counts everywhere; sum/min/max where the metric has a value (Pinot reads nulls as 0); buckets."""
    valued = {"gross_sales", "items_sold", "prep_time_seconds", "food_rating", "delivery_rating"}
    out = {}
    for key, r in rows.items():
        vals: tuple = (r["count"],)
        if key[1] in valued:
            vals += (round(r["sum"], 6), round(r["min"], 6), round(r["max"], 6))
        if key[1] == "prep_time_seconds":
            vals += (tuple(r["buckets"]),)
        out[key] = vals
    return out


class Job:
    """`python -m streaming.job` on the private topics, in its own process group (so kill -9 takes the JVM)."""

    def __init__(self, settings: Settings, run: str, workdir: Path) -> None:
        self.settings, self.run, self.workdir = settings, run, workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LAKEPULSE_TOPIC_EVENTS_RAW": f"{self.run}.raw",
            "LAKEPULSE_TOPIC_EVENTS_DLQ": f"{self.run}.dlq",
            "LAKEPULSE_TOPIC_EVENTS_LATE": f"{self.run}.late",
            "LAKEPULSE_STREAMING_TOPIC_PREP": f"{self.run}.prep",
            "LAKEPULSE_STREAMING_CHECKPOINT_DIR": str(self.workdir / "checkpoints"),
            "LAKEPULSE_STREAMING_STARTING_OFFSETS": "earliest",
            "LAKEPULSE_STREAMING_WATERMARK": f"{WATERMARK_S} seconds",
            "LAKEPULSE_STREAMING_METRICS_PORT": str(self.port),
        }

    def start(self) -> None:
        self.starts += 1
        log = (self.workdir / f"job-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "streaming.job"], cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + JOB_READY_S
        while not self.health().get("ready"):
            assert self.proc.poll() is None, f"job exited; see {log.name}"
            assert time.monotonic() < deadline, f"job not ready after {JOB_READY_S}s; see {log.name}"
            time.sleep(2)

    def health(self) -> dict[str, Any]:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {}

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the job's Prometheus exposition (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # exposition sorts labels
        sample = f"{name}{{{want}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def wait_for_rows(settings: Settings, prefix: str, expected: dict[Key, dict[str, Any]]) -> dict[Key, tuple]:
    """Poll Pinot until its rows equal `expected` (bounded); returns the last rows seen for the assert."""
    want = comparable(expected)
    deadline = time.monotonic() + CONVERGE_S
    got = comparable(pinot_minute_rows(settings, prefix))
    while got != want and time.monotonic() < deadline:
        time.sleep(3)
        got = comparable(pinot_minute_rows(settings, prefix))
    return got


def diff(got: dict[Key, tuple], want: dict[Key, tuple]) -> str:
    keys = sorted(set(got) ^ set(want) | {k for k in set(got) & set(want) if got[k] != want[k]})
    return "; ".join(f"{k}: pinot={got.get(k)} recount={want.get(k)}" for k in keys[:10])


# --- the run shared by the tests of this module -------------------------------------------------------
def generated(config: GeneratorConfig) -> list[dict[str, Any]]:
    return [orjson.loads(g.line) for g in generate_events(config) if g.is_valid]


def ev(n: str, tenant: str, kind: str, at: datetime, source: str = "it-injected", **props: Any) -> dict:
    stamp = at.isoformat().replace("+00:00", "Z")
    return {"event_id": n, "tenant_id": tenant, "event_type": kind, "occurred_at": stamp,
            "received_at": stamp, "source": source, "properties": props}


class SpeedRun:
    """The private stream, what was sent in each phase, and the running job."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.run = f"it-{uuid.uuid4().hex[:10]}"
        self.prefix = f"{self.run}-"
        self.seed = zlib.crc32(self.run.encode())
        self.t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
        self.job = Job(settings, self.run, workdir)
        self.on_time: list[dict[str, Any]] = []
        self.late: list[dict[str, Any]] = []
        self.junk: list[bytes] = []

    def create_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        for future in admin.create_topics([NewTopic(f"{self.run}.raw", 6, 1)]).values():
            future.result()

    def delete_topics(self) -> None:
        """Drop the private topics (the rows in Pinot stay: they are keyed by this run's tenants)."""
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{self.run}.")]
        for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else []:
            future.result()

    def send(self, events: list[dict[str, Any]]) -> None:
        produce(self.settings, f"{self.run}.raw", event_records(events))

    def phase1(self) -> None:
        config = GeneratorConfig(rate=1.0, duration_s=2400, seed=self.seed, tenants=2, start=self.t0,
                                 run_id=self.run, duplicate_fraction=0.03, out_of_order_fraction=0.05)
        events = generated(config)
        tenant = events[0]["tenant_id"]
        top = max(_at(e["occurred_at"]) for e in events)
        # An order whose ready_for_pickup is sent before its confirmed: prep 90 s, at ready's minute.
        order = [
            ev(f"{self.run}-p1", tenant, "order_placed", top - timedelta(seconds=110), order_id="it-o1",
               user_id="it-u1", amount=12.5, currency="EUR", channel="app", country="DE", device="ios",
               items=[{"item_id": "it-i1", "name": "soup", "category": "soups", "quantity": 2,
                       "unit_price": 6.25}]),
            ev(f"{self.run}-p3", tenant, "order_status_changed", top - timedelta(seconds=10),
               order_id="it-o1", status="ready_for_pickup"),
            ev(f"{self.run}-p2", tenant, "order_status_changed", top - timedelta(seconds=100),
               order_id="it-o1", status="confirmed"),
        ]
        self.tenant, self.top, self.order_ready_at = tenant, top, top - timedelta(seconds=10)
        self.send(events + order)
        self.on_time += events + order

    def phase2(self) -> None:
        top, t = self.top, self.tenant
        late = [ev(f"{self.run}-l{i}", t, "page_view", top - timedelta(minutes=20, seconds=i),
                   source="it-late-producer", user_id=f"it-lu{i}", page="menu", country="DE", device="web",
                   category="x") for i in range(3)]
        stragglers = [ev(f"{self.run}-s{i}", t, "order_placed", top - timedelta(seconds=40 + i),
                         order_id=f"it-s{i}", user_id="it-u2", amount=3.0 + i, currency="EUR", channel="web",
                         country="PL", device="web", items=[]) for i in range(2)]
        recent = sorted(self.on_time, key=lambda e: e["occurred_at"])[-2:]  # resent: must not count twice
        self.junk = [b'{"tenant_id": "' + self.run.encode() + b'", "event_type": "page_v', b"not json at all"]
        self.send(late + stragglers + recent)
        produce(self.settings, f"{self.run}.raw", [(None, j) for j in self.junk])
        self.late += late
        self.on_time += stragglers + recent

    def phase3_events(self) -> list[dict[str, Any]]:
        config = GeneratorConfig(rate=1.0, duration_s=600, seed=self.seed + 1, tenants=2,
                                 start=self.top + timedelta(seconds=1), run_id=self.run)
        return generated(config)


@pytest.fixture(scope="module")
def speed(kafka_and_pinot: Context, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeedRun]:
    run = SpeedRun(settings, tmp_path_factory.mktemp("speed"))
    run.create_topic()
    run.phase1()
    run.job.start()
    try:
        yield run
    finally:
        run.job.stop()
        run.delete_topics()


@pytest.fixture(scope="module")
def kafka_and_pinot(ctx: Context) -> Context:
    """Like the conftest's `stack` (function-scoped there), once for this module's long-lived job."""
    services = {svc.name: svc for _, svc in platform_stack.all_services(ctx)}
    deadline = time.monotonic() + 120
    while not all(services[n].ready() for n in ("kafka", "pinot")):
        assert time.monotonic() < deadline, "kafka/pinot not ready: run `lakepulse up`"
        time.sleep(2)
    return ctx


def test_minute_rows_equal_recount_of_generated_events(speed: SpeedRun) -> None:
    want = comparable(recount(speed.on_time))
    got = wait_for_rows(speed.settings, speed.prefix, recount(speed.on_time))
    assert got == want, diff(got, want)
    assert sum(v[0] for k, v in want.items() if k[1] == "events") == len({e["event_id"] for e in speed.on_time})


def test_late_duplicate_and_out_of_order_events(speed: SpeedRun) -> None:
    speed.phase2()
    want = comparable(recount(speed.on_time))
    got = wait_for_rows(speed.settings, speed.prefix, recount(speed.on_time))
    assert got == want, diff(got, want)  # stragglers counted, resent events once, late ones not at all

    deadline = time.monotonic() + 120
    late_ids: set[str] = set()
    while late_ids != {e["event_id"] for e in speed.late} and time.monotonic() < deadline:
        time.sleep(2)
        late_ids = {r["event_id"] for r in consume_all(speed.settings, f"{speed.run}.late")}
    assert late_ids == {e["event_id"] for e in speed.late}
    late_count = speed.job.metric("lakepulse_streaming_late_events_total", tenant_id=speed.tenant,
                                  source="it-late-producer")
    assert late_count == 3
    dlq = consume_all(speed.settings, f"{speed.run}.dlq")
    assert sorted(r["raw"].encode() for r in dlq) == sorted(speed.junk)
    assert {r["reason"] for r in dlq} == {"value is not valid JSON"}


def test_prep_time_when_ready_arrives_before_confirmed(speed: SpeedRun) -> None:
    rows = pinot_sql(speed.settings, "SELECT status, prep_seconds FROM orders_live "
                                     f"WHERE tenant_id = '{speed.tenant}' AND order_id = 'it-o1' LIMIT 1")
    assert rows and rows[0][0] == "ready_for_pickup" and rows[0][1] == 90.0
    prep = pinot_minute_rows(speed.settings, speed.tenant)
    row = prep[(speed.tenant, "prep_time_seconds", "", _minute_ms(speed.order_ready_at))]
    want = recount(speed.on_time)[(speed.tenant, "prep_time_seconds", "", _minute_ms(speed.order_ready_at))]
    assert row["count"] == want["count"] and row["sum"] == pytest.approx(want["sum"])


def test_kill_9_mid_stream_then_restart_changes_no_number(speed: SpeedRun) -> None:
    events = speed.phase3_events()
    half = len(events) // 2
    speed.send(events[:half])
    # Kill while the job is busy with the first half: as soon as any of it is visible in Pinot.
    first_minute = _minute_ms(_at(events[0]["occurred_at"]))
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline and not any(
        k[3] > first_minute for k in pinot_minute_rows(speed.settings, speed.prefix)
    ):
        time.sleep(1)
    speed.job.kill9()
    speed.send(events[half:])
    speed.on_time += events
    speed.job.start()
    want = comparable(recount(speed.on_time))
    got = wait_for_rows(speed.settings, speed.prefix, recount(speed.on_time))
    assert got == want, diff(got, want)


def session_processes(sid: int) -> dict[int, str]:
    """Live processes (pid → name) of a session: a job started with start_new_session and all it started,
    including any reparented to init after its parent ended."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while we looked
            continue
        name_end = text.rindex(")")
        state, _ppid, _pgrp, session = text[name_end + 2 :].split()[:4]
        if state != "Z" and int(session) == sid:
            found[int(stat.parent.name)] = text[text.index("(") + 1 : name_end]
    return found


def test_sigterm_stops_the_job_cleanly_and_leaves_no_process(speed: SpeedRun) -> None:
    """A group SIGTERM (supervisor's stop, the freshness bench) ends the launcher, its two query processes
    and both JVMs, each query process exiting 0. The JVMs used to get the signal too: their shutdown hooks
    raced the job's own stop (py4j errors, exit 1) and could hang, leaving a JVM behind."""
    assert speed.job.proc is not None
    sid = speed.job.proc.pid
    before = session_processes(sid)
    assert list(before.values()).count("java") == 2, before
    speed.job.stop()
    deadline = time.monotonic() + 60
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, f"still running after the job stopped: {left}"
    assert speed.job.proc.returncode == 0  # the launcher's: 0 when both query processes stopped cleanly
