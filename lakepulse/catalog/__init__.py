"""The metric catalog: each metric declared once; Pinot tables and Trino views derive from it."""

from lakepulse.catalog.model import (
    KINDS,
    Catalog,
    CatalogError,
    Dimension,
    Metric,
    get_catalog,
    load_catalog,
    parse_catalog,
)

__all__ = [
    "KINDS",
    "Catalog",
    "CatalogError",
    "Dimension",
    "Metric",
    "get_catalog",
    "load_catalog",
    "parse_catalog",
]
