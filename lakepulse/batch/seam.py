"""The seam T: stored as a small JSON object on S3, published as the literal in the Trino seam views."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from lakepulse.catalog import get_catalog
from lakepulse.catalog.trino import DELTA_SCHEMA, activity_views, render_view, trino_views
from lakepulse.platform.components.minio import s3_client
from lakepulse.settings import Settings

# Delta tables the batch layer registers in Trino's metastore (the seam view reads metrics_minute, the active-user
# views user_activity_daily).
TRINO_TABLES = ("events", "metrics_minute", "metrics_hour", "metrics_day", "orders", "user_activity_daily")
# The views' seam before the first hourly run: nothing is behind it, so every minute comes from Pinot.
NO_SEAM = datetime(1970, 1, 1, tzinfo=UTC)


def production_seam_uri(settings: Settings) -> str:
    """Where the production lake keeps its seam object."""
    return f"s3a://{settings.s3_bucket}/batch/seam.json"


class SeamGapError(RuntimeError):
    """The range does not start at or before the seam: hours between would be served unchecked."""


def split_uri(uri: str) -> tuple[str, str]:
    """s3a://bucket/key or s3://bucket/key → (bucket, key)."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def read_json_object(settings: Settings, uri: str) -> dict[str, Any] | None:
    """A small JSON object the batch layer keeps on S3 (the seam, the late cursor), or None when it is not there."""
    bucket, key = split_uri(uri)
    client = s3_client(settings)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def write_json_object(settings: Settings, uri: str, body: dict[str, Any]) -> None:
    """Store a small JSON object (replaced atomically by S3)."""
    bucket, key = split_uri(uri)
    s3_client(settings).put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(),
                                   ContentType="application/json")


def read_seam(settings: Settings, uri: str) -> datetime | None:
    """The stored seam, or None before the first advance."""
    stored = read_json_object(settings, uri)
    return None if stored is None else datetime.fromisoformat(stored["seam"])


def write_seam(settings: Settings, uri: str, seam: datetime, note: dict[str, Any]) -> None:
    """Store the seam."""
    write_json_object(settings, uri, {"seam": seam.astimezone(UTC).isoformat(),
                                      "advanced_at": datetime.now(UTC).isoformat(), **note})


def next_seam(current: datetime | None, start: datetime, end: datetime) -> datetime | None:
    """Where the seam goes after [start, end) was rebuilt, checked and reconciled (None: stays)."""
    if current is None or start <= current < end:
        return end
    if current >= end:
        return None  # a rerun of history already behind the seam
    raise SeamGapError(
        f"seam is at {current.isoformat()} but the checked range starts at {start.isoformat()}: "
        "rebuild [seam, start) first (backfill), the seam never skips unchecked hours"
    )


class CatchupTooLongError(SeamGapError):
    """The seam lags the tick by more than an hourly run may catch up: a backfill must close the gap first."""


