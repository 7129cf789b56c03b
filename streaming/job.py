"""The speed layer job: `events.raw` → minute aggregates, live order/courier state → Pinot upsert topics.

Seven micro-batch queries. By default (`separate_minute_jvm`) `minute`, `orders` and `couriers` run in a Spark
application of their own and the four others share a second one at a lower OS priority (see streaming.launcher); with
`LAKEPULSE_STREAMING_SEPARATE_MINUTE_JVM=false` all seven share one (local mode, 4 task threads):

| query     | plan                                                                   | sink (mode)              |
|-----------|------------------------------------------------------------------------|--------------------------|
| minute    | parse → watermark → dedup by event_id → with_minute_partials (plain)   | metrics.minute (update)  |
| distinct  | parse → watermark → dedup by event_id → with_minute_partials (sketch)  | metrics.minute (update)  |
| orders    | parse → watermark → with_order_state                                   | orders.live (update)     |
| couriers  | parse → watermark → with_courier_state                                 | couriers.live (update)   |
| prep_join | parse → watermark → explode_prep_time_events (stream-stream join)      | events.prep (append)     |
| prep      | events.prep → watermark → dedup by pair → with_minute_partials(prep)   | metrics.minute (update)  |
| late_dlq  | parse → dead letters / beyond-the-watermark events (see streaming.late) | events.dlq, events.late  |

`minute` is what freshness is about: it runs on the short trigger, reads events.raw directly and keeps
two state stores (dedup and aggregation; with_minute_partials builds its rows without a union, so the
dedup is planned once). Distinct metrics carry HLL/Theta sketches in their state, which would make every
group of the minute query costly, so they have a query of their own on the slower trigger, as have the
other queries, except `orders` and `couriers`: the dashboard's funnel and couriers waiting follow them, so they
run on a short trigger of their own (`live_trigger`). The late-events query finds, in the minute query's
checkpoint, which minute batch read each event and whether that batch dropped it (streaming.late), so it agrees
with the aggregation in either layout.

"watermark" is always preceded by a filter: an event more than `settings.event_max_future_skew_s` ahead of
processing time never reaches a watermark (one event dated 2099 would set it to 2099, and every later event of
every tenant would be dropped as late). The ingest API refuses such events; this guards every other way onto
events.raw. The late_dlq query dead-letters them with the reason `occurred_at_in_future: ...` and keeps them
out of its late thresholds.

Every sink is keyed by the row's primary key and Pinot upserts by it, so a micro-batch replayed after a
crash rewrites the same rows: restarts from the checkpoints double-count nothing. Order and courier state
are idempotent under duplicate events (first/last by event time), so only counting queries dedup.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import pyspark.sql.functions as F
from confluent_kafka.admin import AdminClient, NewTopic
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakepulse.aggregations import (
    COURIER_KEY,
    ORDER_KEY,
    explode_prep_time_events,
    filter_valid_events,
    split_by_sketch,
    with_courier_state,
    with_kafka_records,
    with_minute_partials,
    with_order_state,
    with_parsed_events,
)
from lakepulse.catalog import get_catalog
from lakepulse.settings import Settings, get_settings
from lakepulse.spark_session import build_spark, stop_spark
from streaming import launcher
from streaming.config import StreamingSettings
from streaming.late import LateTracker, dropped_ranges, newest_watermark, read_offset_log
from streaming.monitor import Monitor, listen, serve
from streaming.transforms import (
    DROPPED_RANGE_SCHEMA,
    PREP_KEY,
    filter_plausible_event_times,
    with_batch_summary,
    with_dlq_reason,
    with_dlq_records,
    with_events_and_raw,
    with_is_late,
    with_late_records,
    with_parsed_prep,
    with_prep_records,
)

log = logging.getLogger("lakepulse.streaming")

QUERIES: tuple[str, ...] = ("minute", "distinct", "orders", "couriers", "prep_join", "prep", "late_dlq")
# The prep aggregation sees pairs only once both events arrived; a wider watermark keeps a pair whose
# ready time is older than the main watermark (its confirmed event came late but in time) from dropping.
PREP_EXTRA_WATERMARK = timedelta(minutes=5)


# Reads ------------------------------------------------------------------------------------------------
def read_topic(spark: SparkSession, settings: Settings, streaming: StreamingSettings, topic: str) -> DataFrame:
    """A Kafka topic as a stream of raw records."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", streaming.starting_offsets)
        .option("maxOffsetsPerTrigger", streaming.max_offsets_per_trigger)
        # Retention may delete unread records of a stopped job; history is the batch layer's job.
        .option("failOnDataLoss", "false")
        .load()
    )


