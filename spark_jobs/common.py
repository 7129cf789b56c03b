"""What every batch job shares: the range and lake arguments, the table descriptions and the one Delta writer."""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from lakepulse.aggregations import ORDER_KEY, PARTIAL_KEY
from lakepulse.settings import Settings, get_settings

log = logging.getLogger("lakepulse.batch")


@dataclass(frozen=True)
class TableSpec:
    """One Delta table the batch layer owns: name, merge keys, partition columns, change test."""

    name: str
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    # SQL over t (target) and s (source) that is true when a matched row must be rewritten;
    # None = rows are immutable once written (insert-only).
    changed: str | None = None


def _same(col: str) -> str:
    return f"t.`{col}` <=> s.`{col}`"


# count/min/max/buckets must match exactly; sums may differ in the last bits when Spark adds the same
# values in another order, and sketch bytes may differ in layout for the same set, so those compare by
# value (sum within 1e-9 relative, sketches by their estimate).
PARTIAL_CHANGED = (
    "NOT ("
    + " AND ".join(_same(c) for c in ("count", "min", "max", "buckets"))
    + " AND ((t.`sum` IS NULL AND s.`sum` IS NULL) OR abs(t.`sum` - s.`sum`) <= 1e-9 * greatest(1.0, abs(s.`sum`)))"
    + " AND hll_sketch_estimate(t.hll_sketch) <=> hll_sketch_estimate(s.hll_sketch)"
    + " AND theta_sketch_estimate(t.theta_sketch) <=> theta_sketch_estimate(s.theta_sketch)"
    + ")"
)

ORDER_COMPARED = (
    "status", "status_at", "placed_at", "confirmed_at", "in_kitchen_at", "ready_for_pickup_at", "picked_up_at",
    "delivered_at", "cancelled_at", "amount", "currency", "prep_seconds", "food_rating", "delivery_rating",
    "rated_at", "last_event_at",
)

EVENTS = TableSpec("events", keys=("event_id",), partition_by=("event_date",))
METRICS_MINUTE = TableSpec("metrics_minute", PARTIAL_KEY, ("window_date",), PARTIAL_CHANGED)
METRICS_HOUR = TableSpec("metrics_hour", PARTIAL_KEY, ("window_date",), PARTIAL_CHANGED)
METRICS_DAY = TableSpec("metrics_day", PARTIAL_KEY, ("window_date",), PARTIAL_CHANGED)
ORDERS = TableSpec(
    "orders", ORDER_KEY, (), "NOT (" + " AND ".join(_same(c) for c in ORDER_COMPARED) + ")"
)
GOLD_TABLES: dict[str, TableSpec] = {"minute": METRICS_MINUTE, "hour": METRICS_HOUR, "day": METRICS_DAY}
# The exact route to distinct users (Trino cannot merge the minute rows' sketches): one row per user and UTC day
# for each tuple of active_users' catalog dimensions (checked against the catalog by the transform).
USER_ACTIVITY_DIMS: tuple[str, ...] = ("country", "device")
USER_ACTIVITY = TableSpec(
    "user_activity_daily", ("tenant_id", "activity_date", "user_id", *USER_ACTIVITY_DIMS), ("activity_date",),
    "NOT (" + " AND ".join(_same(c) for c in ("events", "first_seen", "last_seen")) + ")",
)


