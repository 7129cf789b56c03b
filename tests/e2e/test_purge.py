"""`lakepulse down --purge` leaves no state of the stack behind, and the stack starts again on the purged state.

Destructive: it deletes the running stack's data, so only `make test-purge` runs it (CI's last phase). It
needs a stack that has held data (the suite before it posts events, runs the hourly DAG and the speed layer),
and checks every store: Kafka's topics, MinIO's objects, Pinot's rows, Airflow's runs, the streaming
checkpoints, the alert state and the seam.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from lakepulse.alerts.service import AlertSettings
from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.batch.pinot import broker_rows
from lakepulse.batch.seam import production_seam_uri, read_seam
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.lake import missing_relations
from lakepulse.platform.components.minio import s3_client
from lakepulse.settings import Settings
from streaming.config import StreamingSettings

pytestmark = [pytest.mark.integration, pytest.mark.destructive]

LAKEPULSE = str(Path(sys.executable).parent / "lakepulse")


def lakepulse(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (without demo traffic, so nothing writes to the purged stores but the stack itself)."""
    env = {**os.environ, "LAKEPULSE_DEMO_RATE": "0", "COLUMNS": "500"}  # wide: no wrapped paths in what it says
    return subprocess.run([LAKEPULSE, *args], capture_output=True, text=True, env=env, timeout=1800)


def raw_records(settings: Settings) -> int:
    """Records in events.raw (sum of end offsets: a purged log starts again at 0)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "purge-check"})
    try:
        topic = settings.topic_events_raw
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def objects(settings: Settings, prefix: str) -> int:
    listing = s3_client(settings).list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix, MaxKeys=10)
    return int(listing.get("KeyCount", 0))


def pinot_rows(settings: Settings) -> int:
    rows = broker_rows(settings.pinot_broker_url, "SELECT COUNT(*) AS n FROM metrics_minute")
    return int(rows[0]["n"]) if rows else 0


def test_purge_leaves_nothing_and_the_stack_starts_again(stack: Context) -> None:
    settings = stack.settings
    # What the suite left behind: the stores this test then finds empty.
    assert raw_records(settings) > 0 and objects(settings, "raw/") > 0 and pinot_rows(settings) > 0
    checkpoints = StreamingSettings().checkpoints(settings)
    assert checkpoints.exists()

    purged_at = datetime.now(UTC)
    down = lakepulse("down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    said = down.stdout + down.stderr
    for store in ("data", "checkpoints", "alerts"):
        assert f"deleted {settings.state_dir / store} (" in said, said
    assert sorted(p.name for p in settings.state_dir.iterdir()) == ["logs"]
    assert not checkpoints.exists()

    started = time.monotonic()
    up = lakepulse("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    print(f"\nup after purge: {time.monotonic() - started:.0f} s")

    assert raw_records(settings) == 0
    assert objects(settings, "raw/") == 0
    assert read_seam(settings, production_seam_uri(settings)) is None
    assert missing_relations(stack) == set()  # empty tables and views, published again
    assert pinot_rows(settings) == 0
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(stack))
    # The scheduler may already have queued the latest tick again on the new database: no run from before.
    assert [r for r in api.runs(HOURLY_DAG) if r.get("queued_at") and
            datetime.fromisoformat(r["queued_at"]) < purged_at] == []
    state = AlertSettings().state_path(settings)
    assert not state.exists() or state.read_text().strip() in ("", "{}")
