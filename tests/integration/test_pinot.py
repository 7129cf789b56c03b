"""Pinot answers SQL on the realtime tables created from pinot_tables/, fed through their Kafka topics."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from lakepulse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka", "pinot")]

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 90  # consuming segments are queryable within seconds; JVMs on 2 shared cores are slow

UNIT_MS = {"MILLISECONDS": 1, "SECONDS": 1000, "MINUTES": 60_000, "HOURS": 3_600_000, "DAYS": 86_400_000}


def realtime_tables() -> list[Path]:
    """The pinot_tables/<table>/ directories holding a REALTIME table."""
    return [
        d for d in sorted((REPO / "pinot_tables").glob("*"))
        if (d / "schema.json").exists() and (d / "table.json").exists()
        and json.loads((d / "table.json").read_text())["tableType"].upper() == "REALTIME"
    ]


def time_unit_ms(spec: dict[str, Any]) -> int:
    """Milliseconds per unit of an epoch dateTime field (`1:MILLISECONDS:EPOCH` or `EPOCH|SECONDS`)."""
    if spec["dataType"] == "TIMESTAMP":
        return 1
    fmt = spec["format"].replace("|", ":").split(":")
    if "EPOCH" not in fmt:
        pytest.fail(f"test cannot generate values for dateTime format {spec['format']!r}")
    unit = next((u for u in fmt if u in UNIT_MS), "MILLISECONDS")
    size = int(fmt[0]) if fmt[0].isdigit() else 1
    return UNIT_MS[unit] * size


class RowMaker:
    """Rows for one schema: primary-key columns follow the row number, the rest also the version."""

    def __init__(self, schema: dict[str, Any], table: dict[str, Any], tenant: str) -> None:
        self.tenant = tenant
        self.specs: dict[str, tuple[str, dict[str, Any]]] = {}
        for kind in ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs"):
            for spec in schema.get(kind, []):
                self.specs[spec["name"]] = (kind, spec)
        self.pk: list[str] = schema.get("primaryKeyColumns", [])
        assert "tenant_id" in self.specs, "realtime tables are expected to carry tenant_id"
        transforms = (table.get("ingestionConfig") or {}).get("transformConfigs") or []
        derived = {t["columnName"] for t in transforms}
        # Columns Pinot computes from other fields, and types without a stable JSON form, are not compared.
        self.compared = [
            c for c, (_, spec) in self.specs.items()
            if c not in derived and spec["dataType"] not in ("JSON", "BYTES", "BIG_DECIMAL")
        ]
        self.base_ms = int(time.time() // 60 * 60_000)

    def value(self, column: str, row: int, version: int) -> Any:
        kind, spec = self.specs[column]
        if column == "tenant_id":
            return self.tenant
        n = row if column in self.pk else row * 10 + version
        if kind == "dateTimeFieldSpecs":
            unit = time_unit_ms(spec)
            return (self.base_ms - row * 3_600_000) // unit + (0 if column in self.pk else version)
        dtype = spec["dataType"]
        if dtype in ("INT", "LONG", "TIMESTAMP"):
            v: Any = n + 1 if dtype != "TIMESTAMP" else self.base_ms + n
        elif dtype in ("FLOAT", "DOUBLE"):
            v = (n + 1) * 1.5  # exactly representable as float32 and float64
        elif dtype == "BOOLEAN":
            v = n % 2 == 0
        elif dtype == "BYTES":
            v = f"{n:08x}"  # Pinot reads BYTES from JSON as hex
        elif dtype == "JSON":
            v = {column: n}
        else:
            v = f"{column}-{n}"
        return v if spec.get("singleValueField", True) else [v]

    def row(self, row: int, version: int) -> dict[str, Any]:
        return {c: self.value(c, row, version) for c in self.specs}

    def key(self, row: dict[str, Any]) -> str:
        """Kafka key: the primary key, so every version of a row lands in the same partition."""
        return json.dumps([row[c] for c in self.pk] or [row["tenant_id"]])

    def select_list(self) -> str:
        """Selected columns; TIMESTAMPs cast to epoch millis (their string form depends on the JVM zone)."""
        return ", ".join(
            f'CAST("{c}" AS LONG)' if self.specs[c][1]["dataType"] == "TIMESTAMP" else f'"{c}"'
            for c in self.compared
        )

    def expected(self, rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        return sorted(tuple(normalise(r[c]) for c in self.compared) for r in rows)


def normalise(value: Any) -> str:
    """One comparable form for what we sent and what the broker returns (1 vs 1.0, true vs 'true')."""
    if isinstance(value, list):
        return json.dumps([normalise(v) for v in value])
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(float(value))
    return str(value)


def query(settings: Settings, sql: str) -> tuple[list[list[Any]], list[Any]]:
    """Rows and exceptions of a broker SQL query."""
    body = httpx.post(f"{settings.pinot_broker_url}/query/sql", json={"sql": sql}, timeout=30).json()
    return (body.get("resultTable") or {}).get("rows", []), body.get("exceptions") or []


def stream_topic(table: dict[str, Any]) -> str:
    """The Kafka topic a realtime table consumes."""
    maps = (table.get("ingestionConfig") or {}).get("streamIngestionConfig", {}).get("streamConfigMaps") or [
        table["tableIndexConfig"]["streamConfigs"]
    ]
    return maps[0]["stream.kafka.topic.name"]


def test_pinot_answers_sql_on_realtime_tables(settings: Settings, stack: object) -> None:
    tables = realtime_tables()
    assert tables, "pinot_tables/ holds no REALTIME table"
    for table_dir in tables:
        schema = json.loads((table_dir / "schema.json").read_text())
        table = json.loads((table_dir / "table.json").read_text())
        maker = RowMaker(schema, table, tenant=f"test-{uuid.uuid4().hex[:12]}")
        first, other, update = maker.row(0, 1), maker.row(1, 1), maker.row(0, 2)
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        for row in (first, other, update):
            producer.produce(stream_topic(table), key=maker.key(row), value=json.dumps(row))
        assert producer.flush(30) == 0, "Kafka did not acknowledge every row"

        # Upsert tables keep only the newest version of a primary key; append tables keep all three.
        want = maker.expected([other, update] if table.get("upsertConfig") else [first, other, update])
        sql = (f"SELECT {maker.select_list()} FROM {table['tableName']} "
               f"WHERE tenant_id = '{maker.tenant}' LIMIT 100")
        # Right after a (re)start the broker may still report segments as unavailable: retry, bounded.
        deadline, got, errors = time.monotonic() + WAIT_SECONDS, [], []
        while time.monotonic() < deadline:
            rows, errors = query(settings, sql)
            got = sorted(tuple(normalise(v) for v in r) for r in rows)
            if got == want and not errors:
                break
            time.sleep(1)
        assert not errors, f"{table['tableName']}: query failed: {errors}"
        assert got == want, f"{table['tableName']} after {WAIT_SECONDS}s: got {got}, expected {want}"
