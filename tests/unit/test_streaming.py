"""Pure pieces of the streaming job: late thresholds per micro-batch, lag from progress, transforms."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lakepulse.settings import Settings
from lakepulse.spark_session import stop_spark
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
    assert [r["is_late"] for r in with_is_late(valid_df, None).collect()] == [False]

    prep_df = spark.createDataFrame(
        [("t1", "o1", datetime(2026, 5, 1, 12, 0, 0, 123456), datetime(2026, 5, 1, 12, 3, 0), 179.876544)],
        "tenant_id string, order_id string, confirmed_at timestamp, occurred_at timestamp, prep_seconds double",
    )
    back = with_parsed_prep(with_prep_records(prep_df).selectExpr("CAST(value AS BINARY) AS value"))
    assert back.collect() == prep_df.collect()


@pytest.mark.spark
def test_an_event_is_late_by_the_watermark_of_the_minute_batch_that_read_its_offset(spark) -> None:
    from pyspark.sql import Row

    from streaming.transforms import DROPPED_RANGE_SCHEMA, with_events_and_raw, with_is_late

    def record(partition: int, offset: int, at: datetime) -> Row:
        event = {"event_id": f"e{partition}-{offset}", "tenant_id": "t1", "event_type": "page_view",
                 "occurred_at": at.isoformat().replace("+00:00", "Z"), "source": "s", "properties": {}}
        return Row(partition=partition, offset=offset, value=json.dumps(event).encode())

    minute = timedelta(minutes=1)
    kafka_df = spark.createDataFrame([
        record(0, 4, T - 2 * minute),  # read by a batch that dropped up to T - minute: late
        record(0, 5, T - 2 * minute),  # read by a batch with no watermark: counted, so not late
        record(1, 4, T),  # at its batch's watermark: late
        record(1, 9, T - 2 * minute),  # not read by the minute query yet: the fallback threshold decides
    ])
    dropped_df = spark.createDataFrame(
        [(0, 0, 5, int((T - minute).timestamp() * 1000)), (0, 5, 9, 0), (1, 0, 5, int(T.timestamp() * 1000))],
        DROPPED_RANGE_SCHEMA,
    )
    events_df = with_events_and_raw(kafka_df)
    late = {r["event_id"]: r["is_late"] for r in with_is_late(events_df, T - 3 * minute, dropped_df).collect()}
    assert late == {"e0-4": True, "e0-5": False, "e1-4": True, "e1-9": False}
    late = {r["event_id"]: r["is_late"] for r in with_is_late(events_df, T - minute, dropped_df).collect()}
    assert late["e1-9"] is True and late["e0-5"] is False


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


def test_selected_queries_keep_the_job_order_and_refuse_unknown_names() -> None:
    known = ("minute", "distinct", "orders")
    assert StreamingSettings(queries="").selected_queries(known) == known
    assert StreamingSettings(queries="orders, minute").selected_queries(known) == ("minute", "orders")
    with pytest.raises(ValueError, match="unknown streaming queries \\['minutes'\\]"):
        StreamingSettings(queries="minutes").selected_queries(known)


def test_offset_log_says_which_minute_batch_read_an_offset_and_what_it_dropped(tmp_path: Path) -> None:
    from streaming.late import DroppedRange, dropped_ranges, newest_watermark, read_offset_log

    offsets = tmp_path / "minute" / "offsets"
    assert read_offset_log(tmp_path / "minute", "raw") == {}  # no checkpoint yet
    offsets.mkdir(parents=True)

    def batch(n: int, watermark_ms: int, ends: dict[str, int]) -> None:
        meta = json.dumps({"batchWatermarkMs": watermark_ms, "batchTimestampMs": 1})
        (offsets / str(n)).write_text(f"v1\n{meta}\n{json.dumps({'raw': ends})}\n")

    batch(0, 0, {"0": 5, "1": 3})
    batch(1, 1000, {"0": 9, "1": 3})  # partition 1 read nothing new
    batch(2, 2000, {"0": 12, "1": 7})
    batch(10, 9000, {"0": 40, "1": 40})  # 3..9 no longer retained: its start is unknown
    (offsets / ".2.crc").write_bytes(b"\x00")  # Hadoop side file
    (offsets / "11").write_text("v1\n")  # being written
    log = read_offset_log(tmp_path / "minute", "raw")
    assert sorted(log) == [0, 1, 2, 10]
    # Batch N drops what is at or before batch N-1's watermark; batch 0 drops nothing.
    assert dropped_ranges(log) == [
        DroppedRange(0, 0, 5, 0), DroppedRange(1, 0, 3, 0),
        DroppedRange(0, 5, 9, 0),
        DroppedRange(0, 9, 12, 1000), DroppedRange(1, 3, 7, 1000),
    ]
    assert newest_watermark(log) == datetime.fromtimestamp(9, UTC)
    assert newest_watermark({0: (0, {})}) is None


def test_launcher_merges_the_children_readiness_and_metrics() -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    from streaming.launcher import merged_families, merged_health

    minute = {"ready": True, "queries": {"minute": {"active": True, "batch": 7}}, "failed": {},
              "offsets_behind": 3, "freshness_s": None}
    state = {"ready": True, "queries": {"orders": {"active": True, "batch": 2}}, "failed": {},
             "offsets_behind": 40, "freshness_s": 1.5}
    both = merged_health([minute, state], ["minute", "state"])
    assert both["ready"] and both["offsets_behind"] == 43 and both["freshness_s"] == 1.5
    assert set(both["queries"]) == {"minute", "orders"}
    assert not merged_health([minute, None], ["minute", "state"])["ready"]  # a child that does not answer
    assert not merged_health([minute, {**state, "ready": False}], ["minute", "state"])["ready"]

    def exposition(query: str, late: float) -> str:
        registry = CollectorRegistry()
        Gauge("lag", "h", ["query"], registry=registry).labels(query).set(late + 1)
        if late:
            Counter("late_events", "h", ["tenant_id"], registry=registry).labels("t1").inc(late)
        return generate_latest(registry).decode()

    families = {f.name: f for f in merged_families([exposition("minute", 0), exposition("orders", 4)])}
    assert {s.labels["query"]: s.value for s in families["lag"].samples} == {"minute": 1.0, "orders": 5.0}
    assert [s.value for s in families["late_events"].samples if s.name == "late_events_total"] == [4.0]


def test_a_launched_child_stops_when_its_launcher_is_killed(tmp_path: Path) -> None:
    """Real processes: launcher → child running exit_with_parent; kill -9 the launcher → the child stops."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = (
        "import threading, time\n"
        "from streaming.launcher import exit_with_parent\n"
        "done = threading.Event()\n"
        "exit_with_parent(done.set)\n"
        f"open({str(tmp_path / 'ready')!r}, 'w').close()\n"
        "assert done.wait(60), 'still running a minute after the launcher died'\n"
        f"open({str(tmp_path / 'stopped')!r}, 'w').close()\n"
    )
    launcher = (
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, 'LAKEPULSE_STREAMING_PARENT_PID': str(os.getpid())}}\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}], env=env)\n"
        "time.sleep(600)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "child never started"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while not (tmp_path / "stopped").exists():
            assert time.monotonic() < deadline, "the orphaned child did not stop"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_endpoints_answer_per_request_and_404_otherwise() -> None:
    import httpx

    from streaming.monitor import json_answer, serve_endpoints

    calls = []

    def healthz() -> tuple[bytes, int, str]:
        calls.append(1)
        return json_answer({"ready": False, "n": len(calls)}, 503)

    server = serve_endpoints({"/healthz": healthz}, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        first, second = httpx.get(f"{base}/healthz"), httpx.get(f"{base}/healthz")
        assert (first.status_code, first.json()["n"], second.json()["n"]) == (503, 1, 2)
        assert httpx.get(f"{base}/other").status_code == 404
    finally:
        server.shutdown()


class StoppableSession:
    """What stop_spark uses of a SparkSession: stop() and the process of its JVM."""

    def __init__(self, jvm: subprocess.Popen[bytes]) -> None:
        self.sparkContext = SimpleNamespace(_gateway=SimpleNamespace(proc=jvm))
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(("command", "returncode"), [(["cat"], 0), (["sleep", "60"], -signal.SIGKILL)])
def test_stop_spark_ends_the_jvm_even_when_it_ignores_its_stdin_closing(command: list[str], returncode: int) -> None:
    # `cat` exits when its stdin closes, as PySpark's JVM does; `sleep` does not, like a JVM whose shutdown
    # hooks hang: it is killed after the timeout.
    jvm = subprocess.Popen(command, stdin=subprocess.PIPE)
    session: Any = StoppableSession(jvm)
    stop_spark(session, timeout_s=1.0)
    assert session.stopped and jvm.returncode == returncode


@pytest.mark.spark
def test_events_far_ahead_of_processing_time_get_a_dlq_reason_and_are_filtered(spark) -> None:
    from pyspark.sql import Row

    from streaming.transforms import filter_plausible_event_times, with_dlq_reason, with_events_and_raw

    now = datetime.now(UTC)
    stamps = {"now": now, "ahead_1_min": now + timedelta(minutes=1), "ahead_1_h": now + timedelta(hours=1),
              "2099": datetime(2099, 1, 1, tzinfo=UTC)}
    values = [json.dumps({"event_id": name, "tenant_id": "t1", "event_type": "page_view", "source": "s",
                          "occurred_at": at.isoformat().replace("+00:00", "Z"), "properties": {}})
              for name, at in stamps.items()]
    events_df = with_events_and_raw(spark.createDataFrame([Row(value=v.encode()) for v in values]))
    reasons = {r["event_id"]: r["dlq_reason"] for r in with_dlq_reason(events_df, 300).collect()}
    future = "occurred_at_in_future: more than 300 s ahead of processing time"
    assert reasons == {"now": None, "ahead_1_min": None, "ahead_1_h": future, "2099": future}
    assert {r["dlq_reason"] for r in with_dlq_reason(events_df).collect()} == {None}  # no skew: no such check
    kept = sorted(r["event_id"] for r in filter_plausible_event_times(events_df, 300).collect())
    assert kept == ["ahead_1_min", "now"]


@pytest.mark.spark
def test_an_event_dated_2099_does_not_move_the_watermark_of_the_minute_query(spark, tmp_path: Path) -> None:
    """The issue's bug, on the minute query's own plan: a 2099 event in one micro-batch used to set the
    watermark to 2098-12-31T23:58, so the next micro-batches' current events were all dropped as late."""
    from streaming.job import sketch_split, with_minute_records, with_watermarked_events

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)

    def send(name: str, *events: tuple[str, datetime]) -> None:
        lines = [json.dumps({"event_id": event_id, "tenant_id": "t-wm", "event_type": "page_view", "source": "s",
                             "occurred_at": at.isoformat().replace("+00:00", "Z"), "properties": {}})
                 for event_id, at in events]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        (tmp_path / name).rename(incoming / name)  # whole files only: the source lists the directory

    raw_df = spark.readStream.format("text").load(str(incoming))
    plain, _ = sketch_split()
    records_df = with_minute_records(with_watermarked_events(raw_df, "2 minutes", 300.0), plain)
    query = (records_df.writeStream.format("memory").queryName("wm_2099").outputMode("update")
             .option("checkpointLocation", str(tmp_path / "checkpoint")).start())
    try:
        send("1.json", ("far", datetime(2099, 1, 1, tzinfo=UTC)), ("first", now - timedelta(seconds=30)))
        query.processAllAvailable()
        send("2.json", ("second", now - timedelta(seconds=20)))
        query.processAllAvailable()
        send("3.json", ("third", now - timedelta(seconds=10)))
        query.processAllAvailable()
        watermark = query.lastProgress["eventTime"]["watermark"]
        values = [json.loads(r[0]) for r in spark.sql("SELECT CAST(value AS STRING) FROM wm_2099").collect()]
    finally:
        query.stop()
    # The watermark follows the current events (the newest minus 2 minutes), not 2099.
    newest = now - timedelta(seconds=10)
    assert watermark == (newest - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # Update mode emits a row per change: the last (largest) count of each minute's `events` row.
    counts: dict[object, int] = {}
    for row in values:
        if row["metric"] == "events":
            counts[row["window_start"]] = max(counts.get(row["window_start"], 0), row["count"])
    assert sum(counts.values()) == 3  # first, second and third; nothing of 2099


def test_a_local_master_never_expires_its_in_process_executor() -> None:
    from lakepulse.spark_session import local_mode_conf

    assert int(local_mode_conf("local[2]")["spark.storage.blockManagerHeartbeatTimeoutMs"]) >= 3600 * 1000
    assert local_mode_conf("spark://spark-master:7077") == {}
