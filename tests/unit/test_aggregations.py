"""The aggregation library on hand-built events, against hand-computed minute rows (chispa)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyspark.sql.functions as F
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakepulse.aggregations import (
    PARTIAL_COLUMNS,
    PARTIAL_SCHEMA,
    explode_prep_time_events,
    quantile_from_buckets,
    with_courier_state,
    with_dims_projected,
    with_kafka_records,
    with_last_n_minutes,
    with_metric_value,
    with_minute_partials,
    with_normalized_events,
    with_order_state,
    with_rollup,
)
from lakepulse.catalog import get_catalog

pytestmark = pytest.mark.spark

FIXED_TS = datetime(2030, 1, 1, tzinfo=UTC)


def fixed_updated_at():
    """A constant updated_at, so rows are reproducible (needs the active session)."""
    return F.lit(FIXED_TS).cast("timestamp")


COMPARED_SCHEMA = StructType(
    [
        StructField("tenant_id", StringType()),
        StructField("metric", StringType()),
        StructField("dims_key", StringType()),
        StructField("dims", StringType()),
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("count", LongType()),
        StructField("sum", DoubleType()),
        StructField("min", DoubleType()),
        StructField("max", DoubleType()),
        StructField("buckets", ArrayType(LongType())),
    ]
)


def t(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2024, 5, 1, hh, mm, ss, tzinfo=UTC)


def iso(hh: int, mm: int, ss: int = 0) -> str:
    return t(hh, mm, ss).strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(event_type: str, at: str, tenant: str = "t1", **props) -> dict:
    return {
        "event_id": f"{event_type}-{at}-{json.dumps(props, sort_keys=True)}",
        "tenant_id": tenant,
        "event_type": event_type,
        "occurred_at": at,
        "received_at": at,
        "source": "test",
        "properties": props,
    }


def item(item_id: str, category: str, quantity: int) -> dict:
    return {
        "item_id": item_id,
        "name": item_id,
        "category": category,
        "quantity": quantity,
        "unit_price": 1.0,
    }


EVENTS = [
    ev(
        "order_placed",
        iso(12, 0, 10),
        order_id="o1",
        user_id="u1",
        amount=20.5,
        currency="EUR",
        channel="app",
        country="DE",
        device="ios",
        items=[item("i1", "pizza", 2), item("i2", "drinks", 1)],
    ),
    ev(
        "order_placed",
        iso(12, 0, 40),
        order_id="o2",
        user_id="u2",
        amount=10.0,
        currency="EUR",
        channel="app",
        country="DE",
        device="ios",
        items=[item("i1", "pizza", 3)],
    ),
    ev(
        "order_placed",
        iso(12, 1, 5),
        order_id="o3",
        user_id="u1",
        amount=7.25,
        currency="EUR",
        channel="web",
        country="FR",
        device="android",
        items=[item("i3", "pizza", 1)],
    ),
    ev(
        "order_placed",
        iso(12, 0, 20),
        tenant="t2",
        order_id="o9",
        user_id="u1",
        amount=99.0,
        currency="EUR",
        channel="app",
        country="DE",
        device="ios",
        items=[item("i1", "pizza", 1)],
    ),
    ev("order_status_changed", iso(12, 0, 50), order_id="o1", status="delivered"),
    ev("order_status_changed", iso(12, 1, 10), order_id="o2", status="cancelled"),
    ev("order_status_changed", iso(12, 1, 20), order_id="o3", status="delivered"),
    ev("rating_submitted", iso(12, 1, 30), order_id="o1", user_id="u1", food_rating=4, delivery_rating=5),
    ev("rating_submitted", iso(12, 1, 45), order_id="o2", user_id="u2", food_rating=3, delivery_rating=2),
    ev("app_error", iso(12, 0, 5), service="api", code="500"),
    ev("app_error", iso(12, 0, 6), service="api", code=500),  # a number: still the string "500"
    ev("app_error", iso(12, 0, 7), service="web", code="404"),
    ev("page_view", iso(12, 0, 30), user_id="u3", page="menu", country="DE", device="ios", category="pizza"),
]

# Prep time: o1 510 s (ready 12:09:30), o2 120 s (ready 12:04), o3 110 s with its ready event listed
# before its confirmed event, o4 never ready, o5 "ready" before "confirmed" (clock skew: not a prep).
PREP_EVENTS = [
    ev("order_status_changed", iso(12, 1, 0), order_id="o1", status="confirmed"),
    ev("order_status_changed", iso(12, 9, 30), order_id="o1", status="ready_for_pickup"),
    ev("order_status_changed", iso(12, 2, 0), order_id="o2", status="confirmed"),
    ev("order_status_changed", iso(12, 4, 0), order_id="o2", status="ready_for_pickup"),
    ev("order_status_changed", iso(12, 9, 50), order_id="o3", status="ready_for_pickup"),
    ev("order_status_changed", iso(12, 8, 0), order_id="o3", status="confirmed"),
    ev("order_status_changed", iso(12, 5, 0), order_id="o4", status="confirmed"),
    ev("order_status_changed", iso(12, 6, 0), order_id="o5", status="ready_for_pickup"),
    ev("order_status_changed", iso(12, 7, 0), order_id="o5", status="confirmed"),
]


def comparable(df: DataFrame) -> DataFrame:
    """The contract columns chispa can sort and compare (dims as canonical JSON; sketches checked apart)."""
    return df.select(
        "tenant_id",
        "metric",
        "dims_key",
        F.to_json("dims").alias("dims"),
        "window_start",
        "window_end",
        "count",
        "sum",
        "min",
        "max",
        "buckets",
    )


def expected(spark, rows: list[tuple]) -> DataFrame:
    full = [(*r, None) if len(r) == 10 else r for r in rows]
    return spark.createDataFrame(full, COMPARED_SCHEMA)


def minute(hh: int, mm: int) -> tuple[datetime, datetime]:
    return t(hh, mm), t(hh, mm + 1)


@pytest.fixture(scope="module")
def events_df(make_events):
    return make_events(EVENTS).cache()


def test_partials_have_the_row_contract(events_df) -> None:
    partials_df = with_minute_partials(events_df, updated_at=fixed_updated_at())
    assert tuple(partials_df.columns) == PARTIAL_COLUMNS
    assert [f.dataType for f in partials_df.schema.fields] == [f.dataType for f in PARTIAL_SCHEMA.fields]


def test_count_metrics(spark, events_df) -> None:
    names = ["orders_placed", "orders_completed", "orders_cancelled", "app_errors"]
    actual = with_minute_partials(events_df, metrics=names, updated_at=fixed_updated_at())
    m0, m1 = minute(12, 0), minute(12, 1)
    app_de = '{"channel":"app","country":"DE","device":"ios"}'
    rows = [
        ("t1", "orders_placed", "channel=app|country=DE|device=ios", app_de, *m0, 2, None, None, None),
        (
            "t1",
            "orders_placed",
            "channel=web|country=FR|device=android",
            '{"channel":"web","country":"FR","device":"android"}',
            *m1,
            1,
            None,
            None,
            None,
        ),
        ("t2", "orders_placed", "channel=app|country=DE|device=ios", app_de, *m0, 1, None, None, None),
        ("t1", "orders_completed", "", "{}", *m0, 1, None, None, None),
        ("t1", "orders_completed", "", "{}", *m1, 1, None, None, None),
        ("t1", "orders_cancelled", "", "{}", *m1, 1, None, None, None),
        (
            "t1",
            "app_errors",
            "code=500|service=api",
            '{"code":"500","service":"api"}',
            *m0,
            2,
            None,
            None,
            None,
        ),
        (
            "t1",
            "app_errors",
            "code=404|service=web",
            '{"code":"404","service":"web"}',
            *m0,
            1,
            None,
            None,
            None,
        ),
    ]
    assert_df_equality(comparable(actual), expected(spark, rows), ignore_row_order=True, ignore_nullable=True)
    sketches = actual.filter(F.col("hll_sketch").isNotNull() | F.col("theta_sketch").isNotNull()).count()
    assert sketches == 0


def test_events_counts_every_event_type(events_df) -> None:
    actual = with_minute_partials(events_df, metrics=["events"], updated_at=fixed_updated_at())
    by_type = {
        r["event_type"]: r["n"]
        for r in actual.groupBy(F.col("dims")["event_type"].alias("event_type"))
        .agg(F.sum("count").alias("n"))
        .collect()
    }
    assert by_type == {
        "order_placed": 4,
        "order_status_changed": 3,
        "rating_submitted": 2,
        "app_error": 3,
        "page_view": 1,
    }


def test_sum_metrics(spark, events_df) -> None:
    actual = with_minute_partials(
        events_df, metrics=["gross_sales", "items_sold"], updated_at=fixed_updated_at()
    )
    m0, m1 = minute(12, 0), minute(12, 1)
    rows = [
        (
            "t1",
            "gross_sales",
            "channel=app|country=DE",
            '{"channel":"app","country":"DE"}',
            *m0,
            2,
            30.5,
            10.0,
            20.5,
        ),
        (
            "t1",
            "gross_sales",
            "channel=web|country=FR",
            '{"channel":"web","country":"FR"}',
            *m1,
            1,
            7.25,
            7.25,
            7.25,
        ),
        (
            "t2",
            "gross_sales",
            "channel=app|country=DE",
            '{"channel":"app","country":"DE"}',
            *m0,
            1,
            99.0,
            99.0,
            99.0,
        ),
        (
            "t1",
            "items_sold",
            "category=pizza|item_id=i1",
            '{"category":"pizza","item_id":"i1"}',
            *m0,
            2,
            5.0,
            2.0,
            3.0,
        ),
        (
            "t1",
            "items_sold",
            "category=drinks|item_id=i2",
            '{"category":"drinks","item_id":"i2"}',
            *m0,
            1,
            1.0,
            1.0,
            1.0,
        ),
        (
            "t1",
            "items_sold",
            "category=pizza|item_id=i3",
            '{"category":"pizza","item_id":"i3"}',
            *m1,
            1,
            1.0,
            1.0,
            1.0,
        ),
        (
            "t2",
            "items_sold",
            "category=pizza|item_id=i1",
            '{"category":"pizza","item_id":"i1"}',
            *m0,
            1,
            1.0,
            1.0,
            1.0,
        ),
    ]
    assert_df_equality(comparable(actual), expected(spark, rows), ignore_row_order=True, ignore_nullable=True)


def test_average_metrics(spark, events_df) -> None:
    actual = with_minute_partials(
        events_df, metrics=["food_rating", "delivery_rating"], updated_at=fixed_updated_at()
    )
    m1 = minute(12, 1)
    rows = [
        ("t1", "food_rating", "", "{}", *m1, 2, 7.0, 3.0, 4.0),
        ("t1", "delivery_rating", "", "{}", *m1, 2, 7.0, 2.0, 5.0),
    ]
    assert_df_equality(comparable(actual), expected(spark, rows), ignore_row_order=True, ignore_nullable=True)
    values = {r["metric"]: r["value"] for r in with_metric_value(actual).collect()}
    assert values == {"food_rating": 3.5, "delivery_rating": 3.5}


def test_distinct_metric(spark, events_df) -> None:
    actual = with_minute_partials(events_df, metrics=["active_users"], updated_at=fixed_updated_at())
    m0, m1 = minute(12, 0), minute(12, 1)
    de = '{"country":"DE","device":"ios"}'
    rows = [
        # u1, u2 (orders) and u3 (page view)
        ("t1", "active_users", "country=DE|device=ios", de, *m0, 3, None, None, None),
        (
            "t1",
            "active_users",
            "country=FR|device=android",
            '{"country":"FR","device":"android"}',
            *m1,
            1,
            None,
            None,
            None,
        ),
        # the ratings carry no country/device: the empty value, not a dropped row
        ("t1", "active_users", "country=|device=", '{"country":"","device":""}', *m1, 2, None, None, None),
        ("t2", "active_users", "country=DE|device=ios", de, *m0, 1, None, None, None),
    ]
    assert_df_equality(comparable(actual), expected(spark, rows), ignore_row_order=True, ignore_nullable=True)
    estimates = {
        (r["tenant_id"], r["dims_key"], r["window_start"].minute): (r["value"], r["theta"])
        for r in with_metric_value(actual)
        .withColumn("theta", F.theta_sketch_estimate("theta_sketch"))
        .collect()
    }
    assert estimates == {
        ("t1", "country=DE|device=ios", 0): (3.0, 3),
        ("t1", "country=FR|device=android", 1): (1.0, 1),
        ("t1", "country=|device=", 1): (2.0, 2),
        ("t2", "country=DE|device=ios", 0): (1.0, 1),
    }
    # Across both minutes and all dimensions tenant t1 saw u1, u2, u3: sketch union, not a sum of 6.
    total = with_metric_value(with_dims_projected(with_rollup(actual, "hour"))).filter("tenant_id = 't1'")
    assert [(r["dims_key"], r["count"], r["value"]) for r in total.collect()] == [("", 6, 3.0)]


def test_distribution_metric_prep_time(spark, make_events) -> None:
    prep_df = explode_prep_time_events(make_events(PREP_EVENTS))
    assert sorted((r["order_id"], r["prep_seconds"]) for r in prep_df.collect()) == [
        ("o1", 510.0),
        ("o2", 120.0),
        ("o3", 110.0),
    ]
    actual = with_minute_partials(prep_df, source="prep_time", updated_at=fixed_updated_at())
    #          bounds: 60 120 180 240 300 420 600 900 1200 1800 2700 3600 overflow
    b_12_04 = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    b_12_09 = [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    rows = [
        ("t1", "prep_time_seconds", "", "{}", *minute(12, 4), 1, 120.0, 120.0, 120.0, b_12_04),
        ("t1", "prep_time_seconds", "", "{}", *minute(12, 9), 2, 620.0, 110.0, 510.0, b_12_09),
    ]
    assert_df_equality(comparable(actual), expected(spark, rows), ignore_row_order=True, ignore_nullable=True)
    hour = with_rollup(actual, "hour").collect()
    assert len(hour) == 1
    assert (hour[0]["count"], hour[0]["sum"], hour[0]["min"], hour[0]["max"]) == (3, 740.0, 110.0, 510.0)
    assert hour[0]["buckets"] == [0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    bounds = get_catalog().metric("prep_time_seconds").buckets
    assert quantile_from_buckets(hour[0]["buckets"], bounds, 0.5) == 120.0
    assert quantile_from_buckets(hour[0]["buckets"], bounds, 0.95) == 600.0


def test_rollups_and_last_n_minutes(spark, events_df) -> None:
    minutes_df = with_minute_partials(events_df, updated_at=fixed_updated_at())
    hour_df = with_rollup(minutes_df, "hour")
    day_df = with_rollup(hour_df, "day")
    rows = {
        (r["tenant_id"], r["metric"], r["dims_key"]): (
            r["window_start"],
            r["window_end"],
            r["count"],
            r["sum"],
        )
        for r in day_df.collect()
    }
    day = (datetime(2024, 5, 1), datetime(2024, 5, 2))
    assert rows[("t1", "gross_sales", "channel=app|country=DE")] == (*day, 2, 30.5)
    assert rows[("t1", "orders_completed", "")] == (*day, 2, None)
    assert rows[("t1", "food_rating", "")] == (*day, 2, 7.0)
    # Last 1 minute ending 12:02 sees only the 12:01 minute; last 2 minutes see both.
    last1 = with_last_n_minutes(minutes_df, t(12, 2), 1).filter("metric = 'orders_completed'").collect()
    last2 = with_last_n_minutes(minutes_df, t(12, 2), 2).filter("metric = 'orders_completed'").collect()
    assert [(r["window_start"], r["window_end"], r["count"]) for r in last1] == [
        (datetime(2024, 5, 1, 12, 1), datetime(2024, 5, 1, 12, 2), 1)
    ]
    assert [(r["window_start"], r["count"]) for r in last2] == [(datetime(2024, 5, 1, 12, 0), 2)]
    assert tuple(day_df.columns) == PARTIAL_COLUMNS


def test_dims_key_is_canonical_and_escaped(make_events) -> None:
    tricky = make_events(
        [
            ev("app_error", iso(12, 0), service="a|code=b", code="x\\y"),
            ev("app_error", iso(12, 0), service="a"),
        ]
    )
    keys = sorted(r["dims_key"] for r in with_minute_partials(tricky, metrics=["app_errors"]).collect())
    assert keys == ["code=x\\\\y|service=a\\|code\\=b", "code=|service=a"]


def test_order_state_is_latest_by_event_time(spark, make_events) -> None:
    # Arrival order scrambled; ties on event time go to the later lifecycle step.
    events_df = make_events(
        [
            ev("order_status_changed", iso(12, 20), order_id="o1", status="delivered"),
            ev("order_status_changed", iso(12, 5), order_id="o1", status="ready_for_pickup"),
            ev(
                "order_placed",
                iso(12, 0),
                order_id="o1",
                user_id="u1",
                amount=12.0,
                currency="EUR",
                channel="app",
                country="DE",
                device="ios",
                items=[item("i1", "pizza", 1)],
            ),
            ev("order_status_changed", iso(12, 1), order_id="o1", status="confirmed"),
            ev(
                "rating_submitted", iso(12, 30), order_id="o1", user_id="u1", food_rating=5, delivery_rating=4
            ),
            ev("order_status_changed", iso(12, 3), order_id="o2", status="confirmed"),
            ev("order_status_changed", iso(12, 3), order_id="o2", status="in_kitchen"),
            ev("order_status_changed", iso(12, 4), order_id="o3", status="teleported"),
        ]
    )
    state = {r["order_id"]: r for r in with_order_state(events_df).collect()}
    assert set(state) == {"o1", "o2", "o3"}
    o1 = state["o1"]
    assert (o1["status"], o1["status_at"], o1["amount"], o1["prep_seconds"]) == (
        "delivered",
        datetime(2024, 5, 1, 12, 20),
        12.0,
        240.0,
    )
    assert (o1["placed_at"], o1["food_rating"], o1["delivery_rating"]) == (
        datetime(2024, 5, 1, 12, 0),
        5.0,
        4.0,
    )
    assert state["o2"]["status"] == "in_kitchen"
    assert state["o3"]["status"] is None


def test_order_state_touched_by_keeps_orders_with_such_an_event_built_from_all_events(make_events) -> None:
    events_df = make_events(
        [
            ev("order_status_changed", iso(11, 50), order_id="o1", status="confirmed"),
            ev("order_status_changed", iso(12, 5), order_id="o1", status="ready_for_pickup"),
            ev("order_status_changed", iso(11, 55), order_id="o2", status="confirmed"),
            # A courier event does not change an order, so it does not make o2 one of the range's orders.
            ev("courier_status_changed", iso(12, 6), courier_id="c1", order_id="o2", status="assigned"),
            ev("order_status_changed", iso(12, 30), order_id="o3", status="delivered"),
        ]
    )
    in_range = (F.col("occurred_at") >= F.lit(datetime(2024, 5, 1, 12, 0))) & (
        F.col("occurred_at") < F.lit(datetime(2024, 5, 1, 12, 10))
    )
    state = {r["order_id"]: r for r in with_order_state(events_df, touched_by=in_range).collect()}
    assert set(state) == {"o1"}
    assert (state["o1"]["confirmed_at"], state["o1"]["prep_seconds"]) == (datetime(2024, 5, 1, 11, 50), 900.0)
    assert "_touched" not in state["o1"].asDict()


def test_courier_state_is_latest_by_event_time(make_events) -> None:
    events_df = make_events(
        [
            ev("courier_status_changed", iso(12, 10), courier_id="c1", order_id="o1", status="picked_up"),
            ev("courier_status_changed", iso(12, 2), courier_id="c1", order_id="o1", status="assigned"),
            ev(
                "courier_status_changed",
                iso(12, 25),
                courier_id="c1",
                order_id="o2",
                status="arrived_at_restaurant",
            ),
            ev(
                "courier_status_changed",
                iso(12, 5),
                courier_id="c2",
                order_id="o3",
                status="arrived_at_restaurant",
            ),
            ev("courier_status_changed", iso(12, 4), courier_id="c2", order_id="o3", status="assigned"),
        ]
    )
    rows = sorted(
        (r["courier_id"], r["status"], r["order_id"], r["is_waiting"], r["status_at"].minute)
        for r in with_courier_state(events_df).collect()
    )
    assert rows == [
        ("c1", "arrived_at_restaurant", "o2", True, 25),
        ("c2", "arrived_at_restaurant", "o3", True, 5),
    ]


def test_kafka_records_are_pinot_encoded(events_df) -> None:
    partials_df = with_minute_partials(events_df, metrics=["active_users"], updated_at=fixed_updated_at())
    row = with_kafka_records(partials_df.filter("tenant_id = 't2'")).collect()[0]
    key, value = json.loads(row["key"]), json.loads(row["value"])
    window_ms = int(t(12, 0).timestamp() * 1000)
    assert key == {
        "tenant_id": "t2",
        "metric": "active_users",
        "dims_key": "country=DE|device=ios",
        "window_start": window_ms,
    }
    assert value["window_end"] == window_ms + 60_000
    assert value["updated_at"] == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert json.loads(value["dims"]) == {"country": "DE", "device": "ios"}
    assert value["count"] == 1
    # BYTES travel as hex: decoding gives back the sketch Spark computed.
    sketch = partials_df.filter("tenant_id = 't2'").collect()[0]["hll_sketch"]
    assert bytes.fromhex(value["hll_sketch"]) == bytes(sketch)


def test_normalized_events_accept_string_properties(spark) -> None:
    landed_df = spark.createDataFrame(
        [("e1", "t1", "order_placed", "2024-05-01T12:00:10Z", "src", '{"amount": 3.5, "channel": "app"}')],
        "event_id string, tenant_id string, event_type string, occurred_at string, source string, "
        "properties string",
    )
    normalized = with_normalized_events(landed_df)
    row = normalized.collect()[0]
    assert (row["occurred_at"], row["properties"]["amount"], row["received_at"]) == (
        datetime(2024, 5, 1, 12, 0, 10),
        3.5,
        None,
    )
    sums = with_minute_partials(normalized, metrics=["gross_sales"]).collect()
    assert [(r["dims_key"], r["sum"]) for r in sums] == [("channel=app|country=", 3.5)]