def _utc(moment: datetime) -> datetime:
    """An aware UTC datetime (naive = UTC, as spark_jobs' parse_time reads range arguments)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    """A UTC time as `lakepulse backfill` takes it on the command line."""
    return moment.isoformat().replace("+00:00", "Z")


def hourly_range(tick: datetime, lookback_hours: int, seam: datetime | None,
                 max_catchup_hours: int) -> tuple[datetime, datetime]:
    """The range [start, end) the hourly run at `tick` rebuilds: up to the hour boundary at or before the tick, back
    `1 + lookback_hours` hours (the normal range), or further back to a lagging seam."""
    if lookback_hours < 0 or max_catchup_hours < 1:
        raise ValueError(f"need lookback_hours >= 0 and max_catchup_hours >= 1, got {lookback_hours}, "
                         f"{max_catchup_hours}")
    # The run at 10:05 rebuilds up to 10:00: ticks come a few minutes past the hour, once the archive has the
    # hour's on-time events.
    end = _utc(tick).replace(minute=0, second=0, microsecond=0)
    normal = end - timedelta(hours=1 + lookback_hours)
    if seam is None or _utc(seam) >= normal:
        return normal, end  # first run, or the seam is inside (or past) the normal range: no gap to close
    seam = _utc(seam)
    if end - seam > timedelta(hours=max_catchup_hours):
        # A long gap is a day-chunked backfill's job; one hourly spark-submit over it could run for hours.
        # The backfill DAG does not move the seam, hence the second command.
        raise CatchupTooLongError(
            f"seam is at {seam.isoformat()}, {(end - seam).total_seconds() / 3600:g}h before the run at "
            f"{end.isoformat()}, more than max_catchup_hours={max_catchup_hours}: rebuild the gap first with "
            f"`lakepulse backfill --start {_rfc3339(seam)} --end {_rfc3339(normal)}`, then move the seam over it "
            f"with `python -m spark_jobs.seam --start {_rfc3339(seam)} --end {_rfc3339(normal)}` and clear this "
            "run (or trigger the DAG with a larger max_catchup_hours)"
        )
    # Start at the seam so next_seam finds no gap; flooring to the minute only widens the rebuild
    # (range jobs take minute-aligned bounds, and a seam is always one).
    return seam.replace(second=0, microsecond=0), end


def view_statements(seam: datetime, schema: str = DELTA_SCHEMA) -> list[str]:
    """The seam, metric and active-user views with the seam literal filled in, targeting `schema` (in file-name
    order: a view comes after the views it reads)."""
    views = {**trino_views(get_catalog()), **activity_views()}
    rendered = [render_view(sql, seam) for _, sql in sorted(views.items())]
    if schema != DELTA_SCHEMA:
        rendered = [sql.replace(f"{DELTA_SCHEMA}.", f"{schema}.") for sql in rendered]
    return [sql.strip().rstrip(";") for sql in rendered]


def to_s3(uri: str) -> str:
    """Trino's spelling of an s3a:// location."""
    return "s3://" + uri.split("://", 1)[1]


def register_tables(settings: Settings, schema: str, delta_root: str) -> None:
    """Register the batch layer's Delta tables in Trino's metastore (once; existing ones are kept)."""
    from lakepulse.platform.components.trino import query

    catalog, name = schema.split(".", 1)
    if name not in {row[0] for row in query(settings, f"SHOW SCHEMAS FROM {catalog}", 120)}:
        query(settings, f"CREATE SCHEMA IF NOT EXISTS {schema} WITH (location = '{to_s3(delta_root)}/')", 120)
    present = {row[0] for row in query(settings, f"SHOW TABLES FROM {schema}", 120)}
    for table in TRINO_TABLES:
        if table not in present:
            query(settings, f"CALL {catalog}.system.register_table(schema_name => '{name}', "
                            f"table_name => '{table}', table_location => '{to_s3(delta_root)}/{table}')", 120)


def publish(settings: Settings, seam_uri: str, schema: str, delta_root: str) -> dict[str, Any]:
    """Register the Delta tables and (re)create the views at the stored seam, or at NO_SEAM before the first
    advance (which is then still free to put the seam at the end of its range)."""
    from lakepulse.platform.components.trino import query

    current = read_seam(settings, seam_uri)
    register_tables(settings, schema, delta_root)
    for sql in view_statements(current or NO_SEAM, schema):
        query(settings, sql, 120)
    return {"seam": current.isoformat() if current else None}


def advance(settings: Settings, seam_uri: str, schema: str, delta_root: str, start: datetime,
            end: datetime) -> dict[str, Any]:
    """Move the seam past [start, end): re-create the Trino views with the new literal, then store it."""
    from lakepulse.platform.components.trino import query

    current = read_seam(settings, seam_uri)
    new = next_seam(current, start, end)
    report: dict[str, Any] = {"previous": current.isoformat() if current else None, "range": [
        start.isoformat(), end.isoformat()]}
    if new is None:
        return {**report, "seam": report["previous"], "moved": False}
    register_tables(settings, schema, delta_root)
    # Views first: if storing fails, the next run re-creates the same views; the store never runs ahead.
    for sql in view_statements(new, schema):
        query(settings, sql, 120)
    write_seam(settings, seam_uri, new, {"range": report["range"]})
    return {**report, "seam": new.isoformat(), "moved": True}
