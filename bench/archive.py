"""Raw-archive benchmark: produce N events/s to events.raw and measure how far the Parquet archive lags.

    .venv/bin/python bench/archive.py --rate 20000 --duration 120

Needs the stack with the raw-archive connector RUNNING (`lakepulse up`). Produces generated marketplace
events (fresh event ids, occurred_at = now, a bench tenant prefix) paced in 100 ms ticks, samples the
connector's committed-offset lag every 2 s, then waits until every bench event is in the archive and reports:
- sink throughput (records committed per second while the load ran, and overall),
- consumer lag (records not yet archived) over time: does it grow, or stay bounded by the flush policy,
- archive lag per object: upload time of the object minus the oldest received_at in it (p50/p95/max),
- drain time: load end → the last bench event archived, and a dedup check of the count.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from pyarrow import fs

from lakepulse import archive
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.ingest.sink import producer_config
from lakepulse.settings import Settings, get_settings

GROUP = "connect-raw-archive"
DRAIN_TIMEOUT_S = 600


def templates(count: int, tenant_prefix: str) -> list[dict[str, object]]:
    """Valid generated events (mixed types) to cycle through."""
    config = GeneratorConfig(rate=500, duration_s=120, time_scale=60, seed=3, tenants=20, run_id=tenant_prefix)
    lines = (e.line for e in generate_events(config) if e.is_valid)
    return [orjson.loads(line) for line in itertools.islice(lines, count)]


def committed_and_end(consumer: Consumer, topic: str) -> tuple[int, int]:
    """Sum over partitions of (committed offset of the sink's group, log end offset)."""
    parts = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=5).topics[topic].partitions]
    committed = end = 0
    for tp in consumer.committed(parts, timeout=10):
        low, high = consumer.get_watermark_offsets(tp, timeout=5)
        committed += tp.offset if tp.offset >= 0 else low
        end += high
    return committed, end


def produce(settings: Settings, rate: int, duration: float, prefix: str,
            limit: int | None = None) -> tuple[int, float]:
    """Send `rate` events/s for `duration` s (at most `limit`); returns (events sent, seconds taken)."""
    pool = templates(20_000, prefix)
    producer = Producer({**producer_config(settings.kafka_bootstrap, 120.0), "client.id": "bench-archive"})
    tick, sent, started = 0.1, 0, time.monotonic()
    events = itertools.cycle(pool)
    while (elapsed := time.monotonic() - started) < duration or (limit is not None and sent < limit):
        due = int(min(elapsed + tick, duration) * rate) if limit is None else min(sent + 50_000, limit)
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        while sent < due:
            event = dict(next(events))
            event.update(event_id=f"{prefix}-{sent}", occurred_at=now, received_at=now, device_family="Other")
            while True:
                try:
                    producer.produce(settings.topic_events_raw, orjson.dumps(event), str(event["tenant_id"]))
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        if limit is None:
            time.sleep(max(0.0, started + (due / rate) - time.monotonic()))
        elif sent >= limit:
            break
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} events not acknowledged")
    return sent, time.monotonic() - started


