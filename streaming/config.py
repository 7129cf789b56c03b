"""Settings of the streaming job (one pydantic-settings class per deployable, `LAKEPULSE_STREAMING_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from lakepulse.settings import Settings


class StreamingSettings(BaseSettings):
    """Knobs of the speed layer; endpoints and topic names come from `lakepulse.settings.Settings`."""

    model_config = SettingsConfigDict(env_prefix="LAKEPULSE_STREAMING_", env_file=".env", extra="ignore")

    watermark: str = "2 minutes"
    # The minute query (what freshness is about) runs on `trigger`; every other query on `slow_trigger`, so
    # that on a small machine they leave it the cores most of the time.
    trigger: str = "1 second"
    slow_trigger: str = "10 seconds"
    # The live order and courier state (the dashboard's funnel and couriers waiting, pushed over SSE) on a trigger
    # of its own: on `slow_trigger` an order reached the page 12-19 s after it was posted; their micro-batches are
    # small (one row per order or courier touched), so a short trigger costs little.
    live_trigger: str = "2 seconds"
    # In local mode: task threads of the job. More than the cores, so that a long task of a slow query
    # does not hold a slot the minute query's next micro-batch needs (measured: p99 7.5 s instead of 14.6 s).
    local_task_slots: int = 4
    # A fresh checkpoint starts at the end of events.raw: history reaches Pinot through the batch layer.
    starting_offsets: str = "latest"
    max_offsets_per_trigger: int = 200_000
    shuffle_partitions: int = 2
    # Empty = settings.state_dir / "checkpoints" / "streaming".
    checkpoint_dir: Path | None = None
    # Intermediate topic between the prep-time join and its minute aggregation (created by the job).
    topic_prep: str = "events.prep"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8011
    # Java heap of the driver (local mode: the whole Spark app).
    driver_memory: str = "1g"
    # Which queries this process runs (comma-separated names; empty = all). The launcher sets it for the
    # processes it starts.
    queries: str = ""
    # Run the minute, orders and couriers queries in a JVM of their own and the four others in a second one at a
    # lower OS priority (`slow_niceness`), so the others' micro-batches never take the cores the minute rows need.
    # 19 (the lowest priority) rather than 10: at 20,000 events/s its lag then grows 10-70k records a minute, not ~150k;
    # the others get what it leaves (at 1,000 events/s they stay 10-40 s behind, bounded).
    separate_minute_jvm: bool = True
    slow_niceness: int = 19
    # The minute query's JVM (when separate): task threads, and shuffle partitions of a new checkpoint. Two:
    # the dedup state (every event id of the last watermark delay) is split in two halves whose eviction
    # scans run in parallel, one per task thread.
    minute_task_slots: int = 2
    minute_shuffle_partitions: int = 2
    # RocksDB block cache per state store instance, in MB: Spark's default (8) for the four niced queries; the
    # minute JVM's dedup stores (tens of MB of ids each) fit whole in theirs, so the lookup of every new
    # event_id and the eviction scan read cached blocks (replay of 3.2M events: 932 → 724 ms per 20k batch).
    rocksdb_block_cache_mb: int = 8
    minute_rocksdb_block_cache_mb: int = 256

    def selected_queries(self, known: tuple[str, ...]) -> tuple[str, ...]:
        """The queries this process runs, in `known` order; a clear error for an unknown name."""
        wanted = [q.strip() for q in self.queries.split(",") if q.strip()]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ValueError(f"unknown streaming queries {unknown}; choose from {', '.join(known)}")
        return tuple(q for q in known if q in wanted) if wanted else known

    def spark_master(self, settings: Settings) -> str:
        """The job's master: the configured one, with `local_task_slots` threads when it is local."""
        return f"local[{self.local_task_slots}]" if settings.spark_master.startswith("local") else settings.spark_master

    def checkpoints(self, settings: Settings) -> Path:
        """The checkpoint root on local disk."""
        return self.checkpoint_dir or settings.state_dir / "checkpoints" / "streaming"

    @property
    def watermark_seconds(self) -> float:
        """The watermark delay in seconds (accepts "<n> second(s)|minute(s)|hour(s)")."""
        return interval_seconds(self.watermark)


_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def interval_seconds(interval: str) -> float:
    """Seconds of a Spark interval string like "2 minutes" or "30 seconds"."""
    amount, _, unit = interval.strip().partition(" ")
    unit = unit.strip().rstrip("s")
    if unit not in _UNITS:
        raise ValueError(f"unsupported interval {interval!r}; use seconds, minutes or hours")
    return float(amount) * _UNITS[unit]
