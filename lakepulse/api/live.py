"""The restaurant's live state, without HTTP: the order funnel, couriers waiting at the restaurant, the latest
ratings, sales and completed orders today, and prep time over the last hour, each with its as-of time.

The funnel, the couriers and the ratings are the current rows of Pinot's upsert tables `orders_live` and
`couriers_live` (one row per order / courier, its latest status by event time), read through the broker:
Trino's Pinot connector may return superseded upsert rows (trinodb/trino#10164). The windowed numbers are the
catalog's metrics over minute rows across the seam, selected and merged by the series endpoint's own rules, so
a 1-minute series over the same minutes sums to the same numbers.

Times of the response are ISO 8601 in the request's timezone. An as-of is the newest `updated_at` (when the
streaming job wrote the row) among the rows a number was computed from; null when there were none.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from lakepulse.api.cache import AnswerCache
from lakepulse.api.partials import Merged, PartialRow
from lakepulse.api.series import (
    SeriesRequestError,
    TimeRange,
    current_rows,
    split_at_seam,
    summed_by_engines,
    value_of,
)
from lakepulse.api.sources import (
    PINOT_TIMEOUT_S,
    BrokerReader,
    MinuteRows,
    MinuteSource,
    SeamReader,
)
from lakepulse.api.windows import DAY, MINUTE, iana_zones, window_floor
from lakepulse.auth.tokens import is_tenant_id
from lakepulse.catalog import Catalog, Metric, get_catalog
from lakepulse.events import ORDER_STATUSES
from lakepulse.settings import Settings

log = logging.getLogger(__name__)

FUNNEL_STATUSES: Final = ORDER_STATUSES
DEFAULT_RATINGS: Final = 10
MAX_RATINGS: Final = 100
# Couriers listed by name; the count is exact beyond it (`truncated` says the list is not all of them).
MAX_WAITING_LISTED: Final = 50
HOUR: Final = timedelta(hours=1)
# The windowed numbers: response key → (catalog metric, span). "today" runs from local midnight of the
# request's timezone, "last_hour" is the 60 minutes ending with the current one; both end at the end of the
# current minute (minute rows are the finest data, and the current minute is where the live data is).
WINDOWED: Final[dict[str, tuple[str, str]]] = {
    "sales_today": ("gross_sales", "today"),
    "completed_today": ("orders_completed", "today"),
    "prep_time_last_hour": ("prep_time_seconds", "last_hour"),
}
# Minutes before the seam are final (the batch layer rebuilt and reconciled them), so their totals are kept
# for a minute instead of asking Trino (~0.5 s) on every live read; a backfill shows within FINAL_TTL_S.
FINAL_TTL_S: Final = 60.0
FINAL_MAX_ENTRIES: Final = 4096  # ~1 kB each
# The reads of one live request (up to ten) run side by side. The pool is the process's, so it also bounds the
# queries one API process has in flight when many requests come at once (they queue here, not at the broker).
_FAN_OUT: Final = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lakepulse-live")

ORDERS_TABLE: Final = "orders_live"
COURIERS_TABLE: Final = "couriers_live"
# pinotdb binds pyformat parameters (see sources.SpeedSource): only checked tenant ids and checked ints are
# bound. Times as epoch milliseconds: Pinot 0.11 renders TIMESTAMP as text in the server's zone. Its null
# handling cannot be switched on for queries here (data table version < 4): nulls read as the column's default
# (0 for a TIMESTAMP, -Infinity for a DOUBLE, "null" for a STRING), but IS [NOT] NULL filters use the null
# vectors the schemas enable.
STATUS_SQL: Final = (
    "SELECT status, COUNT(*) AS orders, MAX(CAST(updated_at AS LONG)) AS updated_ms "
    f"FROM {ORDERS_TABLE} WHERE tenant_id = %(tenant_id)s GROUP BY status LIMIT 100"
)
COURIER_SUMMARY_SQL: Final = (
    "SELECT is_waiting, COUNT(*) AS couriers, MAX(CAST(updated_at AS LONG)) AS updated_ms "
    f"FROM {COURIERS_TABLE} WHERE tenant_id = %(tenant_id)s GROUP BY is_waiting LIMIT 10"
)
WAITING_SQL: Final = (
    "SELECT courier_id, order_id, CAST(status_at AS LONG) AS since_ms, CAST(updated_at AS LONG) AS updated_ms "
    f"FROM {COURIERS_TABLE} WHERE tenant_id = %(tenant_id)s AND is_waiting = true "
    "ORDER BY status_at, courier_id LIMIT %(limit)s"
)
RATINGS_SQL: Final = (
    "SELECT order_id, food_rating, delivery_rating, CAST(rated_at AS LONG) AS rated_ms, "
    f"CAST(updated_at AS LONG) AS updated_ms FROM {ORDERS_TABLE} "
    "WHERE tenant_id = %(tenant_id)s AND rated_at IS NOT NULL ORDER BY rated_at DESC, order_id LIMIT %(limit)s"
)


class LiveRequestError(SeriesRequestError):
    """A live-state request the API refuses: 400, with a message that names the problem."""


@dataclass(frozen=True)
class LiveRequest:
    """What a live-state request may choose: the timezone of "today" and of the answer, and how many ratings."""

    timezone: str = "UTC"
    ratings: int = DEFAULT_RATINGS
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, str) or self.timezone not in iana_zones():
            raise LiveRequestError("unknown timezone: use an IANA name like Europe/Berlin")
        if isinstance(self.ratings, bool) or not isinstance(self.ratings, int) or not 1 <= self.ratings <= MAX_RATINGS:
            raise LiveRequestError(f"ratings must be an integer from 1 to {MAX_RATINGS}")
        object.__setattr__(self, "zone", ZoneInfo(self.timezone))


def live_spans(now: datetime, zone: ZoneInfo) -> dict[str, TimeRange]:
    """The minute spans of the windowed numbers at `now`: today (from local midnight in `zone`, DST-aware, as
    the series' 1d window) and the last hour, both up to the end of the current minute."""
    current_end = now.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
    return {"today": TimeRange(window_floor(now, zone, DAY), current_end),
            "last_hour": TimeRange(current_end - HOUR, current_end)}


def check_live_scope(tenant_id: str, limit: int | None = None) -> None:
    """Refuse (ValueError) a tenant that is not a contract tenant id, or a row limit that is not an int in
    1..100."""
    # The route validates first; this is the last line before SQL, so a caller that forgot cannot slip through.
    if not is_tenant_id(tenant_id):
        raise ValueError("tenant_id is not a tenant id of the event contract")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= max(MAX_RATINGS, MAX_WAITING_LISTED)):
        raise ValueError("the row limit must be a small positive integer")


