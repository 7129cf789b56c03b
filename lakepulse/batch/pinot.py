"""The speed layer as the batch layer sees it: minute rows from Pinot's broker, and Pinot retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
TABLE = "metrics_minute"
MINUTE_COLUMNS = ("tenant_id", "metric", "dims_key", "dims", "window_start", "count", "sum", "min", "max",
                  "buckets", "hll_sketch", "theta_sketch", "updated_at")
PAGE = timedelta(hours=1)
ROW_LIMIT = 1_000_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def broker_rows(broker_url: str, sql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Rows of a broker SQL answer as dicts; raises on query errors (Pinot reports them in the body)."""
    response = httpx.post(f"{broker_url}/query/sql", json={"sql": sql}, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("exceptions"):
        raise RuntimeError(f"Pinot query failed: {body['exceptions']}")
    table = body.get("resultTable", {})
    names = table.get("dataSchema", {}).get("columnNames", [])
    return [dict(zip(names, row, strict=True)) for row in table.get("rows", [])]


def minute_rows(broker_url: str, start: datetime, end: datetime, tenant_prefix: str = "") -> list[dict[str, Any]]:
    """Every current (upserted) Pinot minute row with window_start in [start, end), an hour per query."""
    rows: list[dict[str, Any]] = []
    # TIMESTAMP columns come back as text in the server's zone; as epoch millis they are unambiguous.
    cols = ", ".join(f'CAST("{c}" AS LONG) AS "{c}"' if c in ("window_start", "updated_at") else f'"{c}"'
                     for c in MINUTE_COLUMNS)
    tenant = f" AND tenant_id LIKE '{tenant_prefix.replace(chr(39), '')}%'" if tenant_prefix else ""
    page_start = start
    while page_start < end:
        page_end = min(page_start + PAGE, end)
        rows += broker_rows(broker_url, f"SELECT {cols} FROM {TABLE} WHERE window_start >= {_ms(page_start)} "
                                        f"AND window_start < {_ms(page_end)}{tenant} LIMIT {ROW_LIMIT}")
        page_start = page_end
    return rows


def retention_days(table: str = TABLE) -> int:
    """Retention of a Pinot table as declared in pinot_tables/ (the checked-in config)."""
    config = json.loads((REPO / "pinot_tables" / table / "table.json").read_text())["segmentsConfig"]
    if config.get("retentionTimeUnit", "DAYS").upper() != "DAYS":
        raise ValueError(f"{table}: retention unit {config['retentionTimeUnit']} not in days")
    return int(config["retentionTimeValue"])


def retention_start(now: datetime | None = None, table: str = TABLE) -> datetime:
    """Oldest minute Pinot still keeps (older ones are, or will be, deleted by its retention manager)."""
    now = now or datetime.now(UTC)
    return (now - timedelta(days=retention_days(table))).replace(second=0, microsecond=0)


def enforce_retention(controller_url: str, table: str = TABLE) -> dict[str, Any]:
    """Make the live table's retention the checked-in one and run Pinot's retention manager now."""
    days = retention_days(table)
    name = f"{table}_REALTIME"
    config = httpx.get(f"{controller_url}/tables/{table}", params={"type": "realtime"}, timeout=30).json()
    live = config.get("REALTIME", {})
    report: dict[str, Any] = {"table": name, "retention_days": days, "updated": False}
    if not live:
        return {**report, "error": "table not found"}
    segments = live.setdefault("segmentsConfig", {})
    if (segments.get("retentionTimeUnit"), str(segments.get("retentionTimeValue"))) != ("DAYS", str(days)):
        segments.update({"retentionTimeUnit": "DAYS", "retentionTimeValue": str(days)})
        httpx.put(f"{controller_url}/tables/{table}", json=live, timeout=30).raise_for_status()
        report["updated"] = True
    run = httpx.get(f"{controller_url}/periodictask/run",
                    params={"taskname": "RetentionManager", "tableName": name}, timeout=30)
    report["retention_manager"] = run.status_code
    return report
