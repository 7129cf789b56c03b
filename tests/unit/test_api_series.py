"""The metrics API's time series without HTTP: request validation and caps, windows in a timezone (DST,
half-hour offsets), the seam split, the merge of minute partials by metric kind, and Spark's sketch bytes."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from datasketches import compact_theta_sketch, hll_sketch, tgt_hll_type, update_theta_sketch

from lakepulse.api.partials import as_partial_row, bucket_quantile
from lakepulse.api.series import (
    MAX_GROUPS,
    MAX_POINTS,
    MAX_WINDOWS,
    SeriesRequest,
    SeriesRequestError,
    TimeRange,
    merge_series,
    split_at_seam,
)
from lakepulse.catalog import get_catalog
from lakepulse.catalog.sketches import HLL_LG_CONFIG_K, THETA_LG_NOM_ENTRIES

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
T10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday in winter: Berlin is +01:00
PREP_BOUNDS = get_catalog().metric("prep_time_seconds").buckets


def at(text: str) -> datetime:
    """An aware datetime from RFC 3339 text."""
    return datetime.fromisoformat(text)


def row(
    metric: str,
    start: datetime,
    *,
    count: int = 1,
    dims: dict[str, str] | None = None,
    tenant: str = "t1",
    length: timedelta = MINUTE,
    updated_at: datetime | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """A partial row as a client returns it (columns not given are null)."""
    dims = dims or {}
    return {
        "tenant_id": tenant,
        "metric": metric,
        "dims_key": "|".join(f"{k}={v}" for k, v in sorted(dims.items())),
        "dims": dims,
        "window_start": start,
        "window_end": start + length,
        "count": count,
        "sum": columns.get("sum"),
        "min": columns.get("min"),
        "max": columns.get("max"),
        "hll_sketch": columns.get("hll_sketch"),
        "theta_sketch": columns.get("theta_sketch"),
        "buckets": columns.get("buckets"),
        "updated_at": updated_at or start + length + timedelta(seconds=5),
    }


def minutes(metric: str, start: datetime, n: int, **kwargs: Any) -> list[dict[str, Any]]:
    """`n` consecutive minute rows from `start`, each with the same columns."""
    return [row(metric, start + i * MINUTE, **kwargs) for i in range(n)]


def request(metric: str, start: datetime, end: datetime, granularity: str = "1h", **kwargs: Any) -> SeriesRequest:
    return SeriesRequest(metric=metric, start=start, end=end, granularity=granularity, **kwargs)


def series(
    req: SeriesRequest,
    batch: Iterable[dict[str, Any]] = (),
    speed: Iterable[dict[str, Any]] = (),
    seam: datetime | None = None,
) -> dict[str, Any]:
    """The JSON the API would send (checked to be strict JSON: no NaN, no Decimal)."""
    out = merge_series(req, "t1", seam, batch, speed).to_dict()
    json.dumps(out, allow_nan=False)
    return out


def spans(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w["start"], w["end"]) for w in out["windows"]]


def counts(out: dict[str, Any]) -> list[int]:
    return [w["count"] for w in out["windows"]]


def users(lo: int, hi: int) -> list[str]:
    return [f"user-{i}" for i in range(lo, hi)]


def hll_bytes(ids: Iterable[str], compact: bool = False) -> bytes:
    """An HLL sketch as Spark's hll_sketch_agg writes one (lgConfigK of the catalog, HLL_4)."""
    sketch = hll_sketch(HLL_LG_CONFIG_K, tgt_hll_type.HLL_4)
    for i in ids:
        sketch.update(i)
    return bytes(sketch.serialize_compact() if compact else sketch.serialize_updatable())


def theta_bytes(ids: Iterable[str]) -> bytes:
    """A compact Theta sketch as Spark's theta_sketch_agg writes one."""
    sketch = update_theta_sketch(THETA_LG_NOM_ENTRIES)
    for i in ids:
        sketch.update(i)
    return bytes(sketch.compact().serialize())


# --- values by metric kind ---------------------------------------------------------------------------------