class LiveReader(Protocol):
    """The live tables' rows of one tenant, in the broker's shapes, and the cache of final totals."""

    @property
    def finals(self) -> FinalTotals: ...

    def order_statuses(self, tenant_id: str) -> list[dict[str, Any]]:
        """Rows (status, orders, updated_ms): the tenant's orders per current status."""
        ...

    def courier_summary(self, tenant_id: str) -> list[dict[str, Any]]:
        """Rows (is_waiting, couriers, updated_ms): the tenant's couriers, waiting or not."""
        ...

    def waiting_couriers(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """Rows (courier_id, order_id, since_ms, updated_ms): couriers waiting, longest first."""
        ...

    def latest_ratings(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """Rows (order_id, food_rating, delivery_rating, rated_ms, updated_ms): newest ratings first."""
        ...


@dataclass(frozen=True)
class LayerTotal:
    """One layer's minute rows of a span merged into one partial row, their freshness, and whether a cap cut
    the rows short."""

    row: PartialRow
    freshness: datetime | None
    truncated: bool


class FinalTotals:
    """Totals of the batch layer's minutes (before the seam) per (tenant, metric, span), kept for `ttl_s`."""

    def __init__(self, ttl_s: float = FINAL_TTL_S, max_entries: int = FINAL_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cache = AnswerCache(ttl_s, max_entries, clock)

    def get(self, tenant_id: str, metric: str, span: TimeRange, compute: Callable[[], LayerTotal]) -> LayerTotal:
        """The cached total of the span, or `compute()`'s (then cached; a failure is not)."""
        total: LayerTotal = self._cache.get((tenant_id, metric, span.start, span.end), compute)
        return total


class LiveSource(BrokerReader):
    """The live tables' current rows of one tenant through Pinot's broker (`pinotdb`), and the final totals."""

    def __init__(self, settings: Settings, timeout_s: float = PINOT_TIMEOUT_S,
                 finals: FinalTotals | None = None) -> None:
        super().__init__(settings, timeout_s)
        self._finals = finals or FinalTotals()

    @property
    def finals(self) -> FinalTotals:
        """The app's cache of final (before-the-seam) totals."""
        return self._finals

    def _rows(self, what: str, sql: str, tenant_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        check_live_scope(tenant_id, limit)
        params: dict[str, Any] = {"tenant_id": tenant_id} if limit is None else {"tenant_id": tenant_id,
                                                                                   "limit": limit}
        return self._query(what, tenant_id, sql, params)

    def order_statuses(self, tenant_id: str) -> list[dict[str, Any]]:
        """Rows (status, orders, updated_ms): the tenant's orders per current status."""
        return self._rows("order statuses", STATUS_SQL, tenant_id)

    def courier_summary(self, tenant_id: str) -> list[dict[str, Any]]:
        """Rows (is_waiting, couriers, updated_ms): the tenant's couriers, waiting or not."""
        return self._rows("couriers", COURIER_SUMMARY_SQL, tenant_id)

    def waiting_couriers(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """Rows (courier_id, order_id, since_ms, updated_ms): couriers waiting, longest first."""
        return self._rows("waiting couriers", WAITING_SQL, tenant_id, limit)

    def latest_ratings(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """Rows (order_id, food_rating, delivery_rating, rated_ms, updated_ms): newest ratings first."""
        return self._rows("ratings", RATINGS_SQL, tenant_id, limit)


# --- the windowed numbers ---------------------------------------------------------------------------------


def layer_total(rows: MinuteRows, span: TimeRange, tenant_id: str, metric: Metric) -> LayerTotal:
    """One layer's minute rows of `span` → their merge as one partial row (the series' row rules: rows outside
    the span dropped, the newest version of each minute and dimension tuple kept)."""
    if metric.kind == "distinct":
        raise ValueError("a distinct metric's total needs its sketches unioned, not one partial row")
    merged = Merged(metric.bucket_count)
    kept = current_rows(rows.rows, span, tenant_id, metric.name)
    for row in kept:
        merged.add(row)
    freshness = max((row.updated_at for row in kept), default=None)
    total = PartialRow(
        tenant_id=tenant_id, metric=metric.name, dims_key="", dims={}, window_start=span.start,
        window_end=span.end, count=merged.count, sum=merged.sum, min=merged.min, max=merged.max,
        hll_sketch=None, theta_sketch=None, buckets=None if merged.buckets is None else tuple(merged.buckets),
        updated_at=freshness or span.start,
    )
    return LayerTotal(total, freshness, rows.truncated)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def metric_body(metric: Metric, span: TimeRange, totals: Iterable[LayerTotal], zone: ZoneInfo) -> dict[str, Any]:
    """The layers' totals of one metric over `span` → its JSON block: value by kind as the series gives it
    (count, sum, or mean for a distribution, which adds min, max and quantiles), count, span and as-of."""
    totals = list(totals)
    merged = Merged(metric.bucket_count)
    for total in totals:
        merged.add(total.row)
    speed_fresh = [t.freshness for t in totals if t.freshness is not None]
    value = value_of(metric, merged)
    body: dict[str, Any] = {
        "metric": metric.name,
        "unit": metric.unit,
        "start": span.start.astimezone(zone).isoformat(),
        "end": span.end.astimezone(zone).isoformat(),
        "value": value.value,
        "count": merged.count,
        "as_of": _iso(max(speed_fresh, default=None), zone),
        "truncated": any(t.truncated for t in totals),
    }
    if metric.kind == "distribution":
        body.update(min=_finite(merged.min), max=_finite(merged.max), quantiles=value.quantiles)
    return body


# --- the live tables' rows → JSON ---------------------------------------------------------------------------


def _iso(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return None if moment is None else moment.astimezone(zone).isoformat()


def _instant_ms(value: Any) -> datetime | None:
    """Epoch milliseconds as the broker gives them (int, or a float from MAX) → UTC; 0 (a null's default)→None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        millis = float(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(millis / 1000, UTC) if math.isfinite(millis) and millis > 0 else None


def _rating(value: Any) -> int | None:
    """A rating (the contract's 1..5) from a DOUBLE column; its null default (-Infinity, as text) → None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number) if math.isfinite(number) else None


def _newest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


def _is_true(value: Any) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.lower() == "true")


def funnel_body(rows: Iterable[Mapping[str, Any]], zone: ZoneInfo) -> dict[str, Any]:
    """Rows (status, orders, updated_ms) → every contract status with its order count (0 where none), the
    total and the as-of. Orders without a contract status (only ratings seen so far) are in no status."""
    rows = list(rows)
    counts = dict.fromkeys(FUNNEL_STATUSES, 0)
    for row in rows:
        if row.get("status") in counts:
            counts[row["status"]] += int(row["orders"])
    as_of = _newest(*(_instant_ms(row.get("updated_ms")) for row in rows))
    return {"as_of": _iso(as_of, zone), "orders": counts, "total": sum(counts.values())}


def couriers_body(summary: Iterable[Mapping[str, Any]], waiting: Iterable[Mapping[str, Any]],
                  zone: ZoneInfo) -> dict[str, Any]:
    """Summary rows (is_waiting, couriers, updated_ms) and the listed waiting couriers → count, list (longest
    waiting first), whether the list is cut short, and the as-of of all the tenant's courier rows."""
    summary, waiting = list(summary), list(waiting)
    count = sum(int(row["couriers"]) for row in summary if _is_true(row.get("is_waiting")))
    listed = [{"courier_id": str(row["courier_id"]), "order_id": row.get("order_id"),
               "since": _iso(_instant_ms(row.get("since_ms")), zone)} for row in waiting]
    as_of = _newest(*(_instant_ms(row.get("updated_ms")) for row in [*summary, *waiting]))
    return {"as_of": _iso(as_of, zone), "count": count, "couriers": listed, "truncated": count > len(listed)}


def ratings_body(rows: Iterable[Mapping[str, Any]], orders_as_of: datetime | None, zone: ZoneInfo) -> dict[str, Any]:
    """Rating rows (newest first) → the list and its as-of: the tenant's orders' (ratings are columns of them)."""
    rows = list(rows)
    latest = [{"order_id": str(row["order_id"]), "food_rating": _rating(row.get("food_rating")),
               "delivery_rating": _rating(row.get("delivery_rating")),
               "rated_at": _iso(_instant_ms(row.get("rated_ms")), zone)} for row in rows]
    as_of = _newest(orders_as_of, *(_instant_ms(row.get("updated_ms")) for row in rows))
    return {"as_of": _iso(as_of, zone), "latest": latest}


@dataclass(frozen=True)
class LiveReads:
    """Everything a live answer is assembled from, as the engines gave it."""

    statuses: list[dict[str, Any]]
    courier_summary: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    ratings: list[dict[str, Any]]
    totals: Mapping[str, list[LayerTotal]]  # WINDOWED key → the layers' totals


def live_body(tenant_id: str, request: LiveRequest, now: datetime, seam: datetime | None, reads: LiveReads,
              catalog: Catalog | None = None) -> dict[str, Any]:
    """The JSON-ready live state of one tenant (pure: no engine is touched)."""
    catalog = catalog or get_catalog()
    zone = request.zone
    spans = live_spans(now, zone)
    funnel = funnel_body(reads.statuses, zone)
    orders_as_of = _newest(*(_instant_ms(row.get("updated_ms")) for row in reads.statuses))
    body: dict[str, Any] = {
        "tenant": tenant_id,
        "timezone": request.timezone,
        "now": now.astimezone(zone).isoformat(),
        "seam": _iso(seam, zone),
        "funnel": funnel,
        "couriers_waiting": couriers_body(reads.courier_summary, reads.waiting, zone),
        "ratings": ratings_body(reads.ratings, orders_as_of, zone),
    }
    for key, (metric, span) in WINDOWED.items():
        body[key] = metric_body(catalog.metric(metric), spans[span], reads.totals.get(key, []), zone)
    return body


# --- one live read: the engines side by side, then the assembly -----------------------------------------------


def read_live(request: LiveRequest, tenant_id: str, live: LiveReader, seam: SeamReader, batch: MinuteSource,
              speed: MinuteSource, now: datetime, catalog: Catalog | None = None) -> dict[str, Any]:
    """A validated request of one tenant → its JSON-ready live state: the live tables and each windowed metric's
    layers (minutes before the seam from `batch`, cached in `live.finals`, the rest from `speed`) read at once."""
    check_live_scope(tenant_id)
    catalog = catalog or get_catalog()
    at = seam.current()
    spans = live_spans(now, request.zone)
    statuses = _FAN_OUT.submit(live.order_statuses, tenant_id)
    summary = _FAN_OUT.submit(live.courier_summary, tenant_id)
    waiting = _FAN_OUT.submit(live.waiting_couriers, tenant_id, MAX_WAITING_LISTED)
    ratings = _FAN_OUT.submit(live.latest_ratings, tenant_id, request.ratings)
    layers: dict[str, list[Future[LayerTotal]]] = {}
    for key, (name, span_name) in WINDOWED.items():
        metric = catalog.metric(name)
        split = split_at_seam(spans[span_name], at)
        layers[key] = []
        if split.batch is not None:
            layers[key].append(_FAN_OUT.submit(_final_total, live.finals, batch, tenant_id, metric, split.batch))
        if split.speed is not None:
            layers[key].append(_FAN_OUT.submit(_total, speed, tenant_id, metric, split.speed, True))
    reads = LiveReads(
        statuses=statuses.result(), courier_summary=summary.result(), waiting=waiting.result(),
        ratings=ratings.result(), totals={key: [f.result() for f in futures] for key, futures in layers.items()},
    )
    return live_body(tenant_id, request, now, at, reads, catalog)


def _total(source: MinuteSource, tenant_id: str, metric: Metric, span: TimeRange, fresh: bool) -> LayerTotal:
    # Sales and completed orders need only count and sum: the engine adds a minute's dimension tuples (gross
    # sales has channel x country of them), so a day is one row per minute instead of several.
    read = source.minute_totals if summed_by_engines(metric) else source.minute_rows
    total = layer_total(read(tenant_id, metric.name, span.start, span.end), span, tenant_id, metric)
    # Freshness is the speed layer's (as the series'): batch rows were written by the last hourly run.
    return total if fresh else LayerTotal(total.row, None, total.truncated)


def _final_total(finals: FinalTotals, batch: MinuteSource, tenant_id: str, metric: Metric,
                 span: TimeRange) -> LayerTotal:
    return finals.get(tenant_id, metric.name, span, lambda: _total(batch, tenant_id, metric, span, False))