@dataclass(frozen=True)
class Lake:
    """Where the batch layer reads and writes: raw archive root, Delta root, seam object, Trino schema."""

    raw_root: str
    delta_root: str
    seam_uri: str
    trino_schema: str = "delta.lakepulse"

    def path(self, table: TableSpec | str) -> str:
        """s3a:// location of a Delta table."""
        name = table.name if isinstance(table, TableSpec) else table
        return f"{self.delta_root.rstrip('/')}/{name}"

    @property
    def staging_root(self) -> str:
        """Where runs stage their tables before the gate (next to delta/: never registered in Trino)."""
        return f"{self.delta_root.rstrip('/').rsplit('/', 1)[0]}/staging"

    @property
    def late_cursor_uri(self) -> str:
        """The late-data loop's cursor (next to the seam object): the archive snapshot whose late hours are built."""
        return f"{self.seam_uri.rsplit('/', 1)[0]}/late_cursor.json"

    @classmethod
    def from_settings(cls, settings: Settings, root: str | None = None) -> Lake:
        """The production lake (or, with `root`, an isolated one under that prefix, e.g. for tests)."""
        if root:
            base = root.rstrip("/")
            return cls(f"{base}/raw", f"{base}/delta", f"{base}/batch/seam.json", "delta.lakepulse")
        from lakepulse.batch.seam import production_seam_uri

        bucket = f"s3a://{settings.s3_bucket}"
        return cls(f"{bucket}/raw", f"{bucket}/delta", production_seam_uri(settings), "delta.lakepulse")


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC range [start, end), aligned to minutes."""

    start: datetime
    end: datetime
    metrics: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t.tzinfo is None or t.second or t.microsecond:
                raise ValueError(f"{t} must be timezone-aware and minute-aligned")
        if self.end <= self.start:
            raise ValueError(f"empty range [{self.start}, {self.end})")

    def dates(self, before: timedelta = timedelta(0), after: timedelta = timedelta(0)) -> list[str]:
        """ISO dates the range (widened by before/after) touches."""
        first = (self.start - before).astimezone(UTC).date()
        last = (self.end + after - timedelta(microseconds=1)).astimezone(UTC).date()
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]

    def widened(self, unit: str) -> TimeRange:
        """The range extended outwards to whole hours or days."""
        if unit == "hour":
            start = self.start.replace(minute=0)
            end_floor = self.end.replace(minute=0)
            end = self.end if self.end == end_floor else end_floor + timedelta(hours=1)
        elif unit == "day":
            start = self.start.replace(hour=0, minute=0)
            end_floor = self.end.replace(hour=0, minute=0)
            end = self.end if self.end == end_floor else end_floor + timedelta(days=1)
        else:
            raise ValueError(unit)
        return TimeRange(start, end, self.metrics)


def sql_ts(moment: datetime) -> str:
    """A Spark SQL timestamp literal for an aware datetime (session time zone is UTC)."""
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}'"


def sql_list(values: Sequence[str]) -> str:
    """A SQL IN-list of string literals (values are ours: dates, metric names from the catalog)."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def events_scope(rng: TimeRange, alias: str | None = "t") -> str:
    """SQL over the events table selecting the range (with its partitions, for pruning)."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}event_date IN ({sql_list(rng.dates())}) AND {p}occurred_at >= {sql_ts(rng.start)} "
        f"AND {p}occurred_at < {sql_ts(rng.end)}"
    )


def partial_scope(rng: TimeRange, metrics: Sequence[str], alias: str | None = "t") -> str:
    """SQL over a partial table selecting the range's windows (and metrics), partitions first."""
    p = f"{alias}." if alias else ""
    scope = (
        f"{p}window_date IN ({sql_list(rng.dates())}) AND {p}window_start >= {sql_ts(rng.start)} "
        f"AND {p}window_start < {sql_ts(rng.end)}"
    )
    return scope + (f" AND {p}metric IN ({sql_list(metrics)})" if metrics else "")


def activity_scope(rng: TimeRange, alias: str | None = "t") -> str:
    """SQL over user_activity_daily selecting every UTC day the range touches (its partitions)."""
    p = f"{alias}." if alias else ""
    days = ", ".join(f"DATE '{d}'" for d in rng.dates())
    return f"{p}activity_date IN ({days})"


# The distinct metric user_activity_daily makes exact in Trino.
ACTIVE_USERS = "active_users"


def rebuilds_user_activity(rng: TimeRange) -> bool:
    """Whether a rebuild of the range's metrics covers user_activity_daily (all metrics, or active_users)."""
    return not rng.metrics or ACTIVE_USERS in rng.metrics


def rebuilt_tables(rng: TimeRange) -> tuple[TableSpec, ...]:
    """The served tables a rebuild of the range writes, in publish order (events first, orders last)."""
    tables = [EVENTS, *GOLD_TABLES.values()]
    if rebuilds_user_activity(rng):
        tables.append(USER_ACTIVITY)
    if not rng.metrics:
        tables.append(ORDERS)
    return tuple(tables)


