"""The raw archive (s3://<bucket>/raw, written by the raw-archive Connect sink): list, read, count, dedup.

Layout: `raw/event_date=YYYY-MM-DD/event_hour=HH/<topic>+<partition>+<startOffset>.parquet`, one row per
Kafka record. The sink is at least once: after a crash a replay may leave a record in two objects, so
readers deduplicate by `event_id` (`dedup_by_event_id`). Duplicates of one event share its event hour.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import typer
from pyarrow import fs
from rich.console import Console
from rich.table import Table

from lakepulse.settings import Settings, get_settings

RAW_PREFIX = "raw"
PARTITIONING = ds.partitioning(pa.schema([("event_date", pa.string()), ("event_hour", pa.int32())]),
                               flavor="hive")
TS = pa.timestamp("us", tz="UTC")
# The Parquet columns the sink writes (connect-plugin RawEventWriteSupport), plus the partition columns.
RAW_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("tenant_id", pa.string()),
    ("event_type", pa.string()),
    ("occurred_at", TS),
    ("received_at", TS),
    ("source", pa.string()),
    ("device_family", pa.string()),
    ("properties", pa.string()),  # the event's properties object, JSON text exactly as received
    ("extra", pa.string()),  # any other top-level fields as a JSON object (null when none)
    ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("event_date", pa.string()),
    ("event_hour", pa.int32()),
])


@dataclass(frozen=True)
class HourPartition:
    """One event hour of the archive and what it holds on S3."""

    event_date: str
    event_hour: int
    objects: int
    bytes: int

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.event_date).replace(hour=self.event_hour, tzinfo=UTC)


# <topic>+<partition>+<first offset, zero-padded>.parquet: the sink names every object by where its records start.
OBJECT_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d+)\.parquet$")


@dataclass(frozen=True)
class ArchiveObject:
    """One object of the archive: its event hour and the Kafka records it starts with.

    The sink uploads a batch of one partition's consecutive records (split by event hour into objects) and only then
    lets Connect commit the offset after the batch, so an object holds records below a committed offset either all or
    none: it is below the commit exactly when its first offset is."""

    event_hour: datetime
    topic: str
    partition: int
    start_offset: int

    @property
    def offset_key(self) -> str:
        """The "topic:partition" key the archive snapshots (committed offsets) use."""
        return f"{self.topic}:{self.partition}"


def parse_object(path: str) -> ArchiveObject | None:
    """An object path (…/event_date=D/event_hour=H/<topic>+<partition>+<offset>.parquet) → what it holds; None for
    anything else (temporary files, other layouts)."""
    *dirs, name = path.split("/")
    parts = dict(d.split("=", 1) for d in dirs if "=" in d)
    match = OBJECT_NAME.match(name)
    if not match or "event_date" not in parts or "event_hour" not in parts:
        return None
    try:
        hour = datetime.fromisoformat(parts["event_date"]).replace(hour=int(parts["event_hour"]), tzinfo=UTC)
    except ValueError:
        return None
    return ArchiveObject(hour, match["topic"], int(match["partition"]), int(match["offset"]))


def objects(settings: Settings, prefix: str = RAW_PREFIX, dates: Iterable[str] | None = None) -> list[ArchiveObject]:
    """Every object of the archive (only those of these event dates, if given: one listing per date), names only."""
    s3 = filesystem(settings)
    base = root(settings, prefix)
    bases = [f"{base}/event_date={d}" for d in dates] if dates is not None else [base]
    found = []
    for where in bases:
        for info in s3.get_file_info(fs.FileSelector(where, recursive=True, allow_not_found=True)):
            if info.type == fs.FileType.File and (obj := parse_object(info.path)) is not None:
                found.append(obj)
    return found


@dataclass(frozen=True)
class Count:
    """Rows in a range of the archive and how many distinct event ids they hold."""

    rows: int
    unique_events: int

    @property
    def duplicates(self) -> int:
        return self.rows - self.unique_events


def filesystem(settings: Settings) -> fs.S3FileSystem:
    """pyarrow's S3 filesystem on the configured endpoint (MinIO locally)."""
    scheme, _, host = settings.s3_endpoint.partition("://")
    return fs.S3FileSystem(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                           endpoint_override=host, scheme=scheme, region=settings.s3_region,
                           force_virtual_addressing=False)


def root(settings: Settings, prefix: str = RAW_PREFIX) -> str:
    return f"{settings.s3_bucket}/{prefix}"