def test_count_adds_the_minutes_of_a_window() -> None:
    out = series(request("orders_placed", T10, T10 + 2 * HOUR), speed=minutes("orders_placed", T10, 90, count=2))
    assert counts(out) == [120, 60]
    assert [w["value"] for w in out["windows"]] == [120, 60]
    assert all(type(w["value"]) is int and w["sum"] is None for w in out["windows"])


def test_sum_adds_sums_and_average_divides() -> None:
    sales = [row("gross_sales", T10, count=2, sum=30.5), row("gross_sales", T10 + MINUTE, count=1, sum=Decimal("9.5"))]
    out = series(request("gross_sales", T10, T10 + HOUR), speed=sales)
    assert (out["windows"][0]["value"], out["windows"][0]["sum"], out["windows"][0]["count"]) == (40.0, 40.0, 3)
    assert type(out["windows"][0]["value"]) is float  # the Decimal became a JSON number
    ratings = [row("food_rating", T10, count=3, sum=12.0), row("food_rating", T10 + 5 * MINUTE, count=1, sum=5.0)]
    out = series(request("food_rating", T10, T10 + 2 * HOUR), speed=ratings)
    assert [(w["value"], w["count"], w["sum"]) for w in out["windows"]] == [(17.0 / 4, 4, 17.0), (None, 0, 0.0)]


def test_distinct_unions_sketches_of_overlapping_minutes_within_two_percent() -> None:
    # 20,000 users in each of two minutes, 10,000 of them in both: 30,000 distinct, not 40,000.
    rows = [
        row("active_users", T10, count=20_000, hll_sketch=hll_bytes(users(0, 20_000))),
        row("active_users", T10 + MINUTE, count=20_000, hll_sketch=hll_bytes(users(10_000, 30_000), compact=True)),
    ]
    out = series(request("active_users", T10, T10 + HOUR), speed=rows)
    value = out["windows"][0]["value"]
    assert type(value) is int and abs(value - 30_000) <= 0.02 * 30_000
    assert out["windows"][0]["count"] == 40_000 and out["windows"][0]["sum"] is None
    at_1m = series(request("active_users", T10, T10 + 2 * MINUTE, "1m"), speed=rows)
    assert [abs(w["value"] - 20_000) <= 0.02 * 20_000 for w in at_1m["windows"]] == [True, True]


def test_distinct_falls_back_to_theta_when_rows_carry_only_theta() -> None:
    rows = [
        row("active_users", T10, count=5, theta_sketch=theta_bytes(users(0, 3_000))),
        row("active_users", T10 + MINUTE, count=5, theta_sketch=theta_bytes(users(1_000, 4_000))),
    ]
    # 4,000 distinct users < 4,096 nominal entries: Theta is still exact.
    assert series(request("active_users", T10, T10 + HOUR), speed=rows)["windows"][0]["value"] == 4_000


def test_a_union_of_minute_theta_sketches_is_exact_up_to_16384_users() -> None:
    # 240 minutes of 60 users each, 12,000 distinct in all: more than the writers' 4,096 nominal entries, fewer
    # than the API union's 16,384, so the answer is the exact count (at lgNom 12 it was ~1 % off).
    rows = [row("active_users", T10 + m * MINUTE, count=60, theta_sketch=theta_bytes(users(m * 50, m * 50 + 60)))
            for m in range(240)]
    out = series(request("active_users", T10, T10 + 4 * HOUR, "1d"), speed=rows)
    assert [w["value"] for w in out["windows"]] == [12_010]


def test_distinct_rows_without_a_common_sketch_family_are_refused() -> None:
    # A query that forgot the sketch columns must not turn into a silent 0 (or a lower bound).
    req = request("active_users", T10, T10 + HOUR)
    with pytest.raises(ValueError, match="needs an hll_sketch"):
        merge_series(req, "t1", None, [], [row("active_users", T10, count=3)])
    mixed = [
        row("active_users", T10, count=1, hll_sketch=hll_bytes(users(0, 1))),
        row("active_users", T10 + MINUTE, count=1, theta_sketch=theta_bytes(users(1, 2))),
    ]
    with pytest.raises(ValueError, match="needs an hll_sketch"):
        merge_series(req, "t1", None, [], mixed)


