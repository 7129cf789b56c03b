"""Events → minute partial-aggregate rows (the row contract in schema.PARTIAL_SCHEMA).

The same functions run on a batch DataFrame and on a streaming one. For streaming, the caller applies
`withWatermark("occurred_at", ...)` to the events before calling; everything here keeps `occurred_at`
untouched so the watermark reaches the window aggregation. A streaming call is a single aggregation (so it
runs in update output mode) over rows built with generators from one scan of the events, never a union.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from lakepulse.aggregations.schema import updated_at_or_default
from lakepulse.catalog import Catalog, Metric, get_catalog
from lakepulse.catalog.sketches import HLL_LG_CONFIG_K, THETA_LG_NOM_ENTRIES

# Sketch sizes (lakepulse.catalog.sketches): the same values must be used everywhere sketches are merged.

MINUTE = "1 minute"

_DIM_ENTRY_TYPE = "array<struct<key:string,value:string>>"


def escape_dim_value(col: Column) -> Column:
    """A dimension value escaped for dims_key."""
    # `|` and `=` separate the canonical key, so escaping them keeps dims_key injective.
    escaped = F.regexp_replace(col, r"\\", r"\\\\")
    escaped = F.regexp_replace(escaped, r"\|", r"\\|")
    escaped = F.regexp_replace(escaped, "=", r"\\=")
    # Values almost never hold these characters: plain searches spare three regex passes per value.
    special = col.contains("\\") | col.contains("|") | col.contains("=")
    return F.when(special, escaped).otherwise(col)


def dims_columns(metric: Metric, catalog: Catalog) -> tuple[Column, Column]:
    """(dims_key, dims entries) columns for a metric: sorted `k=v|k=v`, nulls as ""; "" when no dims."""
    names = sorted(metric.dimensions)
    if not names:
        return F.lit(""), F.array().cast(_DIM_ENTRY_TYPE)
    values = {n: F.coalesce(F.expr(catalog.dimensions[n].expr).cast("string"), F.lit("")) for n in names}
    key = F.concat_ws("|", *[F.concat(F.lit(f"{n}="), escape_dim_value(values[n])) for n in names])
    entries = F.array(*[F.struct(F.lit(n).alias("key"), values[n].alias("value")) for n in names])
    return key, entries


def _bucket_index(value: Column, bounds: Sequence[float]) -> Column:
    # Bucket i holds values <= bounds[i]; the last bucket (index len(bounds)) holds the overflow.
    idx: Column = F.lit(len(bounds))
    for i in reversed(range(len(bounds))):
        idx = F.when(value <= F.lit(bounds[i]), F.lit(i)).otherwise(idx)
    return idx


def _metric_entry(metric: Metric, catalog: Catalog, per_item: bool) -> Column:
    """One metric's contribution of an (event, item) row as a struct, or null when the row does not count.

    `per_item`: the rows carry `item` (one row per order item, `_pos` its index). Metrics that explode
    items count every item row; the others count only the first row of each event.
    """
    counts = F.lit(True)
    if metric.event_types:
        counts = counts & F.col("event_type").isin(list(metric.event_types))
    if metric.where:
        counts = counts & F.expr(metric.where)
    if metric.explode == "items":
        counts = counts & F.col("item").isNotNull()
    elif per_item:
        counts = counts & (F.col("_pos") == 0)
    dims_key, dims_entries = dims_columns(metric, catalog)
    value = F.lit(None).cast("double")
    distinct_value = F.lit(None).cast("string")
    if metric.kind == "distinct":
        distinct_value = F.expr(metric.value or "").cast("string")
        counts = counts & distinct_value.isNotNull()
    elif metric.kind != "count":
        value = F.expr(metric.value or "").cast("double")
        # A row whose value is missing or not a number contributes nothing (not even to count).
        counts = counts & value.isNotNull() & ~F.isnan(value)
    bucket = _bucket_index(value, metric.buckets) if metric.kind == "distribution" else F.lit(None)
    entry = F.struct(
        F.lit(metric.name).alias("metric"),
        dims_key.alias("dims_key"),
        dims_entries.alias("dims_entries"),
        value.alias("value"),
        distinct_value.alias("distinct_value"),
        bucket.cast("int").alias("bucket"),
    )
    return F.when(counts, entry)


def _metric_rows(events_df: DataFrame, chosen: Sequence[Metric], catalog: Catalog) -> DataFrame:
    """The chosen metrics' contributing rows (tenant, metric, dims, occurred_at, value, ...), built with
    generators over one scan of the events: no union, so a stateful operator above or below (streaming
    dedup, the aggregation) is planned once, and a batch reads its input once."""
    per_item = any(m.explode == "items" for m in chosen)
    rows_df = events_df
    if per_item:
        item_type = events_df.schema["properties"].dataType["items"].dataType  # type: ignore[index]
        # Events without items keep one row (item null), so that they still count for the other metrics.
        items = F.when(F.size("properties.items") > 0, F.col("properties.items")).otherwise(
            F.array(F.lit(None).cast(item_type.elementType))
        )
        rows_df = rows_df.select("*", F.posexplode(items).alias("_pos", "item"))
    # Explode, then drop the nulls: a lambda (F.filter) would run interpreted, a plain filter is compiled.
    entries = F.array(*[_metric_entry(m, catalog, per_item) for m in chosen])
    exploded_df = rows_df.select("tenant_id", "occurred_at", F.explode(entries).alias("_m"))
    return exploded_df.where(F.col("_m").isNotNull()).select(
        "tenant_id",
        "_m.metric",
        "_m.dims_key",
        "_m.dims_entries",
        "occurred_at",
        "_m.value",
        "_m.distinct_value",
        "_m.bucket",
    )


def split_by_sketch(metrics: Iterable[Metric]) -> tuple[list[Metric], list[Metric]]:
    """(metrics without sketches, distinct metrics: those whose rows carry HLL and Theta sketches)."""
    metrics = list(metrics)
    return [m for m in metrics if m.kind != "distinct"], [m for m in metrics if m.kind == "distinct"]


def _only_for(metrics: Iterable[Metric], col: Column) -> Column:
    names = [m.name for m in metrics]
    if not names:
        return F.lit(None)
    return F.when(F.col("metric").isin(names), col)


def with_minute_partials(
    events_df: DataFrame,
    metrics: Sequence[str] | None = None,
    source: str = "events",
    catalog: Catalog | None = None,
    updated_at: Column | None = None,
) -> DataFrame:
    """Events (RAW_EVENT_SCHEMA columns, or prep rows for source="prep_time") → minute partial rows
    (PARTIAL_SCHEMA) for the named metrics, default every metric of `source`."""
    catalog = catalog or get_catalog()
    chosen = [catalog.metric(n) for n in metrics] if metrics is not None else list(catalog.by_source(source))
    wrong = [m.name for m in chosen if m.source != source]
    if wrong:
        raise ValueError(f"metrics {wrong} are not computed from source {source!r}")
    if not chosen:
        raise ValueError(f"no metrics to compute from source {source!r}")
    plain, sketched = split_by_sketch(chosen)
    if sketched and plain and not events_df.isStreaming:
        # Sketch buffers are the costly part of the aggregation: only distinct metrics pay for them.
        # (A streaming query allows one aggregation, so there both kinds share it.)
        return _aggregated(events_df, plain, catalog, updated_at).unionByName(
            _aggregated(events_df, sketched, catalog, updated_at)
        )
    return _aggregated(events_df, chosen, catalog, updated_at)


def _aggregated(
    events_df: DataFrame, chosen: Sequence[Metric], catalog: Catalog, updated_at: Column | None
) -> DataFrame:
    """One aggregation of the chosen metrics' rows into minute partial rows."""
    rows_df = _metric_rows(events_df, chosen, catalog)
    distinct_metrics = split_by_sketch(chosen)[1]
    n_buckets = max((m.bucket_count for m in chosen), default=0)
    aggs = [
        F.count(F.lit(1)).alias("count"),
        F.sum("value").alias("sum"),
        F.min("value").alias("min"),
        F.max("value").alias("max"),
    ]
    if distinct_metrics:
        aggs += [
            F.hll_sketch_agg("distinct_value", HLL_LG_CONFIG_K).alias("hll_sketch"),
            F.theta_sketch_agg("distinct_value", THETA_LG_NOM_ENTRIES).alias("theta_sketch"),
        ]
    if n_buckets:
        aggs.append(
            F.array(
                *[F.sum(F.when(F.col("bucket") == i, 1).otherwise(0)).cast("long") for i in range(n_buckets)]
            ).alias("buckets")
        )
    agg_df = rows_df.groupBy(
        "tenant_id", "metric", "dims_key", "dims_entries", F.window("occurred_at", MINUTE).alias("window")
    ).agg(*aggs)

    buckets_col: Column = F.lit(None)
    for m in (m for m in chosen if m.kind == "distribution"):
        # Several distributions may declare different bucket counts: keep each metric's own length.
        buckets_col = F.when(F.col("metric") == m.name, F.slice("buckets", 1, m.bucket_count)).otherwise(buckets_col)
    return agg_df.select(
        "tenant_id",
        "metric",
        "dims_key",
        F.map_from_entries("dims_entries").alias("dims"),
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        "count",
        "sum",
        "min",
        "max",
        _only_for(distinct_metrics, F.col("hll_sketch")).cast("binary").alias("hll_sketch"),
        _only_for(distinct_metrics, F.col("theta_sketch")).cast("binary").alias("theta_sketch"),
        buckets_col.cast("array<long>").alias("buckets"),
        updated_at_or_default(events_df, updated_at).alias("updated_at"),
    )
