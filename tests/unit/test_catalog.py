"""The metric catalog: the packaged declaration loads, and invalid declarations fail clearly."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import pytest

from lakepulse.catalog import KINDS, CatalogError, get_catalog, load_catalog, parse_catalog

DESIGN_METRICS = {
    "events": ("count", ["country", "device", "event_type"]),
    "orders_placed": ("count", ["channel", "country", "device"]),
    "gross_sales": ("sum", ["channel", "country"]),
    "orders_completed": ("count", []),
    "orders_cancelled": ("count", []),
    "items_sold": ("sum", ["category", "item_id"]),
    "active_users": ("distinct", ["country", "device"]),
    "prep_time_seconds": ("distribution", []),
    "food_rating": ("average", []),
    "delivery_rating": ("average", []),
    "app_errors": ("count", ["code", "service"]),
}


def _doc() -> dict[str, Any]:
    text = resources.files("lakepulse.catalog").joinpath("metrics.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_packaged_catalog_declares_design_section_3() -> None:
    catalog = get_catalog()
    found = {m.name: (m.kind, sorted(m.dimensions)) for m in catalog.metrics}
    assert found == DESIGN_METRICS
    for m in catalog.metrics:
        assert m.unit and m.description
    assert {m.kind for m in catalog.metrics} == set(KINDS)
    assert catalog.metric("prep_time_seconds").source == "prep_time"
    assert (
        catalog.metric("prep_time_seconds").bucket_count
        == len(catalog.metric("prep_time_seconds").buckets) + 1
    )
    assert catalog.metric("orders_completed").where == "properties.status = 'delivered'"


def test_load_from_a_path_equals_packaged(tmp_path) -> None:
    path = tmp_path / "metrics.toml"
    path.write_text(resources.files("lakepulse.catalog").joinpath("metrics.toml").read_text())
    assert load_catalog(path) == get_catalog()


def test_unknown_metric_lookup_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        get_catalog().metric("nope")


def _mutated(change) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    change(doc)
    return doc


def _metric(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["metric"] if m["name"] == name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _metric(d, "events")["dimensions"].append("planet"), "unknown dimension 'planet'"),
        (lambda d: _metric(d, "events").__setitem__("kind", "median"), "unknown kind 'median'"),
        (lambda d: d["metric"].append(dict(_metric(d, "events"))), "'events' is declared twice"),
        (lambda d: _metric(d, "gross_sales").pop("value"), "kind 'sum' needs a `value`"),
        (lambda d: _metric(d, "events").__setitem__("value", "1"), "a count has no `value`"),
        (lambda d: _metric(d, "orders_placed")["dimensions"].append("item_id"), "needs explode = 'items'"),
        (lambda d: _metric(d, "prep_time_seconds").__setitem__("buckets", [5, 3]), "strictly ascending"),
        (lambda d: _metric(d, "gross_sales").__setitem__("buckets", [1]), "only distributions"),
        (lambda d: _metric(d, "events").__setitem__("source", "kafka"), "unknown source 'kafka'"),
        (lambda d: _metric(d, "events").__setitem__("colour", "red"), "unknown keys \\['colour'\\]"),
        (lambda d: _metric(d, "events").__setitem__("name", "Events!"), "lower snake_case"),
        (lambda d: _metric(d, "events").__setitem__("unit", ""), "non-empty `unit`"),
        (lambda d: _metric(d, "prep_time_seconds").__setitem__("dimensions", ["country"]), "take no dim"),
        (lambda d: d["dimensions"]["country"].pop("expr"), "needs a non-empty `expr`"),
        (lambda d: d.__setitem__("metric", []), "declares no"),
    ],
)
def test_invalid_catalogs_fail_with_a_clear_error(change, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(_mutated(change))


def test_invalid_toml_is_a_catalog_error(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[metric]\nname=")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(path)