# Transforms (pure) ------------------------------------------------------------------------------------
def with_watermarked_events(raw_df: DataFrame, watermark: str, max_future_skew_s: float) -> DataFrame:
    """Kafka records → valid events not more than `max_future_skew_s` ahead of processing time, with the
    event-time watermark (what every stateful query starts from). The dropped future events go to the DLQ
    through the late_dlq query, with the same rule."""
    valid_df = filter_valid_events(with_parsed_events(raw_df))
    return filter_plausible_event_times(valid_df, max_future_skew_s).withWatermark("occurred_at", watermark)


def sketch_split(source: str = "events") -> tuple[list[str], list[str]]:
    """The source's metric names: (plain ones, distinct ones that carry sketches)."""
    plain, sketched = split_by_sketch(get_catalog().by_source(source))
    return [m.name for m in plain], [m.name for m in sketched]


def with_minute_records(events_df: DataFrame, metrics: list[str]) -> DataFrame:
    """Watermarked events → first copy per event_id → minute partial rows of `metrics` as Kafka records.

    A resend is the same event, so it carries the same `occurred_at`: keying the dedup state by
    (event_id, occurred_at) lets Spark evict an id as soon as its event time falls behind the watermark,
    when its resends would be dropped as late anyway. `dropDuplicatesWithinWatermark(["event_id"])` keeps
    each id until event time + delay falls behind the watermark, i.e. twice as long (4 minutes of ids at
    the 2-minute default), and Spark scans the whole dedup state on every micro-batch to evict.
    """
    deduped_df = events_df.dropDuplicates(["event_id", "occurred_at"])
    return with_kafka_records(with_minute_partials(deduped_df, metrics))


def with_prep_minute_records(prep_kafka_df: DataFrame, watermark: str, max_future_skew_s: float) -> DataFrame:
    """Prep-topic records → deduplicated pairs → prep_time minute partial rows as Kafka records."""
    prep_df = with_parsed_prep(prep_kafka_df).filter(F.col("tenant_id").isNotNull())
    # Its rows come from filtered events; a row written to the topic by anything else keeps its watermark too.
    prep_df = filter_plausible_event_times(prep_df, max_future_skew_s)
    deduped_df = prep_df.withWatermark("occurred_at", watermark).dropDuplicatesWithinWatermark(list(PREP_KEY))
    return with_kafka_records(with_minute_partials(deduped_df, source="prep_time"))


# Writes -----------------------------------------------------------------------------------------------
def kafka_sink(
    records_df: DataFrame, name: str, topic: str, mode: str, settings: Settings, trigger: str, checkpoints: Path
) -> StreamingQuery:
    """Start a query writing key/value records to a Kafka topic (in its own fair-scheduler pool)."""
    records_df.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", name)
    return (
        records_df.writeStream.queryName(name)
        .format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("topic", topic)
        .option("checkpointLocation", str(checkpoints / name))
        .outputMode(mode)
        .trigger(processingTime=trigger)
        .start()
    )


def write_records(records_df: DataFrame, topic: str, settings: Settings) -> None:
    """Batch-write key/value records to a Kafka topic (inside foreachBatch)."""
    (
        records_df.write.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("topic", topic)
        .save()
    )