def partitions(settings: Settings, prefix: str = RAW_PREFIX) -> list[HourPartition]:
    """Every event hour in the archive with its object count and size, oldest first."""
    s3 = filesystem(settings)
    base = root(settings, prefix)
    infos = s3.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
    found: dict[tuple[str, int], list[int]] = {}
    for info in infos:
        if info.type != fs.FileType.File or not info.path.endswith(".parquet"):
            continue
        parts = dict(p.split("=", 1) for p in info.path[len(base) + 1:].split("/")[:-1] if "=" in p)
        if "event_date" in parts and "event_hour" in parts:
            found.setdefault((parts["event_date"], int(parts["event_hour"])), []).append(info.size or 0)
    return [HourPartition(d, h, len(sizes), sum(sizes)) for (d, h), sizes in sorted(found.items())]


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Each UTC hour overlapping [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def dataset(settings: Settings, prefix: str = RAW_PREFIX) -> ds.Dataset:
    """The whole archive as a pyarrow dataset (hive partitions event_date, event_hour); empty before the
    sink's first flush (the prefix does not exist yet), not an error."""
    s3 = filesystem(settings)
    if s3.get_file_info(root(settings, prefix)).type == fs.FileType.NotFound:
        partition_fields = [f for f in PARTITIONING.schema if f.name not in RAW_SCHEMA.names]
        return ds.dataset(pa.schema([*RAW_SCHEMA, *partition_fields]).empty_table())
    return ds.dataset(root(settings, prefix), filesystem=s3, format="parquet",
                      partitioning=PARTITIONING, schema=RAW_SCHEMA)


def _between(start: datetime, end: datetime) -> pc.Expression:
    return (pc.field("occurred_at") >= pa.scalar(start, TS)) & (pc.field("occurred_at") < pa.scalar(end, TS))


def read_events(
    settings: Settings,
    start: datetime,
    end: datetime,
    columns: list[str] | None = None,
    where: pc.Expression | None = None,
    prefix: str = RAW_PREFIX,
) -> pa.Table:
    """Rows whose occurred_at is in [start, end) (hour partitions pruned first), optionally filtered."""
    days = sorted({h.date().isoformat() for h in hours(start, end)})
    expr = pc.field("event_date").isin(days) & _between(start, end)
    if where is not None:
        expr = expr & where
    return dataset(settings, prefix).to_table(columns=columns, filter=expr)


def dedup_by_event_id(table: pa.Table) -> pa.Table:
    """One row per event_id: the one first in Kafka (lowest topic/partition/offset)."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([("event_id", "ascending"), ("kafka_topic", "ascending"),
                             ("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    ids = ordered.column("event_id")
    first = pc.fill_null(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)), True)
    keep = pa.concat_arrays([pa.array([True]), first.combine_chunks()])
    return ordered.filter(keep)


def count_events(settings: Settings, start: datetime, end: datetime, prefix: str = RAW_PREFIX) -> Count:
    """Rows and distinct event ids with occurred_at in [start, end), one hour partition at a time."""
    rows = unique = 0
    data = dataset(settings, prefix)
    for hour in hours(start, end):
        lo, hi = max(hour, start), min(hour + timedelta(hours=1), end)
        expr = ((pc.field("event_date") == hour.date().isoformat()) & (pc.field("event_hour") == hour.hour)
                & _between(lo, hi))
        ids = data.to_table(columns=["event_id"], filter=expr).column("event_id")
        rows += len(ids)
        unique += pc.count_distinct(ids).as_py()
    return Count(rows, unique)


# ---- commands (registered by the CLI as `lakepulse archive ...`) ----

app = typer.Typer(help="Inspect the raw archive (Parquet in S3, written by the raw-archive sink).",
                  no_args_is_help=True)
console = Console()


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a zone, e.g. 2026-05-01T11:00:00Z")
    return moment


@app.command("partitions")
def partitions_command(
    prefix: Annotated[str, typer.Option(help="Archive prefix in the bucket")] = RAW_PREFIX,
) -> None:
    """List the archive's event hours with object counts and sizes."""
    found = partitions(get_settings(), prefix)
    table = Table(title=f"s3://{root(get_settings(), prefix)}")
    for col in ("event_date", "event_hour", "objects", "MiB"):
        table.add_column(col, justify="right")
    for p in found:
        table.add_row(p.event_date, f"{p.event_hour:02d}", str(p.objects), f"{p.bytes / 2**20:.2f}")
    console.print(table)
    console.print(f"{len(found)} hours, {sum(p.objects for p in found)} objects, "
                  f"{sum(p.bytes for p in found) / 2**20:.1f} MiB")


@app.command("count")
def count_command(
    start: Annotated[str, typer.Option(help="Event time from (inclusive), RFC 3339")],
    end: Annotated[str, typer.Option(help="Event time to (exclusive), RFC 3339")],
    prefix: Annotated[str, typer.Option(help="Archive prefix in the bucket")] = RAW_PREFIX,
) -> None:
    """Count archived events with occurred_at in [start, end): rows, unique event ids, duplicates."""
    lo, hi = _moment(start), _moment(end)
    if hi <= lo:
        raise typer.BadParameter("--end must be after --start")
    c = count_events(get_settings(), lo, hi, prefix)
    console.print(f"rows={c.rows} unique_events={c.unique_events} duplicates={c.duplicates}")


__all__ = ["ArchiveObject", "Count", "HourPartition", "app", "count_events", "dedup_by_event_id", "objects",
           "parse_object", "partitions", "read_events"]
