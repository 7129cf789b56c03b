"""Ingest benchmarks: events/s from the SDK through the API into Kafka (acknowledged), and Kafka clients.

    .venv/bin/python bench/ingest.py api --events 300000 --workers 2
    .venv/bin/python bench/ingest.py clients --events 200000

Needs the local broker (`lakepulse up`); uses throwaway topics and deletes them afterwards. The API bench
authenticates like a real producer: one local producer token for the sample's tenants, so every request pays
for verifying it and every event for the tenant check.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.servers import free_port
from lakepulse.auth.tokens import mint_token
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.ingest.sink import producer_config
from lakepulse.sdk import IngestClient
from lakepulse.settings import get_settings

REPO = Path(__file__).resolve().parents[1]


# Event times the ingest API accepts (within its age horizon), whenever the benchmark runs.
HOURS_AGO_3 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def sample_lines(count: int) -> list[bytes]:
    """Valid marketplace events from the generator (mixed types, ~300 bytes each)."""
    config = GeneratorConfig(
        rate=200, duration_s=120, time_scale=60, seed=1, start=HOURS_AGO_3
    )
    return [event.line for event in itertools.islice(generate_events(config), count)]


def create_topic(bootstrap: str, name: str, partitions: int) -> AdminClient:
    """Create a throwaway topic; returns the admin client to delete it with."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)
    return admin


def bench_api(events: int, workers: int, senders: int, batch_size: int) -> float:
    """Events/s acknowledged by the API (hence by Kafka) for `events` events sent through the SDK."""
    settings = get_settings()
    topic = f"bench.{uuid.uuid4().hex[:8]}.events.raw"
    admin = create_topic(settings.kafka_bootstrap, topic, settings.events_raw_partitions)
    port = free_port()
    log = (REPO / "bench" / "ingest-uvicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "lakepulse.ingest.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO, stdout=log, stderr=log,
        env={**os.environ, "LAKEPULSE_TOPIC_EVENTS_RAW": topic, "LAKEPULSE_TOPIC_EVENTS_DLQ": topic + ".dlq"},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        lines = sample_lines(20_000)
        tenants = sorted({orjson.loads(line)["tenant_id"] for line in lines})
        token = mint_token(settings, role="producer", tenants=tenants, ttl=timedelta(hours=1), subject="bench")
        with IngestClient(
            url, batch_size=batch_size, senders=senders, max_buffer=batch_size * senders * 4, token=token
        ) as warm:
            for line in lines[: batch_size * senders * 2]:
                warm.send_line(line)  # warms the producers of every worker
        client = IngestClient(
            url, batch_size=batch_size, senders=senders, max_buffer=batch_size * senders * 4, token=token
        )
        started = time.perf_counter()
        for line in itertools.islice(itertools.cycle(lines), events):
            while True:
                try:
                    client.send_line(line)
                    break
                except Exception:  # BufferFullError: the API is the bottleneck, which is what we measure
                    time.sleep(0.001)
        stats = client.flush()
        elapsed = time.perf_counter() - started
        client.close()
        if stats.accepted != events:
            raise RuntimeError(f"only {stats.accepted} of {events} acknowledged: {stats}")
        return events / elapsed
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
        admin.delete_topics([topic])


def bench_confluent(bootstrap: str, topic: str, lines: list[bytes], events: int) -> float:
    """Messages/s produced and acknowledged (acks=all, idempotent) by confluent-kafka."""
    producer = Producer(producer_config(bootstrap, delivery_timeout_s=60))
    started = time.perf_counter()
    for number, line in enumerate(itertools.islice(itertools.cycle(lines), events)):
        while True:
            try:
                producer.produce(topic, line, b"rest-%d" % (number % 20))
                break
            except BufferError:
                producer.poll(0.01)
        if number % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("confluent-kafka did not deliver everything")
    return events / (time.perf_counter() - started)


def bench_kafka_python(bootstrap: str, topic: str, lines: list[bytes], events: int) -> float:
    """Messages/s produced and acknowledged (acks=all, idempotent) by kafka-python."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, batch_size=1_000_000,
        compression_type="lz4",
    )  # fmt: skip
    started = time.perf_counter()
    for number, line in enumerate(itertools.islice(itertools.cycle(lines), events)):
        producer.send(topic, line, key=b"rest-%d" % (number % 20))
    producer.flush(120)
    elapsed = time.perf_counter() - started
    producer.close()
    return events / elapsed


def bench_clients(events: int) -> dict[str, float]:
    """Produce throughput of both Kafka clients against the real broker, same payloads and durability."""
    settings = get_settings()
    lines = sample_lines(20_000)
    results = {}
    for name, bench in (("confluent-kafka", bench_confluent), ("kafka-python", bench_kafka_python)):
        topic = f"bench.{uuid.uuid4().hex[:8]}.clients"
        admin = create_topic(settings.kafka_bootstrap, topic, settings.events_raw_partitions)
        try:
            results[name] = bench(settings.kafka_bootstrap, topic, lines, events)
        finally:
            admin.delete_topics([topic])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    api = sub.add_parser("api", help="SDK → API → Kafka, acknowledged events/s")
    api.add_argument("--events", type=int, default=300_000)
    api.add_argument("--workers", type=int, default=2)
    api.add_argument("--senders", type=int, default=4)
    api.add_argument("--batch-size", type=int, default=5000)
    clients = sub.add_parser("clients", help="confluent-kafka vs kafka-python produce throughput")
    clients.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    if args.what == "api":
        rate = bench_api(args.events, args.workers, args.senders, args.batch_size)
        print(f"ingest api: {rate:,.0f} events/s acknowledged ({args.events} events, {args.workers} workers, "
              f"{args.senders} SDK senders, batches of {args.batch_size})")  # fmt: skip
    else:
        for name, rate in bench_clients(args.events).items():
            print(
                f"{name}: {rate:,.0f} messages/s acknowledged (acks=all, idempotent, lz4, {args.events} msgs)"
            )


if __name__ == "__main__":
    main()