def object_lags(settings: Settings, since: datetime) -> list[float]:
    """For each archive object written since `since`: its upload time minus its oldest received_at, s."""
    s3 = archive.filesystem(settings)
    lags = []
    for day in sorted({since.date(), datetime.now(UTC).date()}):
        base = f"{archive.root(settings)}/event_date={day.isoformat()}"
        for info in s3.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True)):
            if info.type != fs.FileType.File or info.mtime is None or info.mtime < since:
                continue
            meta = pq.ParquetFile(s3.open_input_file(info.path)).metadata
            column = meta.schema.to_arrow_schema().get_field_index("received_at")
            oldest = min(meta.row_group(i).column(column).statistics.min for i in range(meta.num_row_groups))
            lags.append((info.mtime - oldest).total_seconds())
    return lags


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def catch_up(settings: Settings, backlog: int, prefix: str, consumer: Consumer) -> None:
    """Capacity: pause the connector, queue `backlog` events, resume, and time how fast offsets commit."""
    import httpx

    url = f"{settings.kafka_connect_url}/connectors/raw-archive"
    httpx.put(f"{url}/pause", timeout=10).raise_for_status()
    try:
        time.sleep(5)
        sent, took = produce(settings, 10**7, backlog / 10**7 * 1.0, prefix, limit=backlog)
        print(f"queued {sent} events in {took:.1f}s while paused", flush=True)
    finally:
        httpx.put(f"{url}/resume", timeout=10).raise_for_status()
    t0 = time.monotonic()
    start_committed, end = committed_and_end(consumer, settings.topic_events_raw)
    samples = [(0.0, start_committed)]
    while samples[-1][1] < end and time.monotonic() - t0 < DRAIN_TIMEOUT_S:
        time.sleep(1)
        samples.append((time.monotonic() - t0, committed_and_end(consumer, settings.topic_events_raw)[0]))
    # Full batches commit as fast as the sink can write them; the last partial ones wait for the timer.
    rising = [s for s, prev in zip(samples[1:], samples, strict=False) if s[1] > prev[1]]
    burst = [s for s in rising if s[0] <= rising[0][0] + 60] if rising else []
    if burst:
        t, done = burst[-1]
        print(f"catch-up: {done - start_committed:,} records committed in {t:.1f}s after resume "
              f"= {(done - start_committed) / t:,.0f} records/s; all {end - start_committed:,} after "
              f"{samples[-1][0]:.1f}s (the remainder waits for flush.interval.ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--backlog", type=int, default=0,
                        help="instead: pause the connector, queue this many events, resume, time the catch-up")
    args = parser.parse_args()
    settings = get_settings()
    prefix = f"bench-archive-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": GROUP,
                         "enable.auto.commit": False, "log_level": 0})
    if args.backlog:
        catch_up(settings, args.backlog, prefix, consumer)
        consumer.close()
        return
    samples: list[tuple[float, int, int]] = []  # (t, committed, end)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            committed, end = committed_and_end(consumer, settings.topic_events_raw)
            samples.append((time.monotonic(), committed, end))
            stop.wait(2)

    sampler = threading.Thread(target=sample, daemon=True)
    started_at = datetime.now(UTC)
    sampler.start()
    t0 = time.monotonic()
    sent, took = produce(settings, args.rate, args.duration, prefix)
    load_end = time.monotonic()
    print(f"produced {sent} events in {took:.1f}s = {sent / took:,.0f} events/s", flush=True)

    # Drain: wait until the sink has committed everything produced so far.
    _, end_at_load_end = committed_and_end(consumer, settings.topic_events_raw)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while committed_and_end(consumer, settings.topic_events_raw)[0] < end_at_load_end:
        if time.monotonic() > deadline:
            sys.exit(f"archive did not catch up within {DRAIN_TIMEOUT_S}s")
        time.sleep(1)
    drained = time.monotonic()
    stop.set()
    sampler.join()

    first = samples[0]
    during = [s for s in samples if s[0] <= load_end]
    lag = [end - committed for _, committed, end in during]
    half = len(lag) // 2
    sink_rate = (during[-1][1] - first[1]) / (during[-1][0] - first[0])
    overall_rate = (end_at_load_end - first[1]) / (drained - t0)
    lags = object_lags(settings, started_at)

    count = archive.count_events(settings, started_at - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))
    tenants = sorted({str(t["tenant_id"]) for t in templates(20_000, prefix)})
    bench_rows = archive.read_events(settings, started_at - timedelta(minutes=1),
                                     datetime.now(UTC) + timedelta(minutes=1), columns=["event_id"],
                                     where=pc.field("tenant_id").isin(tenants))
    unique = pc.count_distinct(bench_rows.column("event_id")).as_py()

    print(f"sink committed while loading: {sink_rate:,.0f} records/s; load start → drained: {overall_rate:,.0f}/s")
    print(f"consumer lag (records) while loading: max {max(lag):,}, mean 1st half {statistics.mean(lag[:half]):,.0f}"
          f", mean 2nd half {statistics.mean(lag[half:]):,.0f}")
    print(f"drain after load end: {drained - load_end:.1f}s")
    print(f"archive lag per object ({len(lags)} objects): p50 {percentile(lags, 50):.1f}s, "
          f"p95 {percentile(lags, 95):.1f}s, max {max(lags):.1f}s")
    print(f"bench events archived: {bench_rows.num_rows} rows, {unique} unique of {sent} sent; "
          f"archive window count rows={count.rows} unique={count.unique_events}")
    consumer.close()
    if unique != sent:
        sys.exit("archive is missing bench events")


if __name__ == "__main__":
    main()