def test_distribution_merges_buckets_and_interpolates_quantiles() -> None:
    a = [0, 2, 3] + [0] * 10  # two values in (60, 120], three in (120, 180]
    b = [0, 0, 1, 4] + [0] * 8 + [1]  # one in (120, 180], four in (180, 240], one above 3600
    rows = [
        row("prep_time_seconds", T10, count=5, sum=700.0, min=70.0, max=170.0, buckets=a),
        row("prep_time_seconds", T10 + MINUTE, count=6, sum=4950.0, min=150.0, max=4000.0, buckets=json.dumps(b)),
    ]
    w = series(request("prep_time_seconds", T10, T10 + HOUR), speed=rows)["windows"][0]
    assert (w["count"], w["sum"], w["min"], w["max"]) == (11, 5650.0, 70.0, 4000.0)
    assert w["value"] == pytest.approx(5650.0 / 11)
    # Merged counters [0, 2, 4, 4, 0 … 0, 1], N = 11. p50: rank 5.5 falls in (120, 180] after 2 values:
    # 120 + 60 · 3.5/4. p90: rank 9.9 in (180, 240] after 6: 180 + 60 · 3.9/4. p99: rank 10.89 in the
    # overflow bucket after 10, which runs from 3600 to the max 4000: 3600 + 400 · 0.89.
    assert w["quantiles"] == {"p50": 172.5, "p90": 238.5, "p99": pytest.approx(3956.0)}


def test_bucket_quantile_against_hand_computation() -> None:
    counts_, bounds = [2, 4, 3, 1], [60.0, 120.0, 180.0]  # N = 10; the last counter is the overflow
    # rank 1 in the lowest bucket, which starts at the min 30: 30 + 30 · 1/2
    assert bucket_quantile(counts_, bounds, 0.1, 30.0, 400.0) == 45.0
    assert bucket_quantile(counts_, bounds, 0.5, 30.0, 400.0) == 105.0  # 60 + 60 · (5 - 2)/4
    assert bucket_quantile(counts_, bounds, 0.9, 30.0, 400.0) == 180.0  # rank 9 = the top of (120, 180]
    assert bucket_quantile(counts_, bounds, 0.99, 30.0, 400.0) == pytest.approx(378.0)  # 180 + 220 · 0.9
    # Without min/max the open ends collapse onto the nearest bound.
    assert bucket_quantile(counts_, bounds, 0.1, None, None) == 60.0
    assert bucket_quantile(counts_, bounds, 0.99, None, None) == 180.0
    assert bucket_quantile([0, 0, 0, 0], bounds, 0.5, None, None) is None
    # A single value: every quantile is that value (clamped to [min, max]).
    assert bucket_quantile([0, 1, 0, 0], bounds, 0.5, 90.0, 90.0) == 90.0


def test_empty_windows_are_present_with_zero_counts() -> None:
    out = series(request("prep_time_seconds", T10, T10 + 2 * HOUR))
    assert [(w["value"], w["count"], w["sum"]) for w in out["windows"]] == [(None, 0, 0.0), (None, 0, 0.0)]
    assert out["windows"][0]["quantiles"] == {"p50": None, "p90": None, "p99": None}
    assert [w["value"] for w in series(request("active_users", T10, T10 + HOUR))["windows"]] == [0]


# --- windows in a timezone -----------------------------------------------------------------------------


def test_windows_in_utc_widen_the_range_to_whole_windows() -> None:
    out = series(request("events", T10 + 15 * MINUTE, T10 + 2 * HOUR, timezone="UTC"))
    assert spans(out) == [
        ("2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+00:00"),
        ("2026-03-02T11:00:00+00:00", "2026-03-02T12:00:00+00:00"),
    ]
    assert (out["start"], out["end"]) == ("2026-03-02T10:00:00+00:00", "2026-03-02T12:00:00+00:00")
    out = series(request("events", T10, T10 + 24 * HOUR, "1d"))
    assert spans(out) == [
        ("2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00"),
        ("2026-03-03T00:00:00+00:00", "2026-03-04T00:00:00+00:00"),
    ]


