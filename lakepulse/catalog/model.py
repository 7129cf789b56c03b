"""The metric catalog: typed, validated declarations loaded from `metrics.toml`."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

Kind = Literal["count", "sum", "distinct", "distribution", "average"]
KINDS: tuple[Kind, ...] = ("count", "sum", "distinct", "distribution", "average")
# "events" = the raw envelope; "prep_time" = rows produced by aggregations.explode_prep_time_events.
SOURCES: tuple[str, ...] = ("events", "prep_time")
EXPLODES: tuple[str, ...] = ("items",)
# Kinds whose value expression is required (count counts rows; everything else needs a value).
VALUE_KINDS: frozenset[str] = frozenset({"sum", "distinct", "distribution", "average"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class CatalogError(ValueError):
    """The catalog declaration is invalid; the message names the metric and the problem."""


@dataclass(frozen=True)
class Dimension:
    """A dimension: a name and the Spark SQL expression that yields it from an event row."""

    name: str
    expr: str
    requires: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric declaration."""

    name: str
    kind: Kind
    source: str
    unit: str
    description: str
    event_types: tuple[str, ...] = ()
    where: str | None = None
    explode: str | None = None
    value: str | None = None
    dimensions: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def bucket_count(self) -> int:
        """Number of bucket counters (one per upper bound plus the overflow bucket); 0 if none."""
        return len(self.buckets) + 1 if self.kind == "distribution" else 0


@dataclass(frozen=True)
class Catalog:
    """All metrics and dimensions, validated."""

    dimensions: dict[str, Dimension]
    metrics: tuple[Metric, ...]
    _by_name: dict[str, Metric] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {m.name: m for m in self.metrics})

    def metric(self, name: str) -> Metric:
        """The metric called `name` (KeyError with the known names otherwise)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}; known: {sorted(self._by_name)}") from None

    def names(self) -> list[str]:
        """Metric names in declaration order."""
        return [m.name for m in self.metrics]

    def by_source(self, source: str) -> tuple[Metric, ...]:
        """Metrics computed from one source ("events" or "prep_time")."""
        return tuple(m for m in self.metrics if m.source == source)

    def by_kind(self, kind: str) -> tuple[Metric, ...]:
        """Metrics of one kind."""
        return tuple(m for m in self.metrics if m.kind == kind)


def _str_list(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise CatalogError(f"{where}: expected a list of strings, got {raw!r}")
    return tuple(raw)


def parse_catalog(doc: dict[str, Any]) -> Catalog:
    """Validate a parsed catalog document (the TOML as a dict) and build the Catalog."""
    raw_dims = doc.get("dimensions", {})
    if not isinstance(raw_dims, dict):
        raise CatalogError("[dimensions] must be a table")
    dimensions: dict[str, Dimension] = {}
    for name, spec in raw_dims.items():
        if not _NAME_RE.match(name):
            raise CatalogError(f"dimension {name!r}: names are lower snake_case")
        if not isinstance(spec, dict) or not isinstance(spec.get("expr"), str) or not spec["expr"].strip():
            raise CatalogError(f"dimension {name!r}: needs a non-empty `expr`")
        unknown_keys = set(spec) - {"expr", "requires"}
        if unknown_keys:
            raise CatalogError(f"dimension {name!r}: unknown keys {sorted(unknown_keys)}")
        requires = spec.get("requires")
        if requires is not None and requires not in EXPLODES:
            raise CatalogError(f"dimension {name!r}: requires {requires!r}; known explodes: {list(EXPLODES)}")
        dimensions[name] = Dimension(name=name, expr=spec["expr"], requires=requires)

    raw_metrics = doc.get("metric", [])
    if not isinstance(raw_metrics, list) or not raw_metrics:
        raise CatalogError("the catalog declares no [[metric]]")
    metrics: list[Metric] = []
    seen: set[str] = set()
    allowed_keys = {
        "name",
        "kind",
        "source",
        "unit",
        "description",
        "event_types",
        "where",
        "explode",
        "value",
        "dimensions",
        "buckets",
    }
    for i, spec in enumerate(raw_metrics):
        name = spec.get("name")
        label = f"metric #{i + 1} ({name!r})"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise CatalogError(f"{label}: `name` must be lower snake_case, 1..63 chars")
        if name in seen:
            raise CatalogError(f"metric {name!r} is declared twice (name clash)")
        seen.add(name)
        label = f"metric {name!r}"
        unknown_keys = set(spec) - allowed_keys
        if unknown_keys:
            raise CatalogError(f"{label}: unknown keys {sorted(unknown_keys)}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise CatalogError(f"{label}: unknown kind {kind!r}; known kinds: {list(KINDS)}")
        source = spec.get("source", "events")
        if source not in SOURCES:
            raise CatalogError(f"{label}: unknown source {source!r}; known sources: {list(SOURCES)}")
        for key in ("unit", "description"):
            if not isinstance(spec.get(key), str) or not spec[key].strip():
                raise CatalogError(f"{label}: needs a non-empty `{key}`")
        value = spec.get("value")
        if kind in VALUE_KINDS and (not isinstance(value, str) or not value.strip()):
            raise CatalogError(f"{label}: kind {kind!r} needs a `value` expression")
        if kind == "count" and value is not None:
            raise CatalogError(f"{label}: a count has no `value` (it counts matching rows)")
        explode = spec.get("explode")
        if explode is not None and explode not in EXPLODES:
            raise CatalogError(f"{label}: unknown explode {explode!r}; known: {list(EXPLODES)}")
        dims = _str_list(spec.get("dimensions", []), f"{label} dimensions")
        if len(set(dims)) != len(dims):
            raise CatalogError(f"{label}: a dimension is listed twice in {list(dims)}")
        for d in dims:
            if d not in dimensions:
                raise CatalogError(
                    f"{label}: unknown dimension {d!r}; known dimensions: {sorted(dimensions)}"
                )
            if dimensions[d].requires is not None and dimensions[d].requires != explode:
                raise CatalogError(f"{label}: dimension {d!r} needs explode = {dimensions[d].requires!r}")
            if source != "events":
                raise CatalogError(f"{label}: metrics from source {source!r} take no dimensions")
        event_types = _str_list(spec.get("event_types", []), f"{label} event_types")
        buckets_raw = spec.get("buckets", [])
        if kind == "distribution":
            if (
                not isinstance(buckets_raw, list)
                or not buckets_raw
                or not all(isinstance(b, int | float) for b in buckets_raw)
                or any(b >= c for b, c in zip(buckets_raw, buckets_raw[1:], strict=False))
            ):
                raise CatalogError(f"{label}: a distribution needs strictly ascending numeric `buckets`")
        elif buckets_raw:
            raise CatalogError(f"{label}: only distributions take `buckets`")
        where = spec.get("where")
        if where is not None and not isinstance(where, str):
            raise CatalogError(f"{label}: `where` must be a string")
        metrics.append(
            Metric(
                name=name,
                kind=cast(Kind, kind),
                source=source,
                unit=spec["unit"],
                description=spec["description"],
                event_types=event_types,
                where=where,
                explode=explode,
                value=value,
                dimensions=dims,
                buckets=tuple(float(b) for b in buckets_raw),
            )
        )
    return Catalog(dimensions=dimensions, metrics=tuple(metrics))


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog TOML file (default: the one shipped in this package)."""
    if path is None:
        text = resources.files("lakepulse.catalog").joinpath("metrics.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog is not valid TOML: {exc}") from exc
    return parse_catalog(doc)


@lru_cache(maxsize=1)
def get_catalog() -> Catalog:
    """The packaged catalog, loaded once per process."""
    return load_catalog()
