"""Records of the speed layer's topics → the events a tenant's viewers are pushed (pure: no Kafka, no HTTP).

Four topics feed the push, each record one tenant's:

- `metrics.minute` → `metric`: the tenant's total of one metric over one minute (all dimension tuples merged
  by the series' rules), recomputed whenever one of that minute's rows changes;
- `orders.live` → `live_order`: one order's current state;
- `couriers.live` → `courier`: one courier's current state;
- `alerts` → `alert`: a rule firing or resolving.

`Shaper.add` takes records as they come; `Shaper.flush` gives the coalesced updates since the last flush: one
per thing that changed (one metric minute, one order, one courier, one alert transition), the newest version.
Times are aware UTC datetimes (serialised as RFC 3339 with `Z`); a field without a value is left out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import orjson

from lakepulse.api.partials import Merged, PartialRow, as_partial_row
from lakepulse.api.series import value_of
from lakepulse.auth.tokens import is_tenant_id
from lakepulse.catalog import Catalog, get_catalog
from lakepulse.settings import Settings

log = logging.getLogger(__name__)

EventType = Literal["metric", "live_order", "courier", "alert"]
MINUTE: Final = timedelta(minutes=1)
# Minutes whose totals are pushed: the current one and those before it, back this far. Rows of older minutes
# (late events) are not pushed: the hub cannot know every dimension row of a minute it stopped keeping, and
# history is the series endpoint's. Also how far the feed replays `metrics.minute` when it (re)starts.
KEEP_MINUTES: Final = 10
# The alert fields a viewer sees: not the tenant (the stream is the tenant's) and not the webhook channel.
ALERT_FIELDS: Final = ("id", "breach_id", "rule_id", "status", "reason", "metric", "value", "threshold", "condition",
                       "window_minutes", "anomaly", "baseline_mean", "baseline_std", "dimensions")
ORDER_FIELDS: Final = ("status", "currency")
ORDER_NUMBERS: Final = ("amount", "prep_seconds", "food_rating", "delivery_rating")
ORDER_TIMES: Final = ("status_at", "rated_at")
COURIER_FIELDS: Final = ("status", "order_id")
COURIER_TIMES: Final = ("status_at",)
JSON_OPTIONS: Final = orjson.OPT_UTC_Z


@dataclass(frozen=True, slots=True)
class Update:
    """One event for one tenant; `key` names what it is the newest version of (a later update replaces it)."""

    tenant_id: str
    key: tuple[Any, ...]
    event: Mapping[str, Any]


def encode(event: Mapping[str, Any]) -> bytes:
    """An event as the JSON of one SSE `data:` line (orjson writes no newlines; NaN becomes null)."""
    return orjson.dumps(event, option=JSON_OPTIONS)


def minute_floor(moment: datetime) -> datetime:
    """The start of the UTC minute holding `moment`."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _instant_ms(value: Any) -> datetime | None:
    """Epoch milliseconds as the streaming job writes them → aware UTC; anything else (null, text) → None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _compact(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if v is not None}


def live_order_update(row: Mapping[str, Any]) -> Update | None:
    """An `orders.live` row → the order's `live_order` event; None for a row without tenant or order id."""
    tenant, order_id = row.get("tenant_id"), _text(row.get("order_id"))
    if not is_tenant_id(tenant) or order_id is None:
        return None
    event: dict[str, Any] = {"type": "live_order", "tenant": tenant, "order_id": order_id}
    event.update({name: _text(row.get(name)) for name in ORDER_FIELDS})
    event.update({name: _number(row.get(name)) for name in ORDER_NUMBERS})
    event.update({name: _instant_ms(row.get(name)) for name in ORDER_TIMES})
    event["as_of"] = _instant_ms(row.get("updated_at"))
    return Update(str(tenant), ("live_order", order_id), _compact(event))


def courier_update(row: Mapping[str, Any]) -> Update | None:
    """A `couriers.live` row → the courier's `courier` event; None for a row without tenant or courier id."""
    tenant, courier_id = row.get("tenant_id"), _text(row.get("courier_id"))
    if not is_tenant_id(tenant) or courier_id is None:
        return None
    event: dict[str, Any] = {"type": "courier", "tenant": tenant, "courier_id": courier_id}
    event.update({name: _text(row.get(name)) for name in COURIER_FIELDS})
    event.update({name: _instant_ms(row.get(name)) for name in COURIER_TIMES})
    waiting = row.get("is_waiting")
    event["is_waiting"] = waiting if isinstance(waiting, bool) else None
    event["as_of"] = _instant_ms(row.get("updated_at"))
    return Update(str(tenant), ("courier", courier_id), _compact(event))


def alert_update(row: Mapping[str, Any]) -> Update | None:
    """An `alerts` record → its `alert` event (without the tenant's webhook channel); None without tenant or id."""
    tenant, alert_id, status = row.get("tenant_id"), _text(row.get("id")), _text(row.get("status"))
    if not is_tenant_id(tenant) or alert_id is None or status is None:
        return None
    event: dict[str, Any] = {"type": "alert", "tenant": tenant}
    event.update({name: row.get(name) for name in ALERT_FIELDS})
    event["window_end"] = _instant_ms(row.get("window_end_ms"))
    # A firing and its resolve are two transitions, both pushed even when they come in one batch.
    return Update(str(tenant), ("alert", alert_id, status), _compact(event))


MinuteKey = tuple[str, str, datetime]  # tenant, metric, window_start


