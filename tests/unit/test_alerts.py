"""Alert rules: window values, once-per-breach firing and resolve, the anomaly flag, rule validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lakepulse.alerts import Evaluator, Rule, is_anomaly, load_rules
from lakepulse.alerts.rules import MINUTE_MS, MinuteTable, window_value

T0 = 1_800_000_000_000 // MINUTE_MS * MINUTE_MS


def row(minute: int, count: int, total: float | None = None, updated: int = 1, tenant: str = "t1",
        metric: str = "orders_placed", dims: dict[str, str] | None = None) -> dict:
    dims = dims if dims is not None else {"channel": "app"}
    return {"tenant_id": tenant, "metric": metric, "dims_key": "|".join(f"{k}={v}" for k, v in dims.items()),
            "dims": json.dumps(dims), "window_start": T0 + minute * MINUTE_MS, "count": count,
            "sum": total, "updated_at": updated}


def feed(ev: Evaluator, *rows: dict) -> list:
    changed = {s for r in rows if (s := ev.table.upsert(r)) is not None}
    return ev.evaluate(changed)


def test_fires_once_per_breach_and_resolves() -> None:
    ev = Evaluator([Rule(id="r1", metric="orders_placed", condition="gt", threshold=5, window_minutes=2)])
    assert feed(ev, row(0, 2)) == []
    fired = feed(ev, row(1, 4))  # 2 + 4 > 5
    assert [(e.status, e.value) for e in fired] == [("firing", 6.0)]
    assert feed(ev, row(1, 9, updated=2)) == []  # still breached: no second firing
    resolved = feed(ev, row(2, 1), row(3, 1))  # window (2, 3) = 2
    assert [(e.status, e.value, e.id) for e in resolved] == [("resolved", 2.0, fired[0].id)]
    again = feed(ev, row(4, 7))
    assert [e.status for e in again] == ["firing"] and again[0].id != fired[0].id


def test_older_version_of_a_row_never_wins() -> None:
    table = MinuteTable(keep_minutes=10)
    table.upsert(row(0, 5, updated=10))
    assert table.upsert(row(0, 1, updated=3)) is None
    rule = Rule(id="r", metric="orders_placed", condition="gt", threshold=0)
    assert window_value(table, rule, "t1", T0) == 5.0


def test_dimension_filter_tenant_scope_and_average() -> None:
    rule = Rule(id="r", metric="food_rating", tenant_id="t2", condition="lt", threshold=3.0)
    ev = Evaluator([rule])
    rows = [row(0, 2, 9.0, metric="food_rating", dims={}), row(0, 4, 4.0, tenant="t2", metric="food_rating",
                                                          dims={})]
    events = feed(ev, *rows)
    assert [(e.tenant_id, e.value) for e in events] == [("t2", 1.0)]
    table = MinuteTable(keep_minutes=10)
    table.upsert(row(0, 3, dims={"channel": "app"}))
    table.upsert(row(0, 4, dims={"channel": "web"}))
    web = Rule(id="w", metric="orders_placed", dimensions={"channel": "web"}, condition="gt", threshold=0)
    assert window_value(table, web, "t1", T0) == 4.0


def test_anomaly_flag_beyond_two_sigma() -> None:
    baseline = [10, 11, 9, 10, 12, 8, 10]
    assert not is_anomaly(12.0, baseline)  # mean 10, sigma ~1.2
    assert is_anomaly(20, baseline)
    assert not is_anomaly(50, [1, 2])  # too short a baseline to judge
    rule = Rule(id="a", metric="orders_placed", condition="anomaly", baseline_minutes=10)
    ev = Evaluator([rule])
    assert feed(ev, *[row(i, c) for i, c in enumerate(baseline)]) == []
    fired = feed(ev, row(len(baseline), 40))
    assert [(e.status, e.anomaly) for e in fired] == [("firing", True)]
    assert fired[0].baseline_mean == pytest.approx(10.0)


def test_rules_file_validation(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"id": "x", "metric": "gross_sales", "condition": "gte", "threshold": 100,
                                 "channel": "http://127.0.0.1:1/hook"}]))
    (rule,) = load_rules(path)
    assert rule.webhook == "http://127.0.0.1:1/hook" and rule.window_minutes == 1
    assert load_rules(tmp_path / "missing.json") == []
    with pytest.raises(ValidationError):
        Rule(id="d", metric="active_users", condition="gt", threshold=1)  # sketches are not summable
    with pytest.raises(ValidationError):
        Rule(id="n", metric="no_such_metric", condition="gt", threshold=1)
