"""Merge minute partial rows into hours, days or "the last N minutes" without re-reading events.

count/sum add, min/max take the extremes, sketches union, bucket counters add element-wise. The result
has the same row contract (PARTIAL_SCHEMA), so rollups of rollups work too.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timedelta

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from lakepulse.aggregations.minute import HLL_LG_CONFIG_K, THETA_LG_NOM_ENTRIES, escape_dim_value, split_by_sketch
from lakepulse.aggregations.schema import DIMS_TYPE
from lakepulse.catalog import Catalog, get_catalog

GRANULARITIES: dict[str, str] = {"minute": "1 minute", "hour": "1 hour", "day": "1 day"}


def _merged_buckets(catalog: Catalog) -> Column:
    """Element-wise sum of the rows' bucket arrays (null when no row has one): one sum per index keeps
    the aggregation hash-based, where collecting the arrays would not."""
    lengths = {m.name: m.bucket_count for m in catalog.metrics if m.kind == "distribution"}
    if not lengths:
        return F.lit(None).cast("array<long>")
    sums = F.array(*[F.sum(F.get(F.col("buckets"), i)) for i in range(max(lengths.values()))])
    summed: Column = sums
    for name, length in lengths.items():
        # Distributions may declare different bucket counts: keep each metric's own length.
        summed = F.when(F.col("metric") == name, F.slice(sums, 1, length)).otherwise(summed)
    return F.when(F.count("buckets") > 0, summed).cast("array<long>")


def _merge_aggs(catalog: Catalog, sketches: bool) -> list[Column]:
    aggs = [
        F.sum("count").cast("long").alias("count"),
        F.sum("sum").alias("sum"),
        F.min("min").alias("min"),
        F.max("max").alias("max"),
        _merged_buckets(catalog).alias("buckets"),
        F.max("updated_at").alias("updated_at"),
    ]
    if sketches:
        # Only distinct metrics carry sketches; keep the others null instead of an empty sketch.
        aggs += [
            F.when(F.count("hll_sketch") > 0, F.hll_union_agg("hll_sketch", True)).alias("hll_sketch"),
            F.when(F.count("theta_sketch") > 0, F.theta_union_agg("theta_sketch", THETA_LG_NOM_ENTRIES)).alias(
                "theta_sketch"
            ),
        ]
    else:
        aggs += [F.lit(None).cast("binary").alias("hll_sketch"), F.lit(None).cast("binary").alias("theta_sketch")]
    return aggs


def _merge(partials_df: DataFrame, window_start: Column, window_end: Column) -> DataFrame:
    catalog = get_catalog()
    sketched = [m.name for m in split_by_sketch(catalog.metrics)[1]]
    if sketched and not partials_df.isStreaming:
        # Sketch unions are object aggregations, slow for many groups: only distinct metrics pay for them.
        is_sketched = F.col("metric").isin(sketched)
        return _merged(partials_df.filter(~is_sketched), window_start, window_end, catalog, False).unionByName(
            _merged(partials_df.filter(is_sketched), window_start, window_end, catalog, True)
        )
    return _merged(partials_df, window_start, window_end, catalog, True)


def _merged(
    partials_df: DataFrame, window_start: Column, window_end: Column, catalog: Catalog, sketches: bool
) -> DataFrame:
    # A map cannot be a grouping key; its sorted entries can, and rebuild the same map.
    grouped = partials_df.withColumn("_dims_entries", F.array_sort(F.map_entries("dims"))).groupBy(
        "tenant_id",
        "metric",
        "dims_key",
        "_dims_entries",
        window_start.alias("window_start"),
        window_end.alias("window_end"),
    )
    return grouped.agg(*_merge_aggs(catalog, sketches)).select(
        "tenant_id",
        "metric",
        "dims_key",
        F.map_from_entries("_dims_entries").alias("dims"),
        "window_start",
        "window_end",
        "count",
        "sum",
        "min",
        "max",
        "hll_sketch",
        "theta_sketch",
        "buckets",
        "updated_at",
    )


def with_rollup(partials_df: DataFrame, granularity: str) -> DataFrame:
    """Partial rows of a finer grain → partial rows per `granularity` ("minute", "hour" or "day", UTC)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; known: {list(GRANULARITIES)}")
    window = F.window("window_start", GRANULARITIES[granularity])
    return _merge(partials_df, window.start, window.end)


def with_last_n_minutes(partials_df: DataFrame, end: datetime, minutes: int) -> DataFrame:
    """Minute partial rows → one partial row per (tenant, metric, dims) for [end - minutes, end)."""
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    start = end - timedelta(minutes=minutes)
    in_range_df = partials_df.filter((F.col("window_start") >= F.lit(start)) & (F.col("window_end") <= F.lit(end)))
    return _merge(in_range_df, F.lit(start).cast("timestamp"), F.lit(end).cast("timestamp"))


def with_dims_projected(partials_df: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """Partial rows → the same windows merged over every dimension not in `keep` (default: all merged,
    dims_key ""), e.g. total active users across countries and devices via sketch union."""
    kept = sorted(set(keep))
    dims = F.map_filter("dims", lambda k, _v: k.isin(kept)) if kept else F.create_map().cast(DIMS_TYPE)
    entries = F.array_sort(F.map_entries(dims))
    key = F.concat_ws(
        "|",
        F.transform(entries, lambda e: F.concat(e["key"], F.lit("="), escape_dim_value(e["value"]))),
    )
    projected_df = partials_df.withColumn("dims", dims).withColumn("dims_key", key)
    return _merge(projected_df, F.col("window_start"), F.col("window_end"))


def with_metric_value(partials_df: DataFrame, catalog: Catalog | None = None) -> DataFrame:
    """Partial rows → plus `value`: count, sum, distinct estimate, or the mean for average/distribution."""
    catalog = catalog or get_catalog()
    value: Column = F.lit(None).cast("double")
    for m in catalog.metrics:
        if m.kind == "count":
            v = F.col("count").cast("double")
        elif m.kind == "sum":
            v = F.col("sum")
        elif m.kind == "distinct":
            v = F.hll_sketch_estimate("hll_sketch").cast("double")
        else:
            v = F.col("sum") / F.col("count")
        value = F.when(F.col("metric") == m.name, v).otherwise(value)
    return partials_df.withColumn("value", value)


def quantile_from_buckets(buckets: Sequence[int], bounds: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of a bucketed distribution: the upper bound of the bucket holding it
    (the overflow bucket reports +inf); None when empty. Pure Python, for the API and tests."""
    total = sum(buckets)
    if total == 0:
        return None
    target = q * total
    cumulative = 0
    running = []
    for c in buckets:
        cumulative += c
        running.append(cumulative)
    i = bisect.bisect_left(running, target if target > 0 else 1)
    return float(bounds[i]) if i < len(bounds) else float("inf")


__all__ = [
    "GRANULARITIES",
    "HLL_LG_CONFIG_K",
    "quantile_from_buckets",
    "with_dims_projected",
    "with_last_n_minutes",
    "with_metric_value",
    "with_rollup",
]