class MinuteTotals:
    """The newest row of each dimension tuple of the recent minutes of every (tenant, metric), so that a minute's
    total over all its tuples can be pushed when one of them changes.

    Minutes before `horizon` are neither kept nor totalled: the feed saw every row of a minute only if it
    replayed the topic from before that minute began (`restart`), and it forgets minutes older than
    KEEP_MINUTES (`advance`), so a late row of one is not mistaken for the minute's only row.
    """

    def __init__(self, catalog: Catalog | None = None, keep_minutes: int = KEEP_MINUTES) -> None:
        self._catalog = catalog or get_catalog()
        self._keep = timedelta(minutes=keep_minutes)
        self._minutes: dict[MinuteKey, dict[str, PartialRow]] = {}
        self.horizon = datetime.min.replace(tzinfo=UTC)

    @property
    def keep(self) -> timedelta:
        """How far back minutes are kept (and replayed)."""
        return self._keep

    def restart(self, replay_from: datetime) -> None:
        """Forget everything: the feed replays the topic from `replay_from`, so only minutes starting at or after
        it will have all their rows."""
        self._minutes.clear()
        start = minute_floor(replay_from)
        self.horizon = start if start == replay_from else start + MINUTE

    def advance(self, now: datetime) -> None:
        """Move the horizon to KEEP_MINUTES before `now`'s minute (never back) and drop the minutes before it."""
        horizon = minute_floor(now) - self._keep
        if horizon <= self.horizon:
            return
        self.horizon = horizon
        for key in [key for key in self._minutes if key[2] < horizon]:
            del self._minutes[key]

    def upsert(self, row: PartialRow) -> MinuteKey | None:
        """Keep `row` if it is the newest of its tuple; the key of its minute, or None when the minute is not
        totalled (before the horizon, or a metric the catalog does not know)."""
        if row.window_start < self.horizon or not is_tenant_id(row.tenant_id):
            return None
        try:
            self._catalog.metric(row.metric)
        except KeyError:
            return None
        key = (row.tenant_id, row.metric, row.window_start)
        rows = self._minutes.setdefault(key, {})
        kept = rows.get(row.dims_key)
        if kept is None or row.updated_at >= kept.updated_at:
            rows[row.dims_key] = row
        return key

    def update(self, key: MinuteKey) -> Update | None:
        """The `metric` event of one kept minute: the metric's value over all its tuples, by kind."""
        rows = self._minutes.get(key)
        if not rows:
            return None
        tenant, name, start = key
        metric = self._catalog.metric(name)
        merged = Merged(metric.bucket_count)
        try:
            for row in rows.values():
                merged.add(row)
            value = value_of(metric, merged)
        except ValueError as exc:  # a row without the sketch or buckets its kind needs: not a number to push
            log.warning("minute of %s %s not pushed: %s", name, start.isoformat(), exc)
            return None
        event: dict[str, Any] = {
            "type": "metric", "tenant": tenant, "metric": name, "unit": metric.unit, "window_start": start,
            "window_end": max(row.window_end for row in rows.values()), "value": value.value,
            "count": merged.count, "as_of": max(row.updated_at for row in rows.values()),
        }
        if value.quantiles is not None:
            event["quantiles"] = dict(value.quantiles)
        return Update(tenant, ("metric", name, start), event)

    def __len__(self) -> int:
        return len(self._minutes)


class Shaper:
    """Records of the four topics in, coalesced updates out (one instance per feed; not thread-safe)."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, keep_minutes: int = KEEP_MINUTES) -> None:
        self.minutes = MinuteTotals(catalog, keep_minutes)
        self._kinds: dict[str, EventType] = {
            settings.topic_metrics_minute: "metric", settings.topic_orders_live: "live_order",
            settings.topic_couriers_live: "courier", settings.topic_alerts: "alert",
        }
        self._pending: dict[tuple[str, tuple[Any, ...]], Update] = {}
        self._dirty: dict[MinuteKey, None] = {}  # ordered set
        self.skipped = 0  # records that were not JSON objects or named no tenant

    @property
    def topics(self) -> list[str]:
        """The topics this shaper reads."""
        return list(self._kinds)

    def add(self, topic: str, value: bytes | None, *, emit: bool = True) -> None:
        """Take one record of `topic`; with `emit` false (a replay) it only rebuilds the minutes' state."""
        kind = self._kinds.get(topic)
        if kind is None or value is None:
            return
        try:
            row = orjson.loads(value)
        except orjson.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            self.skipped += 1
            return
        if kind == "metric":
            self._add_minute_row(row, emit)
            return
        if not emit:
            return
        update = (live_order_update(row) if kind == "live_order"
                  else courier_update(row) if kind == "courier" else alert_update(row))
        if update is None:
            self.skipped += 1
            return
        self._pending[(update.tenant_id, update.key)] = update

    def _add_minute_row(self, raw: dict[str, Any], emit: bool) -> None:
        try:
            row = as_partial_row(raw)
        except (KeyError, TypeError, ValueError):
            row = None
        if row is None or not is_tenant_id(row.tenant_id):
            self.skipped += 1
            return
        key = self.minutes.upsert(row)
        if key is not None and emit:
            self._dirty[key] = None

    def flush(self, now: datetime) -> list[Update]:
        """The updates since the last flush, newest version of each thing, then forget minutes past keeping."""
        updates = list(self._pending.values())
        for key in self._dirty:
            update = self.minutes.update(key)
            if update is not None:
                updates.append(update)
        self._pending.clear()
        self._dirty.clear()
        self.minutes.advance(now)
        return updates
