"""The stateful pieces both layers share: prep time per order and live order / courier state.

All of them order by event time (`occurred_at`), never by arrival, so late or out-of-order events give
the same answer. On a streaming DataFrame the caller applies the watermark on `occurred_at` first.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from lakepulse.aggregations.schema import updated_at_or_default
from lakepulse.events import COURIER_STATUSES, ORDER_STATUSES  # the event contract's lifecycle order

# Longest plausible prep; bounds the stream-stream join state (a pair further apart is not one order's prep).
MAX_PREP = "6 hours"


def _rank(status: Column, statuses: tuple[str, ...]) -> Column:
    # Ties in event time resolve to the later lifecycle step, so equal timestamps still give one answer.
    rank: Column = F.lit(None).cast("int")
    for i, s in reversed(list(enumerate(statuses))):
        rank = F.when(status == s, F.lit(i)).otherwise(rank)
    return rank


def explode_prep_time_events(events_df: DataFrame, max_prep: str = MAX_PREP) -> DataFrame:
    """Events → one prep row per order whose confirmed and ready_for_pickup events are both seen:
    tenant_id, order_id, confirmed_at, occurred_at (= ready time), prep_seconds; input of
    `with_minute_partials(..., source="prep_time")`.

    On a stream this is a time-bounded stream-stream inner join (either event may arrive first; state is
    kept for `max_prep` plus the watermark) that emits a row as soon as both events are seen (append mode).
    Do not chain the minute aggregation in the same query: Spark then needs append mode and holds the
    join's output watermark back by `max_prep`, so prep minutes would appear hours late. Write these rows
    to their own sink (a topic) and aggregate them in a second query in update mode, as the parity test does.
    """
    status_df = events_df.filter(
        (F.col("event_type") == "order_status_changed") & F.col("properties.order_id").isNotNull()
    )
    confirmed_df = status_df.filter(F.col("properties.status") == "confirmed").select(
        F.col("tenant_id").alias("c_tenant_id"),
        F.col("properties.order_id").alias("c_order_id"),
        F.col("occurred_at").alias("confirmed_at"),
    )
    ready_df = status_df.filter(F.col("properties.status") == "ready_for_pickup").select(
        F.col("tenant_id"),
        F.col("properties.order_id").alias("order_id"),
        F.col("occurred_at"),
    )
    joined_df = ready_df.join(
        confirmed_df,
        F.expr(
            "c_tenant_id = tenant_id AND c_order_id = order_id "
            f"AND occurred_at >= confirmed_at AND occurred_at <= confirmed_at + INTERVAL {max_prep}"
        ),
        "inner",
    )
    return joined_df.select(
        "tenant_id",
        "order_id",
        "confirmed_at",
        "occurred_at",
        (F.unix_micros("occurred_at") - F.unix_micros("confirmed_at"))
        .cast("double")
        .__truediv__(1e6)
        .alias("prep_seconds"),
    )


def _first_at(status: str) -> Column:
    return F.min(F.when(F.col("_status") == status, F.col("occurred_at"))).alias(f"{status}_at")


def with_order_state(
    events_df: DataFrame, updated_at: Column | None = None, touched_by: Column | None = None
) -> DataFrame:
    """Events → one row per (tenant_id, order_id): latest status by event time, when each status was
    first reached, amount, prep_seconds and the latest ratings (rows for Kafka `orders.live`).

    `touched_by` (a condition over the event rows): only orders with at least one such event are returned,
    their state still built from all their events (a batch rebuilding the orders of a time range)."""
    order_events_df = events_df.filter(
        F.col("event_type").isin("order_placed", "order_status_changed", "rating_submitted")
        & F.col("properties.order_id").isNotNull()
    ).select(
        "tenant_id",
        F.col("properties.order_id").alias("order_id"),
        "occurred_at",
        F.when(F.col("event_type") == "order_placed", F.lit("placed"))
        .when(F.col("event_type") == "order_status_changed", F.col("properties.status"))
        .alias("_status"),
        F.when(F.col("event_type") == "order_placed", F.col("properties.amount")).alias("_amount"),
        F.when(F.col("event_type") == "order_placed", F.col("properties.currency")).alias("_currency"),
        F.when(F.col("event_type") == "rating_submitted", F.col("properties.food_rating")).alias("_food"),
        F.when(F.col("event_type") == "rating_submitted", F.col("properties.delivery_rating")).alias(
            "_deliv"
        ),
        # Only when asked: streaming state keeps its schema, so its checkpoints stay readable.
        *([touched_by.alias("_touched")] if touched_by is not None else []),
    )
    touched = [F.max("_touched").alias("_touched")] if touched_by is not None else []
    rank = _rank(F.col("_status"), ORDER_STATUSES)
    # Unknown status values get no rank and so never become the current status.
    status_order = F.when(rank.isNotNull(), F.struct(F.col("occurred_at"), rank))
    rating_order = F.when(F.col("_food").isNotNull() | F.col("_deliv").isNotNull(), F.col("occurred_at"))
    state_df = (
        order_events_df.withColumn("_status_order", status_order)
        .withColumn("_rating_order", rating_order)
        .groupBy("tenant_id", "order_id")
        .agg(
            F.max_by("_status", "_status_order").alias("status"),
            F.max("_status_order.occurred_at").alias("status_at"),
            *[_first_at(s) for s in ORDER_STATUSES],
            F.max("_amount").alias("amount"),
            F.max("_currency").alias("currency"),
            F.max_by("_food", "_rating_order").alias("food_rating"),
            F.max_by("_deliv", "_rating_order").alias("delivery_rating"),
            F.max("_rating_order").alias("rated_at"),
            F.max("occurred_at").alias("last_event_at"),
            *touched,
        )
    )
    if touched_by is not None:
        state_df = state_df.where(F.col("_touched"))
    prep = F.when(
        F.col("ready_for_pickup_at") >= F.col("confirmed_at"),
        (F.unix_micros("ready_for_pickup_at") - F.unix_micros("confirmed_at")).cast("double") / 1e6,
    )
    return state_df.select(
        "tenant_id",
        "order_id",
        "status",
        "status_at",
        *[f"{s}_at" for s in ORDER_STATUSES],
        "amount",
        "currency",
        prep.alias("prep_seconds"),
        "food_rating",
        "delivery_rating",
        "rated_at",
        "last_event_at",
        updated_at_or_default(events_df, updated_at).alias("updated_at"),
    )


def with_courier_state(events_df: DataFrame, updated_at: Column | None = None) -> DataFrame:
    """Events → one row per (tenant_id, courier_id): latest status and its order by event time
    (rows for Kafka `couriers.live`; "waiting at the restaurant" is status = arrived_at_restaurant)."""
    courier_events_df = events_df.filter(
        (F.col("event_type") == "courier_status_changed") & F.col("properties.courier_id").isNotNull()
    ).select(
        "tenant_id",
        F.col("properties.courier_id").alias("courier_id"),
        F.col("properties.order_id").alias("_order_id"),
        F.col("properties.status").alias("_status"),
        "occurred_at",
    )
    rank = _rank(F.col("_status"), COURIER_STATUSES)
    state_df = (
        courier_events_df.withColumn("_order", F.when(rank.isNotNull(), F.struct(F.col("occurred_at"), rank)))
        .groupBy("tenant_id", "courier_id")
        .agg(
            F.max_by(F.struct("_status", "_order_id"), "_order").alias("_latest"),
            F.max("_order.occurred_at").alias("status_at"),
            F.max("occurred_at").alias("last_event_at"),
        )
    )
    return state_df.select(
        "tenant_id",
        "courier_id",
        F.col("_latest._status").alias("status"),
        F.col("_latest._order_id").alias("order_id"),
        "status_at",
        (F.col("_latest._status") == "arrived_at_restaurant").alias("is_waiting"),
        "last_event_at",
        updated_at_or_default(events_df, updated_at).alias("updated_at"),
    )