def late_and_dlq_batch(
    settings: Settings, tracker: LateTracker, monitor: Monitor, minute_checkpoint: Path
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function of the late_dlq query (late = dropped by the minute query, see
    streaming.late)."""

    def run(batch_df: DataFrame, batch_id: int) -> None:
        minute_log = read_offset_log(minute_checkpoint, settings.topic_events_raw)
        threshold = tracker.threshold(batch_id, floor=newest_watermark(minute_log))
        ranges = [astuple(r) for r in dropped_ranges(minute_log)]
        dropped_df = batch_df.sparkSession.createDataFrame(ranges, DROPPED_RANGE_SCHEMA)
        events_df = with_dlq_reason(with_events_and_raw(batch_df), settings.event_max_future_skew_s)
        events_df = with_is_late(events_df, threshold, dropped_df).persist()
        try:
            # One pass for the common case (nothing rejected, nothing late); writes only when needed.
            summary = with_batch_summary(events_df).collect()
            rejected = [r for r in summary if r["dlq_reason"] is not None]
            late = [r for r in summary if r["dlq_reason"] is None and r["is_late"]]
            if rejected:
                rejected_df = events_df.filter(F.col("dlq_reason").isNotNull())
                write_records(with_dlq_records(rejected_df, datetime.now(UTC)), settings.topic_events_dlq, settings)
            if late:
                late_df = events_df.filter(F.col("dlq_reason").isNull() & F.col("is_late"))
                write_records(with_late_records(late_df), settings.topic_events_late, settings)
        finally:
            events_df.unpersist()
        valid = [r for r in summary if r["dlq_reason"] is None]
        max_occurred = max((r["max_occurred_us"] for r in valid if r["max_occurred_us"] is not None), default=None)
        max_received = max((r["max_received_us"] for r in valid if r["max_received_us"] is not None), default=None)
        tracker.observe(batch_id, None if max_occurred is None else _from_micros(max_occurred))
        # Counters move once the outputs are written (a replayed batch after a crash counts again: the
        # late-events topic, deduplicated by event_id, is the exact record).
        monitor.valid.inc(sum(r["events"] for r in valid))
        for row in late:
            monitor.late.labels(row["tenant_id"], row["source"] or "").inc(row["events"])
        for row in rejected:
            monitor.dlq.labels(row["dlq_reason"]).inc(row["events"])
        if max_received is not None:
            monitor.on_received(max_received / 1e6)

    return run


def _from_micros(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def ensure_topics(settings: Settings, streaming: StreamingSettings) -> None:
    """Create the job's intermediate topics (and any missing output topic) idempotently."""
    client = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(client.list_topics(timeout=15).topics)
    partitions = settings.events_raw_partitions
    wanted = {
        streaming.topic_prep: partitions,
        settings.topic_events_dlq: 3,
        settings.topic_events_late: 3,
        settings.topic_metrics_minute: partitions,
        settings.topic_orders_live: partitions,
        settings.topic_couriers_live: partitions,
    }
    new = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
    for future in client.create_topics(new, operation_timeout=30).values() if new else []:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - another process may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def start_queries(
    spark: SparkSession,
    settings: Settings,
    streaming: StreamingSettings,
    monitor: Monitor,
    names: tuple[str, ...] = QUERIES,
) -> dict[str, StreamingQuery]:
    """Define and start the queries `names` (see the module docstring)."""
    wm, skew_s = streaming.watermark, settings.event_max_future_skew_s
    checkpoints = streaming.checkpoints(settings)
    fast, slow, live = streaming.trigger, streaming.slow_trigger, streaming.live_trigger
    plain, sketched = sketch_split()

    def events() -> DataFrame:
        return with_watermarked_events(read_topic(spark, settings, streaming, settings.topic_events_raw), wm, skew_s)

    def sink(name: str, topic: str, mode: str, trigger: str) -> Callable[[DataFrame], StreamingQuery]:
        return lambda records_df: kafka_sink(records_df, name, topic, mode, settings, trigger, checkpoints)

    def prep_records() -> DataFrame:
        prep_wm = f"{int(streaming.watermark_seconds + PREP_EXTRA_WATERMARK.total_seconds())} seconds"
        prep_kafka_df = read_topic(spark, settings, streaming, streaming.topic_prep)
        return with_prep_minute_records(prep_kafka_df, prep_wm, skew_s)

    def late_dlq() -> StreamingQuery:
        tracker = LateTracker(checkpoints / "late_dlq-thresholds.json", timedelta(seconds=streaming.watermark_seconds))
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "late_dlq")
        return (
            read_topic(spark, settings, streaming, settings.topic_events_raw)
            .writeStream.queryName("late_dlq")
            .foreachBatch(late_and_dlq_batch(settings, tracker, monitor, checkpoints / "minute"))
            .option("checkpointLocation", str(checkpoints / "late_dlq"))
            .trigger(processingTime=slow)
            .start()
        )

    starts: dict[str, Callable[[], StreamingQuery]] = {
        "minute": lambda: sink("minute", settings.topic_metrics_minute, "update", fast)(
            with_minute_records(events(), plain)
        ),
        "distinct": lambda: sink("distinct", settings.topic_metrics_minute, "update", slow)(
            with_minute_records(events(), sketched)
        ),
        "orders": lambda: sink("orders", settings.topic_orders_live, "update", live)(
            with_kafka_records(with_order_state(events()), ORDER_KEY)
        ),
        "couriers": lambda: sink("couriers", settings.topic_couriers_live, "update", live)(
            with_kafka_records(with_courier_state(events()), COURIER_KEY)
        ),
        "prep_join": lambda: sink("prep_join", streaming.topic_prep, "append", slow)(
            with_prep_records(explode_prep_time_events(events()))
        ),
        "prep": lambda: sink("prep", settings.topic_metrics_minute, "update", slow)(prep_records()),
        "late_dlq": late_dlq,
    }
    return {name: starts[name]() for name in names}


ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
FS_CHECKPOINT_FILE_MANAGER = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)