def table_scope(spec: TableSpec, rng: TimeRange, alias: str | None = "t") -> str | None:
    """SQL over `spec` selecting the rows a rebuild of the range replaces (None: orders, matched by key only)."""
    if spec == EVENTS:
        return events_scope(rng, alias)
    for grain, gold in GOLD_TABLES.items():
        if spec == gold:
            # An hour or day is rolled up whole, even when the range covers part of it.
            return partial_scope(rng if grain == "minute" else rng.widened(grain), rng.metrics, alias)
    if spec == USER_ACTIVITY:
        return activity_scope(rng, alias)
    if spec == ORDERS:
        return None
    raise ValueError(f"not a batch table: {spec.name}")


def parse_time(value: str) -> datetime:
    """RFC 3339 / ISO time → aware UTC datetime ('Z' and naive = UTC)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_flag(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")


# One snapshot of the raw archive: (topic, partition) → the offset below which its records are all archived
# (the raw-archive connector's committed offsets, read by the hourly DAG's plan_range).
ArchiveCutoffs = Mapping[tuple[str, int], int]


def parse_archived_before(text: str) -> dict[tuple[str, int], int] | None:
    """--archived-before: JSON {"topic:partition": offset, ...} → cutoffs; empty text = no cutoff (None)."""
    if not text.strip():
        return None
    try:
        given = json.loads(text)
        if not isinstance(given, dict):
            raise ValueError("not an object")
        cutoffs: dict[tuple[str, int], int] = {}
        for key, offset in given.items():
            topic, sep, partition = key.rpartition(":")
            if not (sep and topic) or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(key)
            cutoffs[(topic, int(partition))] = offset
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f'expected a JSON object {{"topic:partition": offset, ...}}, got {text!r}') from err
    return cutoffs


def stage_id_of(text: str) -> str:
    """A path-safe stage id from any run id (Airflow's contain ':' and '+'); "" stays "" (no stage)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip()).strip("._")[:120]


def job_args(description: str, argv: Sequence[str] | None = None) -> tuple[TimeRange, Lake, argparse.Namespace]:
    """Parse the arguments every job takes: --start --end [--metrics a,b] [--lake-root s3a://...]
    [--archived-before JSON] [--stage-id RUN_ID] (args.archived_before: ArchiveCutoffs, or None for no cutoff;
    args.stage_id: path-safe, "" for none)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--start", required=True, help="inclusive, RFC 3339 (UTC if no zone)")
    parser.add_argument("--end", required=True, help="exclusive, RFC 3339 (UTC if no zone)")
    parser.add_argument("--metrics", default="", help="comma-separated metric names (default: all)")
    parser.add_argument("--lake-root", default="", help="isolated lake prefix (default: the production lake)")
    parser.add_argument("--quality", type=parse_flag, default=True, help="backfill: run the gate (true/false)")
    parser.add_argument("--reconcile", type=parse_flag, default=True, help="backfill: repair Pinot (true/false)")
    parser.add_argument("--archived-before", type=parse_archived_before, default=None,
                        help='read only raw rows below these offsets: {"topic:partition": offset, ...} '
                             "(default or empty: every archived row)")
    parser.add_argument("--stage-id", type=stage_id_of, default="",
                        help="the run's staging id (the DAG's run id), shared by its stage, gate and publish steps")
    args = parser.parse_args(argv)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    rng = TimeRange(parse_time(args.start), parse_time(args.end), metrics)
    return rng, Lake.from_settings(get_settings(), args.lake_root or None), args


# Delta replays its log with 50 tasks by default: on a small machine that dominates small jobs.
BATCH_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.showConsoleProgress": "false",
}


def batch_spark(app_name: str, settings: Settings | None = None) -> SparkSession:
    """The Spark session of a batch job (few shuffle partitions: one range is small per task)."""
    from lakepulse.spark_session import build_spark

    spark = build_spark(app_name, settings, **BATCH_CONF)
    spark.sparkContext.setLogLevel("WARN")
    return spark


def ensure_table(spark: SparkSession, df: DataFrame, spec: TableSpec, path: str) -> None:
    """Create the Delta table at `path` with the DataFrame's schema if it does not exist yet, or add the
    DataFrame's columns it lacks."""
    from delta.tables import DeltaTable

    if DeltaTable.isDeltaTable(spark, path):
        # A column added to the job since the table was created (e.g. bronze's typed_properties).
        present = set(spark.read.format("delta").load(path).columns)
        missing = [f for f in df.schema.fields if f.name not in present]
        if missing:
            added = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({added})")
        return
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(df.schema)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    try:
        builder.execute()
    except conflicts() + (AnalysisException,) as err:
        # Two first runs created the table at once: the other one's table is the same table. Delta reports the
        # loser as a commit conflict, and possibly as an AnalysisException (suspected: one CI run's second
        # concurrent backfill failed with one before its first MERGE). A real mismatch fails in the MERGE after.
        if not DeltaTable.isDeltaTable(spark, path):
            raise
        log.warning("%s: created by a concurrent run meanwhile (%s)", spec.name, str(err).splitlines()[0][:200])


def merge_rows(
    spark: SparkSession, source_df: DataFrame, spec: TableSpec, path: str, scope: str | None = None,
    delete_missing: bool = False,
) -> dict[str, int]:
    """MERGE rows into the table on its keys: insert new rows, rewrite changed ones (spec.changed) and,
    with `delete_missing`, delete target rows inside `scope` (SQL over t) that the source no longer has.
    Returns rows inserted/updated/deleted. Raises one of CONFLICTS when a concurrent writer committed to the
    partitions it read (the caller decides whether to retry or rebuild)."""
    from delta.tables import DeltaTable

    started = time.monotonic()
    ensure_table(spark, source_df, spec, path)
    target = DeltaTable.forPath(spark, path)
    before = _version(target)
    # Always a MERGE, also into an empty scope: a blind append registers no read, so two runs appending the same
    # range would both commit (each row twice); a MERGE reads the scope's partitions, so Delta refuses the second.
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
    if scope:
        # Scope on the target prunes partitions: the merge rewrites only files of the range.
        on = f"({scope}) AND {on}"
    merge = target.alias("t").merge(source_df.alias("s"), on)
    if spec.changed:
        merge = merge.whenMatchedUpdateAll(condition=spec.changed)
    merge = merge.whenNotMatchedInsertAll()
    if delete_missing:
        merge = merge.whenNotMatchedBySourceDelete(condition=scope)
    merge.execute()
    metrics = {"numTargetRowsInserted": 0, "numTargetRowsUpdated": 0, "numTargetRowsDeleted": 0}
    last = target.history(1).select("version", "operationMetrics").collect()[0]
    if last["version"] != before:  # a merge that changes nothing may not commit at all
        metrics.update({k: int(v) for k, v in (last["operationMetrics"] or {}).items() if k in metrics})
    log.warning("merge %s %s in %.1f s", spec.name, json.dumps(metrics), time.monotonic() - started)
    return metrics


def replace_rows(spark: SparkSession, source_df: DataFrame, spec: TableSpec, path: str, scope: str) -> None:
    """Replace every row of the table inside `scope` (SQL over the table's columns, no alias) with the source rows, in
    one transaction (replaceWhere: it reads the scope, so a concurrent writer there makes Delta refuse it, as a
    MERGE)."""
    started = time.monotonic()
    ensure_table(spark, source_df, spec, path)
    source_df.write.format("delta").mode("overwrite").option("replaceWhere", scope).save(path)
    log.warning("replace %s in %.1f s", spec.name, time.monotonic() - started)


def _version(table: object) -> int:
    return int(table.history(1).select("version").collect()[0][0])  # type: ignore[attr-defined]


def table_version(spark: SparkSession, path: str) -> int:
    """The Delta table's current version (-1 when there is no table at `path` yet)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    return _version(DeltaTable.forPath(spark, path))


def conflicts() -> tuple[type[Exception], ...]:
    """Delta's commit conflicts (a concurrent writer won): the exceptions a writer retries or rebuilds on."""
    import delta.exceptions as d

    # delta-spark's captured subclasses derive from each base class, but not all from the common base: list them.
    return (d.DeltaConcurrentModificationException, d.ConcurrentWriteException, d.MetadataChangedException,
            d.ProtocolChangedException, d.ConcurrentAppendException, d.ConcurrentDeleteReadException,
            d.ConcurrentDeleteDeleteException, d.ConcurrentTransactionException)


def day_of(moment: datetime) -> date:
    """UTC date of a moment."""
    return moment.astimezone(UTC).date()