def test_windows_in_berlin_for_1h_and_1d() -> None:
    req = request("events", T10, T10 + 2 * HOUR, timezone="Europe/Berlin")
    assert spans(series(req)) == [
        ("2026-03-02T11:00:00+01:00", "2026-03-02T12:00:00+01:00"),
        ("2026-03-02T12:00:00+01:00", "2026-03-02T13:00:00+01:00"),
    ]
    # Local midnight is 23:00 UTC: 22:59 UTC is still Monday in Berlin, 23:00 UTC is Tuesday.
    rows = [row("events", at("2026-03-02T22:59:00Z"), count=1), row("events", at("2026-03-02T23:00:00Z"), count=2)]
    out = series(request("events", T10, T10 + 24 * HOUR, "1d", timezone="Europe/Berlin"), speed=rows)
    assert spans(out) == [
        ("2026-03-02T00:00:00+01:00", "2026-03-03T00:00:00+01:00"),
        ("2026-03-03T00:00:00+01:00", "2026-03-04T00:00:00+01:00"),
    ]
    assert counts(out) == [1, 2]


def test_windows_in_kolkata_start_at_half_past_the_utc_hour() -> None:
    rows = [row("events", at("2026-03-02T10:29:00Z"), count=1), row("events", at("2026-03-02T10:30:00Z"), count=2)]
    out = series(request("events", T10, T10 + HOUR, timezone="Asia/Kolkata"), speed=rows)
    assert spans(out) == [
        ("2026-03-02T15:00:00+05:30", "2026-03-02T16:00:00+05:30"),
        ("2026-03-02T16:00:00+05:30", "2026-03-02T17:00:00+05:30"),
    ]
    assert counts(out) == [1, 2]
    rows = [row("events", at("2026-03-02T18:29:00Z"), count=1), row("events", at("2026-03-02T18:30:00Z"), count=2)]
    out = series(request("events", T10, T10 + 12 * HOUR, "1d", timezone="Asia/Kolkata"), speed=rows)
    assert spans(out) == [
        ("2026-03-02T00:00:00+05:30", "2026-03-03T00:00:00+05:30"),
        ("2026-03-03T00:00:00+05:30", "2026-03-04T00:00:00+05:30"),
    ]
    assert counts(out) == [1, 2]