# Pool weights: the minute rows are what users watch, so their micro-batches get the largest share of the
# two local cores when queries compete; live state next; the late/DLQ accounting can wait.
POOL_WEIGHTS: dict[str, int] = {
    "minute": 4,
    "distinct": 2,
    "orders": 2,
    "couriers": 2,
    "prep_join": 1,
    "prep": 1,
    "late_dlq": 1,
}


def fair_scheduler_file(path: Path) -> Path:
    """Write the fair-scheduler pools of the queries (see POOL_WEIGHTS)."""
    pools = "".join(
        f'<pool name="{name}"><schedulingMode>FIFO</schedulingMode><weight>{weight}</weight>'
        "<minShare>0</minShare></pool>"
        for name, weight in POOL_WEIGHTS.items()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # both JVMs of the launcher write it: never a half file
    tmp.write_text(f'<?xml version="1.0"?><allocations>{pools}</allocations>\n')
    os.replace(tmp, path)
    return path


def main() -> int:
    """Read → transform → write until stopped; a failed query ends the process (the supervisor restarts it)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    settings = get_settings()
    streaming = StreamingSettings()
    names = streaming.selected_queries(QUERIES)
    if streaming.separate_minute_jvm and not streaming.queries and "minute" in names:
        return launcher.run(streaming, names)
    ensure_topics(settings, streaming)
    checkpoints = streaming.checkpoints(settings)
    checkpoints.mkdir(parents=True, exist_ok=True)
    spark = build_spark(
        "lakepulse-streaming",
        settings.model_copy(update={"spark_master": streaming.spark_master(settings)}),
        jvm_ignores_sigterm=True,  # SIGTERM stops the queries below, then stop_spark ends the JVM
        **{
            "spark.sql.shuffle.partitions": str(streaming.shuffle_partitions),
            "spark.driver.memory": streaming.driver_memory,
            "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
            # Commit = append a changelog; snapshots are taken in the background, not on every batch.
            "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
            # Hadoop's default (FileContext) writer chmods every checkpoint and state file it creates and
            # resolves links on rename; without Hadoop's native library each is a forked `chmod`/`readlink`
            # process (~5 per second per query). The FileSystem writer passes no permission and renames
            # directly, which is atomic on the local disk the checkpoints live on.
            "spark.sql.streaming.checkpointFileManagerClass": FS_CHECKPOINT_FILE_MANAGER,
            # Every put/remove would first read the key back only to keep a row count we do not show.
            "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
            # Evicted dedup ids stay as tombstones in the memtable (64 MB by default) until it is flushed and
            # compacted, and every micro-batch's eviction scan walks over them: small memtables flush often.
            "spark.sql.streaming.stateStore.rocksdb.writeBufferSizeMB": "8",
            "spark.sql.streaming.stateStore.rocksdb.blockCacheSizeMB": str(streaming.rocksdb_block_cache_mb),
            # Seven queries share two cores: interleave their tasks instead of queueing whole jobs.
            "spark.scheduler.mode": "FAIR",
            "spark.scheduler.allocation.file": str(fair_scheduler_file(checkpoints / "fairscheduler.xml")),
            # Less chatter per trigger on a loaded machine.
            "spark.sql.streaming.noDataProgressEventInterval": "5000",
            "spark.ui.showConsoleProgress": "false",
        },
    )
    spark.sparkContext.setLogLevel("WARN")
    monitor = Monitor(names, settings.kafka_bootstrap, settings.event_max_future_skew_s)
    listen(spark, monitor)
    server = serve(monitor, streaming.metrics_host, streaming.metrics_port)
    queries = start_queries(spark, settings, streaming, monitor, names)
    log.info(
        "started %s; metrics on http://%s:%d/metrics",
        ", ".join(queries),
        streaming.metrics_host,
        streaming.metrics_port,
    )

    # The handler only flags: it runs on the main thread, which may be inside a py4j call (a nested one
    # fails with "reentrant call"). The loop below stops the queries between its short waits.
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping queries", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    launcher.exit_with_parent(stopping.set)
    try:
        while not stopping.is_set() and not spark.streams.awaitAnyTermination(1):
            pass
        failed = [n for n, q in queries.items() if q.exception() is not None]
    finally:
        try:
            for query in queries.values():
                if query.isActive:
                    query.stop()
            server.shutdown()
        finally:
            stop_spark(spark)
    if failed:
        log.error("queries failed: %s", failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
