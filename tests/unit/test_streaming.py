"""Pure pieces of the streaming job: late thresholds per micro-batch, lag from progress, transforms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakepulse.settings import Settings
from streaming.config import StreamingSettings, interval_seconds
from streaming.late import LateTracker
from streaming.monitor import offsets_behind, watermark_epoch

T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_job_runs_more_local_task_threads_than_cores_and_keeps_a_cluster_master() -> None:
    streaming = StreamingSettings(local_task_slots=4)
    assert streaming.spark_master(Settings(spark_master="local[2]")) == "local[4]"
    assert streaming.spark_master(Settings(spark_master="spark://spark-master:7077")) == "spark://spark-master:7077"


def test_threshold_is_max_of_earlier_batches_minus_delay(tmp_path: Path) -> None:
    tracker = LateTracker(tmp_path / "t.json", timedelta(minutes=2))
    assert tracker.threshold(0) is None  # nothing seen yet: nothing is late
    tracker.observe(0, T + timedelta(minutes=10))
    assert tracker.threshold(1) == T + timedelta(minutes=8)
    tracker.observe(1, T + timedelta(minutes=5))  # an older batch max never lowers it
    assert tracker.threshold(2) == T + timedelta(minutes=8)
    tracker.observe(2, None)  # an empty batch
    assert tracker.threshold(3, floor=T + timedelta(minutes=9)) == T + timedelta(minutes=9)


def test_replayed_batch_gets_the_same_threshold(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    tracker = LateTracker(path, timedelta(minutes=2))
    tracker.threshold(0)
    tracker.observe(0, T)
    first = tracker.threshold(1)
    tracker.observe(1, T + timedelta(hours=1))
    # Crash after batch 1 wrote its outputs but before Spark committed it: batch 1 runs again.
    replay = LateTracker(path, timedelta(minutes=2))
    assert replay.threshold(1, floor=T + timedelta(hours=5)) == first
    # Crash before observe(): the stored mark is the threshold itself.
    again = LateTracker(path, timedelta(minutes=2))
    assert again.threshold(1) == first


def test_offsets_behind_and_watermark_from_progress() -> None:
    progress = {
        "sources": [{"latestOffset": json.dumps({"events.raw": {"0": 100, "1": 50}}),
                     "endOffset": json.dumps({"events.raw": {"0": 90, "1": 50}})}],
        "eventTime": {"watermark": "2026-05-01T12:00:00.000Z"},
    }
    assert offsets_behind(progress) == 10
    assert watermark_epoch(progress) == T.timestamp()
    assert watermark_epoch({"eventTime": {"watermark": "1970-01-01T00:00:00.000Z"}}) is None


def test_interval_seconds() -> None:
    assert interval_seconds("2 minutes") == 120
    assert interval_seconds("1 second") == 1
    with pytest.raises(ValueError):
        interval_seconds("2 fortnights")


@pytest.mark.spark
def test_dlq_reasons_late_flag_and_prep_round_trip(spark) -> None:
    from pyspark.sql import Row

    from streaming.transforms import (
        with_dlq_reason,
        with_events_and_raw,
        with_is_late,
        with_parsed_prep,
        with_prep_records,
    )

    good = {"event_id": "e1", "tenant_id": "t1", "event_type": "page_view",
            "occurred_at": "2026-05-01T12:00:00Z", "source": "s", "properties": {}}
    values = [json.dumps(good), '{"tenant_id": "t1", "event_ty', json.dumps({**good, "tenant_id": None}),
              json.dumps({**good, "occurred_at": "noon"})]
    kafka_df = spark.createDataFrame([Row(value=v.encode()) for v in values])
    events_df = with_dlq_reason(with_events_and_raw(kafka_df))
    assert [r["dlq_reason"] for r in events_df.collect()] == [
        None, "value is not valid JSON", "missing or invalid tenant_id", "missing or unparseable occurred_at"]

    valid_df = events_df.filter("dlq_reason IS NULL")
    assert [r["is_late"] for r in with_is_late(valid_df, T).collect()] == [True]  # at the watermark: late
    assert [r["is_late"] for r in with_is_late(valid_df, T - timedelta(microseconds=1)).collect()] == [False]

    prep_df = spark.createDataFrame(
        [("t1", "o1", datetime(2026, 5, 1, 12, 0, 0, 123456), datetime(2026, 5, 1, 12, 3, 0), 179.876544)],
        "tenant_id string, order_id string, confirmed_at timestamp, occurred_at timestamp, prep_seconds double",
    )
    back = with_parsed_prep(with_prep_records(prep_df).selectExpr("CAST(value AS BINARY) AS value"))
    assert back.collect() == prep_df.collect()


def test_component_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakepulse.platform.components.base import Context
    from lakepulse.platform.components.streaming import Streaming
    from lakepulse.settings import Settings

    monkeypatch.setenv("LAKEPULSE_STREAMING_METRICS_PORT", "1")  # nothing listens there
    ctx = Context(settings=Settings(state_dir=tmp_path), repo=Path(__file__).resolve().parents[2])
    job, alerts = Streaming().services(ctx)
    assert (job.name, job.command[1:]) == ("streaming", ["-m", "streaming.job"])
    assert job.env["LAKEPULSE_STREAMING_CHECKPOINT_DIR"] == str(tmp_path / "checkpoints" / "streaming")
    assert (alerts.name, alerts.command[1:]) == ("alerts", ["-m", "lakepulse.alerts"])
    assert not job.ready() and not alerts.ready()
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "heartbeat").touch()
    assert alerts.ready()


@pytest.mark.spark
def test_raw_keeping_parse_equals_the_library_parse(spark) -> None:
    from pyspark.sql import Row

    from lakepulse.aggregations import with_parsed_events
    from streaming.transforms import with_events_and_raw

    base = {"event_id": "e1", "tenant_id": "t1", "event_type": "page_view", "source": "s",
            "properties": {"user_id": "u", "items": [{"item_id": "i", "quantity": "2"}]}}
    times = ["2026-05-01T12:00:00Z", "2026-05-01t12:00:00.123456z", "2026-05-01T14:00:00+02:00", "noon"]
    values = [json.dumps({**base, "occurred_at": t, "received_at": t}) for t in times] + ["{bad", "[1, 2]"]
    kafka_df = spark.createDataFrame([Row(value=v.encode()) for v in values])
    assert with_events_and_raw(kafka_df).drop("raw").collect() == with_parsed_events(kafka_df).collect()