def test_dst_days_in_berlin_are_one_1d_window_of_23_and_25_hours() -> None:
    # 2026-03-29: clocks jump 02:00 → 03:00; the local day is 23:00Z on the 28th to 22:00Z on the 29th.
    first, last, after = at("2026-03-28T23:00:00Z"), at("2026-03-29T21:59:00Z"), at("2026-03-29T22:00:00Z")
    rows = [row("events", t, count=c) for t, c in ((first, 1), (last, 2), (after, 4))]
    out = series(request("events", first, after + MINUTE, "1d", timezone="Europe/Berlin"), speed=rows)
    assert spans(out) == [
        ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
        ("2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00"),
    ]
    assert counts(out) == [3, 4]
    # 23 one-hour windows that day, one per UTC hour (there is no local 02:00).
    hours = series(request("events", first, after, "1h", timezone="Europe/Berlin"))
    assert len(hours["windows"]) == 23 and "2026-03-29T02:00:00+01:00" not in [s for s, _ in spans(hours)]
    # 2026-10-25: 03:00 → 02:00; the day has 25 hours and the repeated 02:00 hour is two windows.
    fall_day = (at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"))
    day = series(request("events", *fall_day, "1d", timezone="Europe/Berlin"))
    assert spans(day) == [("2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00")]
    hours = series(request("events", *fall_day, timezone="Europe/Berlin"))
    assert len(hours["windows"]) == 25
    # A range starting after the change still widens to the local midnight before it.
    for day_start, noon in (("2026-03-29T00:00:00+01:00", "2026-03-29T12:00:00Z"),
                            ("2026-10-25T00:00:00+02:00", "2026-10-25T12:00:00Z")):
        out = series(request("events", at(noon), at(noon) + HOUR, "1d", timezone="Europe/Berlin"))
        assert spans(out)[0][0] == day_start
    assert [s for s, _ in spans(hours)][2:4] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


def test_days_that_skip_midnight_and_half_hour_dst_shifts() -> None:
    # America/Santiago springs forward at midnight: 2025-09-07 starts at 01:00 and has 23 hours.
    out = series(request("events", at("2025-09-06T12:00:00Z"), at("2025-09-08T12:00:00Z"), "1d",
                         timezone="America/Santiago"))
    assert [s for s, _ in spans(out)] == [
        "2025-09-06T00:00:00-04:00", "2025-09-07T01:00:00-03:00", "2025-09-08T00:00:00-03:00",
    ]
    # Australia/Lord_Howe falls back by 30 minutes at 02:00: local 01:00 (+11) is one hour, then the
    # repeated half hour 01:30-02:00 (+10:30) is a window of its own, then whole hours again.
    out = series(request("events", at("2025-04-05T13:00:00Z"), at("2025-04-05T16:30:00Z"),
                         timezone="Australia/Lord_Howe"))
    assert spans(out) == [
        ("2025-04-06T00:00:00+11:00", "2025-04-06T01:00:00+11:00"),
        ("2025-04-06T01:00:00+11:00", "2025-04-06T01:30:00+10:30"),
        ("2025-04-06T01:30:00+10:30", "2025-04-06T02:00:00+10:30"),
        ("2025-04-06T02:00:00+10:30", "2025-04-06T03:00:00+10:30"),
    ]


# --- the seam ------------------------------------------------------------------------------------------


def test_seam_split() -> None:
    span = TimeRange(T10, T10 + 2 * HOUR)
    nothing_behind = split_at_seam(span, None)
    assert (nothing_behind.batch, nothing_behind.speed) == (None, span)
    inside = split_at_seam(span, T10 + 30 * MINUTE)
    assert inside.batch == TimeRange(T10, T10 + 30 * MINUTE)
    assert inside.speed == TimeRange(T10 + 30 * MINUTE, T10 + 2 * HOUR)
    before = split_at_seam(span, T10 - HOUR)
    assert (before.batch, before.speed) == (None, span)
    after = split_at_seam(span, T10 + 5 * HOUR)
    assert (after.batch, after.speed) == (span, None)
    assert split_at_seam(span, T10).batch is None and split_at_seam(span, span.end).speed is None
    with pytest.raises(ValueError, match="timezone-aware"):
        split_at_seam(span, datetime(2026, 3, 2, 10))


def test_each_minute_counted_once_across_the_seam_with_layer_and_final() -> None:
    seam = T10 + 30 * MINUTE
    req = request("orders_placed", T10 - HOUR, T10 + 2 * HOUR)
    batch = minutes("orders_placed", T10 - HOUR, 90, count=1)  # 09:00 … 10:29
    speed = minutes("orders_placed", seam, 90, count=1)  # 10:30 … 11:59
    # Overlap a query bound might let through: batch minutes at/after T and speed minutes before T. Each
    # carries a different count, so counting any of them would show.
    batch += [row("orders_placed", seam + MINUTE, count=100), row("orders_placed", seam, count=100)]
    speed += [row("orders_placed", seam - MINUTE, count=1000), row("orders_placed", T10, count=1000)]
    out = series(req, batch=batch, speed=speed, seam=seam)
    assert [(w["count"], w["layer"], w["final"]) for w in out["windows"]] == [
        (60, "batch", True),
        (60, "mixed", False),
        (60, "speed", False),
    ]
    assert out["seam"] == "2026-03-02T10:30:00+00:00"
    assert out["freshness"] == (T10 + 2 * HOUR + timedelta(seconds=5)).isoformat()  # newest speed row
    # Seam at a window edge: that window is wholly batch, and final.
    out = series(req, batch=minutes("orders_placed", T10 - HOUR, 120), speed=speed, seam=T10 + HOUR)
    assert [(w["layer"], w["final"]) for w in out["windows"]] == [("batch", True), ("batch", True), ("speed", False)]
    assert counts(out) == [60, 60, 60]  # the speed rows 10:00 … 10:59 are behind the seam now
    # No seam yet: everything is the speed layer's, nothing is final, batch rows are ignored.
    out = series(req, batch=batch, speed=speed, seam=None)
    assert [(w["layer"], w["final"]) for w in out["windows"]] == [("speed", False)] * 3
    assert counts(out) == [0, 1000 + 1000 + 30, 60]  # 10:00 and 10:29 (1000 each), 10:30 … 10:59


def test_the_newest_version_of_a_minute_row_wins() -> None:
    old = row("orders_placed", T10, count=3, updated_at=T10 + timedelta(seconds=10))
    new = row("orders_placed", T10, count=5, updated_at=T10 + timedelta(seconds=20))
    assert counts(series(request("orders_placed", T10, T10 + HOUR), speed=[new, old])) == [5]
    assert counts(series(request("orders_placed", T10, T10 + HOUR), speed=[old, new])) == [5]


def test_rows_of_another_tenant_or_metric_are_refused() -> None:
    req = request("orders_placed", T10, T10 + HOUR)
    with pytest.raises(ValueError, match="another tenant or metric"):
        merge_series(req, "t1", None, [], [row("orders_placed", T10, tenant="t2")])
    with pytest.raises(ValueError, match="another tenant or metric"):
        merge_series(req, "t1", None, [], [row("events", T10)])


def test_a_row_spanning_two_windows_is_refused_and_whole_hours_fit_days() -> None:
    with pytest.raises(ValueError, match="spans two windows"):
        straddling = row("events", T10 + 30 * MINUTE, length=HOUR)
        merge_series(request("events", T10, T10 + 2 * HOUR), "t1", None, [], [straddling])
    hour_rows = [row("events", T10 + i * HOUR, count=1, length=HOUR) for i in range(3)]
    assert counts(series(request("events", T10, T10 + HOUR, "1d"), speed=hour_rows)) == [3]


def test_rows_from_pinot_and_trino_read_the_same() -> None:
    sketch = hll_bytes(users(0, 10))
    trino = row("prep_time_seconds", T10, count=2, sum=Decimal("10.5"), buckets=[1, 1] + [0] * 11, hll_sketch=sketch)
    trino |= {"window_start": T10.replace(tzinfo=None), "window_end": (T10 + MINUTE).replace(tzinfo=None)}
    millis = int(T10.timestamp() * 1000)
    pinot = trino | {
        "dims": "{}",
        "window_start": millis,
        "window_end": millis + 60_000,
        "updated_at": "2026-03-02 10:01:05.0",
        "sum": 10.5,
        "buckets": json.dumps([1, 1] + [0] * 11),
        "hll_sketch": sketch.hex(),
    }
    assert as_partial_row(trino) == as_partial_row(pinot)
    assert as_partial_row(pinot).window_start == T10 and as_partial_row(pinot).hll_sketch == sketch


# --- filters, group_by, caps ---------------------------------------------------------------------------

EVENT_ROWS = [
    row("events", T10, count=5, dims={"event_type": "page_view", "country": "DE", "device": "ios"}),
    row("events", T10, count=3, dims={"event_type": "page_view", "country": "DE", "device": "android"}),
    row("events", T10 + MINUTE, count=2, dims={"event_type": "order_placed", "country": "DE", "device": "ios"}),
    row("events", T10 + MINUTE, count=7, dims={"event_type": "page_view", "country": "FR", "device": "ios"}),
]


def test_filters_and_group_by() -> None:
    out = series(request("events", T10, T10 + HOUR, filters={"country": "DE"}, group_by=["device"]), speed=EVENT_ROWS)
    assert [(w["group"], w["count"]) for w in out["windows"]] == [({"device": "ios"}, 7), ({"device": "android"}, 3)]
    out = series(request("events", T10, T10 + HOUR, group_by=("country", "device")), speed=EVENT_ROWS)
    assert [(w["group"], w["count"]) for w in out["windows"]] == [
        ({"country": "DE", "device": "ios"}, 7),
        ({"country": "FR", "device": "ios"}, 7),
        ({"country": "DE", "device": "android"}, 3),
    ]
    assert out["truncated"] is False
    nothing = request("events", T10, T10 + HOUR, filters={"country": "IT"})
    assert [(w["group"], w["count"]) for w in series(nothing, speed=EVENT_ROWS)["windows"]] == [({}, 0)]


def test_groups_beyond_max_groups_are_truncated_largest_kept() -> None:
    rows = [row("events", T10, count=n, dims={"country": f"c{n:02d}"}) for n in range(1, 13)]
    out = series(request("events", T10, T10 + HOUR, group_by=["country"], max_groups=10), speed=rows)
    assert out["truncated"] is True
    assert [w["count"] for w in out["windows"]] == list(range(12, 2, -1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "nope"}, "unknown metric 'nope'"),
        ({"granularity": "2h"}, "granularity must be one of 1m, 5m, 15m, 1h, 1d"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"timezone": "../../etc/passwd"}, "unknown timezone"),
        ({"start": datetime(2026, 3, 2, 10)}, "start must be a time with a UTC offset"),
        ({"end": T10}, "start must be before end"),
        ({"start": datetime(1969, 12, 31, tzinfo=UTC)}, "start must lie between"),
        ({"filters": {"tenant_id": "t2"}}, "unknown filter dimension 'tenant_id' for events"),
        ({"filters": {"country": "x" * 201}}, "at most 200 characters"),
        ({"filters": {"country": 1}}, "filter country must be a string"),
        ({"metric": "orders_completed", "filters": {"country": "DE"}}, "its dimensions: none"),
        ({"group_by": ["user_id"]}, "unknown group_by dimension 'user_id'"),
        ({"group_by": ["country", "device", "event_type"]}, "at most 2 different dimensions"),
        ({"group_by": ["country", "country"]}, "at most 2 different dimensions"),
        ({"group_by": "country"}, "group_by must be a list"),
        ({"max_groups": MAX_GROUPS + 1}, f"max_groups must be an integer from 1 to {MAX_GROUPS}"),
        ({"max_groups": 0}, "max_groups must be an integer"),
        ({"granularity": "1m", "end": T10 + timedelta(days=7, minutes=1)}, f"more than {MAX_WINDOWS} windows of 1m"),
        ({"granularity": "1h", "end": T10 + timedelta(days=500)}, f"more than {MAX_WINDOWS} windows of 1h"),
        (
            {"granularity": "1m", "end": T10 + timedelta(days=7), "group_by": ["country"], "max_groups": 20},
            f"more than {MAX_POINTS} points",
        ),
    ],
)
def test_invalid_requests_raise_series_request_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"metric": "events", "start": T10, "end": T10 + HOUR, "granularity": "1h"} | kwargs
    with pytest.raises(SeriesRequestError, match=message) as refused:
        SeriesRequest(**args)
    assert refused.value.status_code == 400


