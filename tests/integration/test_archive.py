"""Raw archive end to end: events.raw → raw-archive Connect sink → Parquet in MinIO → read back with pyarrow.

Invariant 1 of design.md §4: every accepted event lands in the archive, exactly once after dedup by
event_id — also when the Connect worker is killed with SIGKILL in the middle of a load.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from lakepulse import archive
from lakepulse.generator.scenario import GeneratedEvent, GeneratorConfig, generate_events
from lakepulse.generator.targets import KafkaTarget, paced, run
from lakepulse.ingest.body import line_items
from lakepulse.ingest.processing import process_items
from lakepulse.platform.components.base import Context, http_ok, wait_until
from lakepulse.platform.components.connect_sink import (
    RawSink,
    committed_offsets,
    connector_config,
    connector_status,
    states,
)
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings
from tests.integration.ingest_fixtures import topics

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "connect", "minio")]

CONNECT_RESTART_TIMEOUT_S = 240
# The connector's flush interval, plus the worker's poll/commit granularity, plus upload time.
ARCHIVE_TIMEOUT_S = 300


@pytest.fixture
def raw_sink(stack: Context) -> RawSink:
    """The raw-archive connector, built, loaded by the worker and RUNNING (restarting connect if needed)."""
    sink = RawSink()
    sink.provision(stack)
    url = stack.settings.kafka_connect_url
    plugins = httpx.get(f"{url}/connector-plugins", timeout=10).json()
    if not any(p["class"].endswith("RawArchiveSinkConnector") for p in plugins):
        # The worker scans plugin.path only at start: it started before the plugin existed.
        restart_connect(stack)
    sink.bootstrap(stack)
    return sink


def restart_connect(ctx: Context) -> None:
    sup = Supervisor(ctx)
    sup.stop("connect")
    sup.start("connect")
    wait_connect(ctx)


def wait_connect(ctx: Context) -> None:
    url = ctx.settings.kafka_connect_url
    wait_until(lambda: http_ok(f"{url}/connectors"), CONNECT_RESTART_TIMEOUT_S, "connect REST API")


def accepted(events: list[GeneratedEvent]) -> tuple[Counter[str], set[str]]:
    """event_id → how many records the ingest rules put on events.raw (duplicates included); tenants."""
    items = line_items(b"\n".join(e.line for e in events))
    batch = process_items(items, datetime.now(UTC), "test", new_event_id=lambda: "server-assigned")
    values = [orjson.loads(r.value) for r in batch.raw_records]
    ids = Counter(v["event_id"] for v in values)
    assert "server-assigned" not in ids, "the generator always sets event_id on valid events"
    return ids, {v["tenant_id"] for v in values}


def archived(settings: Settings, tenants: set[str], start: datetime) -> pa.Table:
    """Every archived row of these tenants with an event time from `start` on."""
    return archive.read_events(settings, start, datetime.now(UTC) + timedelta(hours=1),
                               where=pc.field("tenant_id").isin(sorted(tenants)))


def wait_archived(settings: Settings, expected: set[str], tenants: set[str], start: datetime) -> pa.Table:
    """Poll the archive (bounded) until every expected event_id is there; returns the rows."""
    deadline = time.monotonic() + ARCHIVE_TIMEOUT_S
    while True:
        rows = archived(settings, tenants, start)
        missing = expected - set(rows.column("event_id").to_pylist())
        if not missing:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"{len(missing)} of {len(expected)} accepted events not in the archive after "
                        f"{ARCHIVE_TIMEOUT_S}s, e.g. {sorted(missing)[:3]}")
        time.sleep(5)


def test_every_accepted_event_lands_once_after_dedup(stack: Context, settings: Settings, raw_sink: RawSink,
                                                     run_id: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    config = GeneratorConfig(rate=1000, duration_s=3, time_scale=2400, seed=5, tenants=4, start=start,
                             late_fraction=0.05, lateness_s=1800, duplicate_fraction=0.1,
                             malformed_fraction=0.03, run_id=f"arc{run_id}")
    events = list(generate_events(config))
    expected, tenants = accepted(events)
    run(events, KafkaTarget(settings.kafka_bootstrap, settings.topic_events_raw, settings.topic_events_dlq))
    assert sum(expected.values()) > len(expected) > 1000  # K events, with duplicates among the records

    rows = wait_archived(settings, set(expected), tenants, start - timedelta(hours=1))

    # No crash: each Kafka record is archived exactly once, so the rows repeat exactly what was sent twice.
    assert Counter(rows.column("event_id").to_pylist()) == expected
    unique = archive.dedup_by_event_id(rows)
    assert unique.num_rows == len(expected)
    # Spread over several event hours, each row in the hour partition of its occurred_at.
    assert len(set(rows.column("event_hour").to_pylist())) >= 2
    for row in unique.select(["occurred_at", "event_date", "event_hour"]).to_pylist():
        assert (row["event_date"], row["event_hour"]) == (row["occurred_at"].date().isoformat(),
                                                           row["occurred_at"].hour)
    # Envelope typed, properties lossless (JSON text exactly as sent), Kafka position recoverable.
    sent = {orjson.loads(e.line)["event_id"]: orjson.loads(e.line) for e in events if e.is_valid}
    for row in unique.to_pylist():
        event = sent[row["event_id"]]
        assert row["occurred_at"] == datetime.fromisoformat(event["occurred_at"])
        assert json.loads(row["properties"]) == event["properties"]
        assert (row["tenant_id"], row["event_type"], row["source"]) == (
            event["tenant_id"], event["event_type"], event["source"])
        assert row["received_at"] is not None and row["kafka_topic"] == settings.topic_events_raw
    positions = set(zip(rows.column("kafka_partition").to_pylist(), rows.column("kafka_offset").to_pylist(),
                        strict=True))
    assert len(positions) == rows.num_rows
    # The CLI's count agrees with the rows read.
    counted = archive.count_events(settings, start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))
    assert counted.unique_events >= len(expected)


def test_kill_9_of_the_connect_worker_loses_nothing(stack: Context, settings: Settings, raw_sink: RawSink,
                                                    run_id: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    config = GeneratorConfig(rate=600, duration_s=30, seed=9, tenants=4, start=start,
                             duplicate_fraction=0.05, run_id=f"crash{run_id}")
    events = list(generate_events(config))
    expected, tenants = accepted(events)
    name, _ = connector_config(stack.repo, settings)

    failure: list[BaseException] = []

    def load() -> None:
        try:
            target = KafkaTarget(settings.kafka_bootstrap, settings.topic_events_raw, settings.topic_events_dlq,
                                 batch_size=200)
            run(paced(events, config), target)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    producer = threading.Thread(target=load, daemon=True)
    producer.start()
    time.sleep(12)  # mid-load: some partitions have open batches, some uploads may be uncommitted

    sup = Supervisor(stack)
    pid = int(sup.processes()["connect"]["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: int(sup.processes()["connect"].get("pid") or 0) not in (0, pid), 60,
               "supervisord restarting connect")
    wait_connect(stack)
    wait_until(lambda: all(s == "RUNNING" for s in states(connector_status(settings.kafka_connect_url, name)))
               and len(states(connector_status(settings.kafka_connect_url, name))) > 1, 120,
               "raw-archive tasks running again")
    producer.join(timeout=120)
    assert not producer.is_alive() and not failure, failure

    rows = wait_archived(settings, set(expected), tenants, start - timedelta(minutes=5))

    # Nothing lost; the replay may have written some records twice, which dedup by event_id removes.
    ids = Counter(rows.column("event_id").to_pylist())
    assert set(ids) == set(expected)
    assert all(ids[i] >= n for i, n in expected.items())
    unique = archive.dedup_by_event_id(rows)
    assert unique.num_rows == len(expected)
    assert sorted(unique.column("event_id").to_pylist()) == sorted(expected)
    replayed = rows.num_rows - sum(expected.values())
    print(f"\narchive after kill -9: {rows.num_rows} rows for {sum(expected.values())} records sent, "
          f"{replayed} written twice by the replay, {unique.num_rows} unique events")


@pytest.mark.needs("minio")
def test_an_archive_not_yet_flushed_reads_as_empty(stack: Context, settings: Settings, run_id: str) -> None:
    prefix = f"tests/{run_id}/never-written"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert archive.read_events(settings, start, start + timedelta(hours=2), prefix=prefix).num_rows == 0
    assert archive.count_events(settings, start, start + timedelta(hours=2), prefix=prefix).rows == 0
    assert archive.partitions(settings, prefix) == []


@pytest.mark.needs("kafka")
def test_committed_offsets_reads_back_what_a_group_committed(stack: Context, settings: Settings,
                                                             run_id: str) -> None:
    """The hourly run's archive snapshot comes from this read: exactly the group's commits, 0 where it has none."""
    bootstrap = settings.kafka_bootstrap
    topic, group = f"test.archive.offsets.{run_id}", f"test-archive-offsets-{run_id}"
    with topics(bootstrap, [topic], partitions=3):
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for partition, records in ((0, 5), (1, 3), (2, 2)):
            for i in range(records):
                producer.produce(topic, value=f"{run_id}-{i}".encode(), partition=partition)
        assert producer.flush(30) == 0, "records left unacknowledged"
        # What Connect does for the sink: commit per partition, here 4 of 5 records of 0, all of 1, none of 2.
        committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            committer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 3)], asynchronous=False)
        finally:
            committer.close()
        try:
            assert committed_offsets(bootstrap, group, [topic]) == {f"{topic}:0": 4, f"{topic}:1": 3, f"{topic}:2": 0}
            assert committed_offsets(bootstrap, f"{group}-never", [topic]) == {f"{topic}:{p}": 0 for p in range(3)}
            # A topic that does not exist is an error, never an empty snapshot.
            with pytest.raises(KafkaException):
                committed_offsets(bootstrap, group, [f"{topic}.absent"])
        finally:
            admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
            for future in admin.delete_consumer_groups([group]).values():
                future.result(30)
