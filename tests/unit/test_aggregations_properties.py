"""Properties: rolled-up minute rows equal a direct recount of events; sketches stay within bound."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pyspark.sql.functions as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakepulse.aggregations import (
    HLL_LG_CONFIG_K,
    filter_valid_events,
    with_dims_projected,
    with_last_n_minutes,
    with_metric_value,
    with_minute_partials,
    with_parsed_events,
    with_rollup,
)

pytestmark = pytest.mark.spark

BASE = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)  # 3 h span crosses midnight: hour and day both roll
METRICS = ["orders_placed", "gross_sales", "items_sold", "active_users"]

order_strategy = st.fixed_dictionaries(
    {
        "tenant": st.sampled_from(["t1", "t2"]),
        "second": st.integers(min_value=0, max_value=3 * 3600 - 1),
        "user": st.integers(min_value=0, max_value=12),
        # Quarter units keep every sum exact in floating point, whatever the addition order.
        "amount_q": st.integers(min_value=0, max_value=400),
        "channel": st.sampled_from(["app", "web"]),
        "quantities": st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=3),
    }
)


def to_event(i: int, o: dict) -> dict:
    at = BASE + timedelta(seconds=o["second"])
    return {
        "event_id": f"e{i}",
        "tenant_id": o["tenant"],
        "event_type": "order_placed",
        "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "prop",
        "properties": {
            "order_id": f"o{i}",
            "user_id": f"u{o['user']}",
            "amount": o["amount_q"] / 4,
            "currency": "EUR",
            "channel": o["channel"],
            "country": "DE",
            "device": "ios",
            "items": [
                {"item_id": f"i{j % 2}", "name": "x", "category": "food", "quantity": q, "unit_price": 1.0}
                for j, q in enumerate(o["quantities"])
            ],
        },
    }


def recount(orders: list[dict], bucket) -> dict[tuple, tuple]:
    """Independent Python recount per (tenant, metric, dims_key, bucket) → (count, sum or distinct)."""
    counts: dict[tuple, int] = defaultdict(int)
    sums: dict[tuple, float] = defaultdict(float)
    users: dict[tuple, set] = defaultdict(set)
    for o in orders:
        b = bucket(BASE + timedelta(seconds=o["second"]))
        t = o["tenant"]
        counts[(t, "orders_placed", f"channel={o['channel']}|country=DE|device=ios", b)] += 1
        k = (t, "gross_sales", f"channel={o['channel']}|country=DE", b)
        counts[k] += 1
        sums[k] += o["amount_q"] / 4
        for j, q in enumerate(o["quantities"]):
            k = (t, "items_sold", f"category=food|item_id=i{j % 2}", b)
            counts[k] += 1
            sums[k] += q
        users[(t, "active_users", "country=DE|device=ios", b)].add(o["user"])
    out: dict[tuple, tuple] = {}
    for k, c in counts.items():
        out[k] = (c, sums[k] if k[1] != "orders_placed" else None)
    for k, u in users.items():
        rows = sum(
            1 for o in orders if (o["tenant"], bucket(BASE + timedelta(seconds=o["second"]))) == (k[0], k[3])
        )
        out[k] = (rows, float(len(u)))
    return out


def hour_of(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def day_of(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(order_strategy, min_size=1, max_size=25), last_n=st.integers(min_value=1, max_value=180)
)
def test_rollups_equal_direct_aggregation(spark, orders: list[dict], last_n: int) -> None:
    raw_df = spark.createDataFrame(
        [(json.dumps(to_event(i, o)),) for i, o in enumerate(orders)], "value string"
    )
    minutes_df = with_minute_partials(
        filter_valid_events(with_parsed_events(raw_df)), metrics=METRICS
    ).cache()
    try:
        for granularity, bucket in (("hour", hour_of), ("day", day_of)):
            rolled = with_metric_value(with_rollup(minutes_df, granularity)).collect()
            actual = {
                (r["tenant_id"], r["metric"], r["dims_key"], r["window_start"]): (
                    r["count"],
                    r["value"] if r["metric"] == "active_users" else r["sum"],
                )
                for r in rolled
            }
            assert actual == recount(orders, bucket), granularity
        end = BASE + timedelta(hours=3)
        window = with_metric_value(with_last_n_minutes(minutes_df, end, last_n)).collect()
        in_range = [o for o in orders if o["second"] >= 3 * 3600 - last_n * 60]
        expected = recount(in_range, lambda _ts: (end - timedelta(minutes=last_n)).replace(tzinfo=None))
        actual = {
            (r["tenant_id"], r["metric"], r["dims_key"], r["window_start"]): (
                r["count"],
                r["value"] if r["metric"] == "active_users" else r["sum"],
            )
            for r in window
        }
        assert actual == expected
    finally:
        minutes_df.unpersist()


def test_distinct_estimate_within_sketch_error_bound(spark) -> None:
    """100k users over 100 minutes (half of each minute's users repeat): union estimate within 3 RSE."""
    users_df = spark.range(0, 200_000).select(
        F.lit("t1").alias("tenant_id"),
        F.lit("page_view").alias("event_type"),
        (F.lit(BASE).cast("timestamp") + F.make_dt_interval(secs=(F.col("id") % 6000).cast("int"))).alias(
            "occurred_at"
        ),
        F.struct(
            (F.col("id") % 100_000).cast("string").alias("user_id"),
            F.lit("DE").alias("country"),
            F.lit("ios").alias("device"),
        ).alias("properties"),
    )
    minutes_df = with_minute_partials(users_df, metrics=["active_users"])
    assert minutes_df.count() == 100
    total = with_metric_value(with_dims_projected(with_rollup(minutes_df, "day"))).collect()
    assert len(total) == 1
    rse = 1.04 / math.sqrt(2**HLL_LG_CONFIG_K)
    assert abs(total[0]["value"] - 100_000) <= 3 * rse * 100_000
    assert total[0]["count"] == 200_000
    theta = (
        with_rollup(minutes_df, "day").select(F.theta_sketch_estimate("theta_sketch").alias("e")).collect()
    )
    assert abs(theta[0]["e"] - 100_000) <= 3 * rse * 100_000