def test_caps_allow_the_limit_and_refuse_absurd_input_fast() -> None:
    assert len(SeriesRequest("events", T10, T10 + timedelta(days=7), "1m").bounds) == MAX_WINDOWS + 1
    began = time.perf_counter()
    with pytest.raises(SeriesRequestError, match="windows"):
        SeriesRequest("events", datetime(1971, 1, 1, tzinfo=UTC), datetime(8999, 1, 1, tzinfo=UTC), "1m")
    assert time.perf_counter() - began < 0.5  # refused from the estimate, not by walking 4·10⁹ minutes
    with pytest.raises(SeriesRequestError) as refused:
        SeriesRequest("x" * 10_000, T10, T10 + HOUR, "1h")
    assert len(str(refused.value)) < 400  # the 10 kB name is not echoed back


def test_numbers_are_json_numbers() -> None:
    rows = [
        row("gross_sales", T10, count=1, sum=Decimal("1.25")),
        row("gross_sales", T10, count=1, sum=math.nan, dims={"channel": "app"}),
    ]
    out = series(request("gross_sales", T10, T10 + HOUR, group_by=["channel"]), speed=rows)
    assert [w["value"] for w in out["windows"]] == [1.25, None]  # NaN has no JSON spelling: null


# --- Spark's sketch bytes --------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_sketch_bytes_are_read_and_merged_by_datasketches(spark) -> None:
    """hll_sketch_agg / theta_sketch_agg minute rows and hll_union_agg / theta_union_agg hour rows from Spark:
    datasketches reads every one with Spark's own estimate, and the API's merge matches Spark's rollup."""
    import pyspark.sql.functions as F

    from lakepulse.aggregations import with_dims_projected, with_metric_value, with_minute_partials, with_rollup

    ids = F.col("id")
    # Minute 10:00: user-0 … user-19999; minute 10:01: user-10000 … user-29999 (30,000 distinct users).
    events_df = spark.range(0, 40_000).select(
        F.lit("t1").alias("tenant_id"),
        F.lit("page_view").alias("event_type"),
        (F.lit(T10).cast("timestamp") + F.make_dt_interval(secs=F.when(ids < 20_000, 0).otherwise(60))).alias(
            "occurred_at"
        ),
        F.struct(
            F.concat(F.lit("user-"), F.when(ids < 20_000, ids).otherwise(ids - 10_000).cast("string")).alias(
                "user_id"
            ),
            F.when(ids % 2 == 0, "DE").otherwise("FR").alias("country"),
            F.lit("ios").alias("device"),
        ).alias("properties"),
    )
    minutes_df = with_minute_partials(events_df, metrics=["active_users"])
    hours_df = with_rollup(minutes_df, "hour")
    times = ("window_start", "window_end", "updated_at")

    def collected(df):
        df = df.select(
            *[F.unix_millis(c).alias(c) if c in times else c for c in df.columns],
            F.hll_sketch_estimate("hll_sketch").alias("spark_hll"),
            F.theta_sketch_estimate("theta_sketch").alias("spark_theta"),
        )
        return [r.asDict() for r in df.collect()]

    minute_rows, hour_rows = collected(minutes_df), collected(hours_df)
    assert len(minute_rows) == 4 and len(hour_rows) == 2  # 2 minutes × 2 countries; 1 hour × 2 countries
    for r in minute_rows + hour_rows:
        assert abs(hll_sketch.deserialize(bytes(r["hll_sketch"])).get_estimate() - r["spark_hll"]) <= 1
        theta = compact_theta_sketch.deserialize(bytes(r["theta_sketch"]))
        assert abs(theta.get_estimate() - r["spark_theta"]) <= 1
    spark_total = with_metric_value(with_dims_projected(hours_df)).collect()[0]["value"]
    req = request("active_users", T10, T10 + HOUR)
    from_minutes = series(req, speed=minute_rows)["windows"][0]["value"]
    from_hours = series(req, speed=hour_rows)["windows"][0]["value"]
    # Both estimate the same 30,000 users. They need not agree to the user: these minute sketches are already
    # estimates (10,000 users each > the writers' 4,096 entries), and the API's larger union (16,384) keeps more
    # of their entries than Spark's hour rollup at 4,096 did.
    assert abs(from_minutes - from_hours) <= 0.02 * 30_000 and abs(from_hours - 30_000) <= 0.02 * 30_000
    # The API unions Theta when every row has it; with HLL alone it matches Spark's own HLL rollup.
    assert abs(from_minutes - 30_000) <= 0.02 * 30_000
    hll_only = [r | {"theta_sketch": None} for r in minute_rows]
    assert abs(series(req, speed=hll_only)["windows"][0]["value"] - spark_total) <= 0.005 * 30_000
