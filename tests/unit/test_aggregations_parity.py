"""Parity: the streaming path (readStream over files, availableNow) and the batch path give the same rows."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pyspark.sql.functions as F
import pytest
from pyspark.sql import DataFrame, Row

from lakepulse.aggregations import (
    PARTIAL_KEY,
    RAW_EVENT_SCHEMA,
    explode_prep_time_events,
    with_minute_partials,
    with_order_state,
)

pytestmark = pytest.mark.spark

WATERMARK = "10 minutes"


def ev(n: int, event_type: str, at: str, tenant: str = "t1", **props) -> dict:
    return {
        "event_id": f"e{n}",
        "tenant_id": tenant,
        "event_type": event_type,
        "occurred_at": f"2024-05-01T{at}Z",
        "received_at": f"2024-05-01T{at}Z",
        "source": "parity",
        "properties": props,
    }


def placed(n: int, at: str, order: str, user: str, amount: float, tenant: str = "t1") -> dict:
    items = [{"item_id": "i1", "name": "margherita", "category": "pizza", "quantity": 2, "unit_price": 5.0}]
    return ev(
        n,
        "order_placed",
        at,
        tenant,
        order_id=order,
        user_id=user,
        amount=amount,
        currency="EUR",
        channel="app",
        country="DE",
        device="ios",
        items=items,
    )


def status(n: int, at: str, order: str, value: str) -> dict:
    return ev(n, "order_status_changed", at, order_id=order, status=value)


# Three files read one per micro-batch. Later files carry earlier event times (within the watermark), and
# o2's ready_for_pickup arrives before its confirmed: state must carry across micro-batches.
FILES: list[list[dict]] = [
    [
        placed(1, "12:00:10", "o1", "u1", 20.5),
        placed(2, "12:01:30", "o2", "u2", 10.0),
        status(3, "12:02:00", "o1", "confirmed"),
        ev(4, "app_error", "12:02:05", service="api", code="500"),
        status(5, "12:07:00", "o2", "ready_for_pickup"),
    ],
    [
        placed(6, "12:00:50", "o3", "u1", 7.25),  # late, same minute as o1
        status(7, "12:05:00", "o2", "confirmed"),
        status(8, "12:06:30", "o1", "ready_for_pickup"),
        ev(9, "rating_submitted", "12:03:00", order_id="o1", user_id="u1", food_rating=4, delivery_rating=5),
        placed(10, "12:01:10", "o9", "u7", 99.0, tenant="t2"),
    ],
    [
        status(11, "12:04:00", "o3", "cancelled"),
        ev(12, "page_view", "12:00:20", user_id="u3", page="menu", country="DE", device="ios", category="x"),
        status(13, "12:09:00", "o1", "delivered"),
        # Moves the watermark past every window above, so append mode (prep time) emits them.
        ev(
            14,
            "page_view",
            "13:30:00",
            tenant="zz",
            user_id="flush",
            page="-",
            country="-",
            device="-",
            category="-",
        ),
    ],
]


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("events")
    for i, events in enumerate(FILES):
        path = root / f"part-{i}.json"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        # The file source takes files oldest first: distinct mtimes fix the micro-batch order.
        os.utime(path, (1_700_000_000 + i * 60, 1_700_000_000 + i * 60))
    return root


def run_stream(
    spark,
    events_dir: Path,
    checkpoint: Path,
    transform: Callable[[DataFrame], DataFrame],
    key: Sequence[str],
    mode: str,
) -> dict[tuple, Row]:
    """Run `transform` over the files as a stream; upsert each micro-batch's rows by `key`, as Pinot does."""
    upserted: dict[tuple, Row] = {}

    def upsert(batch_df: DataFrame, _batch_id: int) -> None:
        for row in batch_df.collect():
            upserted[tuple(row[k] for k in key)] = row

    stream_df = (
        spark.readStream.schema(RAW_EVENT_SCHEMA).option("maxFilesPerTrigger", 1).json(str(events_dir))
    ).withWatermark("occurred_at", WATERMARK)
    query = (
        transform(stream_df)
        .writeStream.outputMode(mode)
        .foreachBatch(upsert)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert query.exception() is None
    return upserted


def run_batch(spark, events_dir: Path, transform, key: Sequence[str]) -> dict[tuple, Row]:
    batch_df = spark.read.schema(RAW_EVENT_SCHEMA).json(str(events_dir))
    return {tuple(r[k] for k in key): r for r in transform(batch_df).collect()}


def comparable(rows: dict[tuple, Row]) -> dict[tuple, tuple]:
    """Rows without updated_at (a processing time) and with sketches as their estimates."""
    out = {}
    for k, row in rows.items():
        d = row.asDict()
        d.pop("updated_at")
        for sketch in ("hll_sketch", "theta_sketch"):
            if sketch in d:
                d[sketch] = None if d[sketch] is None else len(d[sketch]) > 0
        out[k] = tuple(sorted(d.items(), key=lambda kv: kv[0]))
    return out


def estimates(spark, rows: dict[tuple, Row]) -> dict[tuple, int]:
    sketches = [(list(k), bytes(r["hll_sketch"])) for k, r in rows.items() if r["hll_sketch"] is not None]
    df = spark.createDataFrame(sketches, "k array<string>, s binary")
    return {tuple(r["k"]): r["e"] for r in df.select("k", F.hll_sketch_estimate("s").alias("e")).collect()}


def test_minute_partials_stream_equals_batch(spark, events_dir, tmp_path) -> None:
    stream = run_stream(spark, events_dir, tmp_path / "ckpt", with_minute_partials, PARTIAL_KEY, "update")
    batch = run_batch(spark, events_dir, with_minute_partials, PARTIAL_KEY)
    assert comparable(stream) == comparable(batch)
    # Hand-checked anchors, so equal-but-wrong cannot pass: minute 12:00 of t1's gross sales holds o1 + o3.
    sales = [r for r in batch.values() if r["metric"] == "gross_sales" and r["tenant_id"] == "t1"]
    assert sorted((r["window_start"].minute, r["count"], r["sum"]) for r in sales) == [
        (0, 2, 27.75),
        (1, 1, 10.0),
    ]
    assert estimates(spark, stream) == estimates(spark, batch)


def test_prep_time_stream_equals_batch(spark, events_dir, tmp_path) -> None:
    # Production shape: query 1 joins (append: a prep row as soon as both events are seen) into its own
    # sink; query 2 aggregates that sink in update mode. Files stand in for the intermediate topic.
    prep_dir = tmp_path / "prep"
    stream_df = (
        spark.readStream.schema(RAW_EVENT_SCHEMA).option("maxFilesPerTrigger", 1).json(str(events_dir))
    ).withWatermark("occurred_at", WATERMARK)
    join_query = (
        explode_prep_time_events(stream_df)
        .writeStream.format("parquet")
        .option("path", str(prep_dir))
        .option("checkpointLocation", str(tmp_path / "ckpt-join"))
        .trigger(availableNow=True)
        .start()
    )
    join_query.awaitTermination()
    assert join_query.exception() is None

    upserted: dict[tuple, Row] = {}

    def upsert(batch_df: DataFrame, _batch_id: int) -> None:
        for row in batch_df.collect():
            upserted[tuple(row[k] for k in PARTIAL_KEY)] = row

    prep_schema = spark.read.parquet(str(prep_dir)).schema
    agg_query = (
        with_minute_partials(
            spark.readStream.schema(prep_schema)
            .parquet(str(prep_dir))
            .withWatermark("occurred_at", WATERMARK),
            source="prep_time",
        )
        .writeStream.outputMode("update")
        .foreachBatch(upsert)
        .option("checkpointLocation", str(tmp_path / "ckpt-agg"))
        .trigger(availableNow=True)
        .start()
    )
    agg_query.awaitTermination()
    assert agg_query.exception() is None

    def prep(df: DataFrame) -> DataFrame:
        return with_minute_partials(explode_prep_time_events(df), source="prep_time")

    batch = run_batch(spark, events_dir, prep, PARTIAL_KEY)
    assert comparable(upserted) == comparable(batch)
    # o1: 12:02:00 → 12:06:30 = 270 s; o2 (ready seen first): 12:05:00 → 12:07:00 = 120 s.
    assert sorted((r["window_start"].minute, r["count"], r["sum"]) for r in batch.values()) == [
        (6, 1, 270.0),
        (7, 1, 120.0),
    ]


def test_order_state_stream_equals_batch(spark, events_dir, tmp_path) -> None:
    key = ("tenant_id", "order_id")
    stream = run_stream(spark, events_dir, tmp_path / "ckpt", with_order_state, key, "update")
    batch = run_batch(spark, events_dir, with_order_state, key)
    assert comparable(stream) == comparable(batch)
    assert {k: r["status"] for k, r in batch.items()} == {
        ("t1", "o1"): "delivered",
        ("t1", "o2"): "ready_for_pickup",
        ("t1", "o3"): "cancelled",
        ("t2", "o9"): "placed",
    }
