"""The engines behind the metrics API: minute rows of the batch layer (Trino over Delta) and of the speed layer
(Pinot's broker), and the seam T between them.

Each reader takes the tenant as an argument it cannot omit and re-checks it, the metric and the range before
any SQL is built; values reach SQL only as bound parameters. Every call has a timeout, and every engine
failure becomes a `SourceUnavailable` naming the layer: the engine's own text (which can quote the SQL) is
logged here and never reaches a client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar
from urllib.parse import urlparse

import boto3
import httpx
import pinotdb
import requests
import trino.dbapi
import trino.exceptions
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError
from pinotdb.db import Connection as PinotConnection

from lakepulse.api.cache import AnswerCache
from lakepulse.auth.tokens import is_tenant_id
from lakepulse.batch.seam import production_seam_uri, split_uri
from lakepulse.catalog import Catalog, get_catalog
from lakepulse.catalog.trino import DELTA_SCHEMA
from lakepulse.settings import Settings

log = logging.getLogger(__name__)

# Columns of the partial-row contract (aggregations.schema.PARTIAL_SCHEMA) the merge needs, sketches included;
# spelled out here so that the API process does not build Spark types to name them.
PARTIAL_COLUMNS: Final = ("tenant_id", "metric", "dims_key", "dims", "window_start", "window_end", "count", "sum",
                          "min", "max", "hll_sketch", "theta_sketch", "buckets", "updated_at")
SKETCH_COLUMNS: Final = ("hll_sketch", "theta_sketch")
BATCH_TABLE: Final = f"{DELTA_SCHEMA}.metrics_minute"  # the table, not the seam view: the view has no sketches
SPEED_TABLE: Final = "metrics_minute"
# A week of minutes for a handful of dimension tuples; rows are ~1 kB of Python objects each, so the cap also
# bounds a request's memory. Above it the answer says `truncated`.
DEFAULT_MAX_ROWS: Final = 100_000
TRINO_TIMEOUT_S: Final = 10.0
PINOT_TIMEOUT_S: Final = 5.0
SEAM_TTL_S: Final = 5.0
SEAM_TIMEOUT_S: Final = 2.0
# The seam only moves forward, and a minute between an old and a new seam is still in Pinot (7 days' retention)
# and reconciled, so a seam a minute old still serves each minute once: better than a 503 while S3 hiccups.
SEAM_MAX_STALE_S: Final = 60.0


class SourceUnavailable(Exception):
    """An engine did not answer in time or failed: 503, with a message that names the layer and nothing else."""

    status_code: ClassVar[int] = 503

    def __init__(self, layer: str) -> None:
        super().__init__(f"the {layer} is unavailable right now; try again shortly")
        self.layer = layer


@dataclass(frozen=True)
class MinuteRows:
    """Minute partial rows of one layer (in the engine client's shapes) and whether the row cap cut them short."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


class MinuteSource(Protocol):
    """A layer's minute rows of one tenant and metric with window_start in [start, end)."""

    def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows: ...

    def minute_totals(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """One row per minute: count and sum added over the dimension tuples by the engine, no sketches or
        buckets (for count, sum and average metrics without group_by or filters: ~13x fewer rows to move)."""
        ...


def needs_sketches(kind: str) -> bool:
    """Whether a metric of `kind` is merged from sketches. Only distinct counts are; the readers leave the sketch
    columns out for the others because reading one costs even where it is null: Pinot's broker took 36-45 ms
    per sketch column for a tenant's 87 minute rows of a sum metric, 4 ms for count, sum and updated_at."""
    return kind == "distinct"


def partial_columns(sketches: bool) -> tuple[str, ...]:
    """The partial-row columns a reader selects, with or without the sketches (absent columns merge as null)."""
    return PARTIAL_COLUMNS if sketches else tuple(c for c in PARTIAL_COLUMNS if c not in SKETCH_COLUMNS)


def rows_sql(statements: dict[bool, str], tenant_id: str, metric: str, start: datetime, end: datetime,
             catalog: Catalog) -> str:
    """A reader's minute-rows statement for `metric`: with the sketch columns or without (`partial_columns`).
    The scope is checked first, so an unknown metric is refused before the catalog is asked for its kind."""
    check_scope(tenant_id, metric, start, end, catalog)
    return statements[needs_sketches(catalog.metric(metric).kind)]


def _quoted(column: str) -> str:
    return f'"{column}"'


def totals_row(row: dict[str, Any]) -> dict[str, Any]:
    """An engine's per-minute total → a partial row of the minute, across all dimension tuples. The minute is
    `window_start` (Trino: a timestamp) or `minute_ms` (Pinot: epoch milliseconds, possibly as text)."""
    out = {k: v for k, v in row.items() if k != "minute_ms"}
    if "minute_ms" in row:
        out["window_start"] = int(float(row["minute_ms"]))
    start = out["window_start"]
    minute = timedelta(minutes=1)
    end = start + minute if isinstance(start, datetime) else start + int(minute.total_seconds() * 1000)
    return {**out, "dims_key": "", "dims": {}, "window_end": end}


class SeamReader(Protocol):
    """The seam T as it is now (None before the batch layer has published one)."""

    def current(self) -> datetime | None: ...


def check_scope(tenant_id: str, metric: str, start: datetime, end: datetime, catalog: Catalog) -> None:
    """Refuse (ValueError) a tenant that is not a contract tenant id, a metric the catalog lacks, or a bad range."""
    # The routes validate first; this is the last line before SQL, so a caller that forgot cannot slip through.
    if not is_tenant_id(tenant_id):
        raise ValueError("tenant_id is not a tenant id of the event contract")
    if metric not in catalog.names():
        raise ValueError("metric is not in the catalog")
    if start.utcoffset() is None or end.utcoffset() is None or not start < end:
        raise ValueError("the range must be timezone-aware with start < end")


def _as_dicts(description: Any, rows: list[Any]) -> list[dict[str, Any]]:
    names = [column[0] for column in description or ()]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _capped(rows: list[dict[str, Any]], max_rows: int) -> MinuteRows:
    # Queries ask for one row more than the cap: its presence is the signal, without a second COUNT query.
    return MinuteRows(rows[:max_rows], truncated=len(rows) > max_rows)


class _Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closeable)


class _OneConnection(Generic[C]):
    """One engine connection per process, opened on first use (both clients are thread-safe) and closable."""

    def __init__(self) -> None:
        self._conn: C | None = None
        self._lock = threading.Lock()

    def _open(self) -> C:
        raise NotImplementedError

    def _connection(self) -> C:
        with self._lock:
            if self._conn is None:
                self._conn = self._open()
            return self._conn

    def close(self) -> None:
        """Close the connection if one was opened."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class BatchSource(_OneConnection[trino.dbapi.Connection]):
    """Minute rows before the seam from Delta's `metrics_minute`, through Trino (bound `?` parameters)."""

    layer: ClassVar[str] = "batch layer"

    def __init__(self, settings: Settings, timeout_s: float = TRINO_TIMEOUT_S, max_rows: int = DEFAULT_MAX_ROWS,
                 catalog: Catalog | None = None) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._max_rows = max_rows
        self._catalog = catalog or get_catalog()
        super().__init__()
        # window_date (the UTC date of window_start, the partition column) prunes files; window_start bounds
        # the minutes. Both are half-open in effect: the last date is the one holding end's previous instant.
        where = ("WHERE tenant_id = ? AND metric = ? AND window_date >= ? AND window_date <= ? "
                 "AND window_start >= ? AND window_start < ?")
        self._sql = {sketches: f"SELECT {', '.join(map(_quoted, partial_columns(sketches)))} FROM {BATCH_TABLE} "
                               f"{where} LIMIT {int(max_rows) + 1}" for sketches in (True, False)}
        self._totals_sql = ('SELECT tenant_id, metric, window_start, sum("count") AS "count", sum("sum") AS "sum", '
                            f"max(updated_at) AS updated_at FROM {BATCH_TABLE} {where} "
                            f"GROUP BY tenant_id, metric, window_start LIMIT {int(max_rows) + 1}")

    def _open(self) -> trino.dbapi.Connection:
        # One connection per process: the client is thread-safe (DB-API threadsafety 2) and keeps its HTTP pool.
        return trino.dbapi.connect(
            host=self._settings.trino_url,
            user=self._settings.trino_user,
            source="lakepulse-api",
            # The coordinator ends the query itself at the deadline (no orphan keeps running); one
            # attempt per HTTP call, since the client retries through the 503's Retry-After.
            session_properties={"query_max_run_time": f"{max(1, round(self._timeout_s))}s"},
            request_timeout=self._timeout_s,
            max_attempts=1,
            # Trino 476 takes EXECUTE IMMEDIATE: no probing query before the first statement.
            legacy_prepared_statements=False,
        )

    def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The tenant's `metric` rows with window_start in [start, end) (the batch range of split_at_seam)."""
        sql = rows_sql(self._sql, tenant_id, metric, start, end, self._catalog)
        return _capped(self._read(sql, tenant_id, metric, start, end), self._max_rows)

    def minute_totals(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The same minutes, one row each, count and sum added by Trino."""
        rows = self._read(self._totals_sql, tenant_id, metric, start, end)
        return _capped([totals_row(r) for r in rows], self._max_rows)

    def _read(self, sql: str, tenant_id: str, metric: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        check_scope(tenant_id, metric, start, end, self._catalog)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        last_date = (end - timedelta(microseconds=1)).date()
        params = [tenant_id, metric, start.date().isoformat(), last_date.isoformat(), start, end]
        started = time.monotonic()
        try:
            cursor = self._connection().cursor()
            try:
                cursor.execute(sql, params)
                return _as_dicts(cursor.description, cursor.fetchall())
            finally:
                cursor.close()
        except (trino.exceptions.Error, trino.exceptions.HttpError, requests.RequestException, OSError) as exc:
            log.warning("Trino read of %s for %s failed after %.1f s: %r", metric, tenant_id,
                        time.monotonic() - started, exc)
            raise SourceUnavailable(self.layer) from exc


class BrokerReader(_OneConnection[PinotConnection]):
    """One `pinotdb` connection to Pinot's broker with a deadline on both sides, and reads that fail as
    SourceUnavailable (the engine's text goes to the log only)."""

    layer: ClassVar[str] = "speed layer"

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self._broker_url = settings.pinot_broker_url
        self._timeout_s = timeout_s
        # The broker stops the query at the deadline too, not only our HTTP client.
        self._options = f"timeoutMs={int(timeout_s * 1000)}"
        super().__init__()

    def _open(self) -> PinotConnection:
        url = urlparse(self._broker_url)
        return pinotdb.connect(
            host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80),
            path="/query/sql", scheme=url.scheme or "http", timeout=self._timeout_s,
            # pinotdb hands verify_ssl to httpx as-is, and None there means no TLS context at all.
            verify_ssl=True,
        )

    def _query(self, what: str, tenant_id: str, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        started = time.monotonic()
        try:
            # pinotdb raises if fewer servers answered than were queried, so a partial answer is an error.
            cursor = self._connection().cursor()
            cursor.execute(sql, params, queryOptions=self._options)
            return _as_dicts(cursor.description, cursor.fetchall())
        except (pinotdb.Error, httpx.HTTPError, OSError) as exc:
            log.warning("Pinot read of %s for %s failed after %.1f s: %r", what, tenant_id,
                        time.monotonic() - started, exc)
            raise SourceUnavailable(self.layer) from exc


class SpeedSource(BrokerReader):
    """Current (upserted) minute rows from Pinot's `metrics_minute` through the broker, via `pinotdb`.

    The broker answers upsert tables with the newest row of each primary key only; Trino's Pinot connector
    may return superseded ones when it reads segments (trinodb/trino#10164), so the speed layer never goes
    through Trino here.
    """

    def __init__(self, settings: Settings, timeout_s: float = PINOT_TIMEOUT_S, max_rows: int = DEFAULT_MAX_ROWS,
                 catalog: Catalog | None = None) -> None:
        super().__init__(settings, timeout_s)
        self._max_rows = max_rows
        self._catalog = catalog or get_catalog()
        # Times as epoch milliseconds: Pinot 0.11 renders TIMESTAMP as text in the server's zone.
        def select(columns: tuple[str, ...]) -> str:
            return ", ".join(f'CAST("{c}" AS LONG) AS "{c}"' if c in ("window_start", "window_end", "updated_at")
                             else _quoted(c) for c in columns)

        # pinotdb binds pyformat parameters: a str is quoted with '' doubled (what Pinot's Calcite parser
        # reads), ints go in as digits. It passes the string "*" and non-str objects through unquoted, so only
        # checked tenant ids, catalog names and ints we computed are ever bound.
        where = ("WHERE tenant_id = %(tenant_id)s AND metric = %(metric)s "
                 "AND window_start >= %(start_ms)s AND window_start < %(end_ms)s")
        self._sql = {sketches: f"SELECT {select(partial_columns(sketches))} FROM {SPEED_TABLE} {where} "
                               f"LIMIT {int(max_rows) + 1}" for sketches in (True, False)}
        # Pinot 0.11 groups by an expression only under an alias other than a column's name, and types the
        # grouped CAST as STRING: totals_row reads the milliseconds back as a number.
        self._totals_sql = ('SELECT tenant_id, metric, CAST(window_start AS LONG) AS minute_ms, '
                            'SUM("count") AS "count", SUM("sum") AS "sum", '
                            f'MAX(CAST(updated_at AS LONG)) AS updated_at FROM {SPEED_TABLE} {where} '
                            "GROUP BY tenant_id, metric, CAST(window_start AS LONG) "
                            f"LIMIT {int(max_rows) + 1}")

    def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The tenant's current `metric` rows with window_start in [start, end) (the speed range of split_at_seam)."""
        sql = rows_sql(self._sql, tenant_id, metric, start, end, self._catalog)
        return _capped(self._read(sql, tenant_id, metric, start, end), self._max_rows)

    def minute_totals(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The same minutes, one row each, count and sum added by the broker over the current rows only."""
        rows = self._read(self._totals_sql, tenant_id, metric, start, end)
        return _capped([totals_row(r) for r in rows], self._max_rows)

    def _read(self, sql: str, tenant_id: str, metric: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        check_scope(tenant_id, metric, start, end, self._catalog)
        params = {"tenant_id": tenant_id, "metric": metric,
                  "start_ms": int(start.timestamp() * 1000), "end_ms": int(end.timestamp() * 1000)}
        return self._query(metric, tenant_id, sql, params)


# Minutes before the seam are final: only a backfill or a rebuild of history changes them, and those show
# within this long. Dashboards ask for "the last hour", which starts before the seam for most of every hour:
# without this every such read would wait for Trino (measured p95 405 ms against 30 ms from Pinot alone).
FINAL_ROWS_TTL_S: Final = 60.0
FINAL_ROWS_MAX_ROWS: Final = 5_000  # a dashboard hour is tens to hundreds of rows; a 24 h read is not kept
FINAL_ROWS_MAX_ENTRIES: Final = 2_000


class FinalMinuteRows:
    """The batch layer's minute rows per (tenant, metric, range), kept for `ttl_s` when small enough."""

    layer: ClassVar[str] = "batch layer"

    def __init__(self, source: MinuteSource, ttl_s: float = FINAL_ROWS_TTL_S, max_rows: int = FINAL_ROWS_MAX_ROWS,
                 max_entries: int = FINAL_ROWS_MAX_ENTRIES) -> None:
        self._source = source
        self._max_rows = max_rows
        self._cache = AnswerCache(ttl_s, max_entries)

    def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The source's rows, read at most once per `ttl_s` for one key (concurrent misses share one read)."""
        rows: MinuteRows = self._cache.get(
            (tenant_id, metric, start, end), lambda: self._source.minute_rows(tenant_id, metric, start, end),
            keep=lambda found: len(found.rows) <= self._max_rows)
        return rows

    def minute_totals(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """The source's per-minute totals, kept like the rows."""
        rows: MinuteRows = self._cache.get(
            ("totals", tenant_id, metric, start, end),
            lambda: self._source.minute_totals(tenant_id, metric, start, end),
            keep=lambda found: len(found.rows) <= self._max_rows)
        return rows

    def close(self) -> None:
        """Close the source's connection."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class SeamSource:
    """The seam T from its S3 object, cached for `ttl_s`; a failed refresh serves the last value for a while."""

    layer: ClassVar[str] = "seam (batch layer state)"

    def __init__(self, settings: Settings, ttl_s: float = SEAM_TTL_S, timeout_s: float = SEAM_TIMEOUT_S,
                 max_stale_s: float = SEAM_MAX_STALE_S, reader: Callable[[], datetime | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._max_stale_s = max_stale_s
        self._reader = reader or self._read_s3
        self._clock = clock
        self._lock = threading.Lock()
        self._client: Any = None
        self._value: datetime | None = None
        self._read_at: float | None = None  # when _value was last read successfully
        self._next_read = float("-inf")

    def current(self) -> datetime | None:
        """The seam, read at most once per `ttl_s`; SourceUnavailable when it cannot be read and no fresh-enough
        value is cached."""
        with self._lock:  # one refresh at a time; the others wait for it instead of piling onto S3
            now = self._clock()
            if now < self._next_read:
                return self._value
            try:
                self._value = self._reader()
            except SourceUnavailable:
                if self._read_at is None or now - self._read_at > self._max_stale_s:
                    raise
                log.warning("seam refresh failed; serving the one read %.0f s ago", now - self._read_at)
            else:
                self._read_at = now
            self._next_read = now + self._ttl_s
            return self._value

    def _read_s3(self) -> datetime | None:
        # Not lakepulse.batch.seam.read_seam: that builds a client per call with botocore's 60 s timeouts and
        # retries; a request thread must not wait that long. Same object, same format.
        bucket, key = split_uri(production_seam_uri(self._settings))
        try:
            if self._client is None:
                self._client = boto3.client(
                    "s3", endpoint_url=self._settings.s3_endpoint, region_name=self._settings.s3_region,
                    aws_access_key_id=self._settings.s3_access_key,
                    aws_secret_access_key=self._settings.s3_secret_key,
                    config=Config(s3={"addressing_style": "path"}, connect_timeout=self._timeout_s,
                                  read_timeout=self._timeout_s,
                                  retries={"mode": "standard", "max_attempts": 1}),
                )
            try:
                body = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except self._client.exceptions.NoSuchKey:
                return None  # before the first advance: the speed layer serves every minute
            seam = datetime.fromisoformat(json.loads(body)["seam"])
        except (BotoCoreError, ClientError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("reading the seam from s3://%s/%s failed: %r", bucket, key, exc)
            raise SourceUnavailable(self.layer) from exc
        return seam if seam.tzinfo is not None else seam.replace(tzinfo=UTC)
