"""Alert rules: window values, once-per-breach firing and resolve, the anomaly flag, rule validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lakepulse.alerts import AlertEvent, Evaluator, FileRuleSource, Rule, is_anomaly, load_rules, reload_rules
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
    assert [(e.status, e.value, e.reason) for e in resolved] == [("resolved", 2.0, "recovered")]
    # Two events of one breach: linked by the breach id, each with a key of its own (a receiver honouring
    # the Idempotency-Key would otherwise drop the resolve as a repeat of the firing).
    assert (fired[0].breach_id, fired[0].id) == ("r1:t1:1", "r1:t1:1:firing")
    assert (resolved[0].breach_id, resolved[0].id) == ("r1:t1:1", "r1:t1:1:resolved")
    again = feed(ev, row(4, 7))
    assert [(e.status, e.breach_id, e.id) for e in again] == [("firing", "r1:t1:2", "r1:t1:2:firing")]


def test_a_restart_never_fires_twice_and_resends_the_same_keys() -> None:
    rule = Rule(id="r1", metric="orders_placed", condition="gt", threshold=5)
    ev = Evaluator([rule])
    (fired,) = feed(ev, row(0, 9))
    saved = json.dumps(ev.state)  # what service.py persists after delivering
    restarted = Evaluator([rule], json.loads(saved))
    assert feed(restarted, row(0, 9), row(1, 8)) == []  # the replay and new rows: still the same breach
    (resolved,) = feed(restarted, row(2, 1))
    assert (resolved.id, resolved.breach_id) == ("r1:t1:1:resolved", fired.breach_id)
    # A crash after delivering but before saving: the replay sends the very same key again, so the
    # receiver drops the repeat.
    crashed = Evaluator([rule], json.loads(saved))
    assert [e.id for e in feed(crashed, row(2, 1))] == ["r1:t1:1:resolved"]
    # State saved before breaches were numbered: the breach id is the id its firing went out with.
    older = Evaluator([rule], {"r1|t1": {"status": "firing", "since": T0}})
    assert [(e.id, e.breach_id) for e in feed(older, row(2, 1))] == [(f"r1:t1:{T0}:resolved", f"r1:t1:{T0}")]
    assert [e.id for e in feed(older, row(3, 9))] == ["r1:t1:1:firing"]


def test_a_value_bouncing_within_one_minute_gives_each_breach_its_own_keys() -> None:
    ev = Evaluator([Rule(id="avg", metric="food_rating", condition="lt", threshold=3.0)])
    events = [*feed(ev, row(0, 2, 4.0, updated=1, metric="food_rating", dims={})),  # 2.0: fires
              *feed(ev, row(0, 4, 16.0, updated=2, metric="food_rating", dims={})),  # 4.0: resolves
              *feed(ev, row(0, 8, 20.0, updated=3, metric="food_rating", dims={}))]  # 2.5: fires again
    assert [(e.status, e.id) for e in events] == [
        ("firing", "avg:t1:1:firing"), ("resolved", "avg:t1:1:resolved"), ("firing", "avg:t1:2:firing")]
    assert len({e.window_end_ms for e in events}) == 1  # all in the same minute


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


class MemoryRules:
    """An in-memory RuleSource: the test edits `rules`, or sets `error` to make the next read fail."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = list(rules)
        self.error: Exception | None = None

    def __call__(self) -> list[Rule]:
        if self.error is not None:
            raise self.error
        return list(self.rules)


HOOK_A = "https://a.example.com/hook"
HOOK_B = "https://b.example.com/hook"


def rush(**changes: object) -> Rule:
    return Rule.model_validate({"id": "rush", "metric": "orders_placed", "condition": "gt", "threshold": 5,
                                "window_minutes": 2, "channel": HOOK_A, **changes})


def reload(source: MemoryRules, ev: Evaluator) -> tuple[list[AlertEvent], list[AlertEvent], bool]:
    """What the service does on a poll that finds new rules: apply them, then re-judge the rows kept.
    Returns the resolves the change caused, the evaluation's transitions and whether rows must be replayed."""
    applied = reload_rules(source, ev)
    assert applied is not None, "the rules did not change"
    return applied.events, ev.evaluate_all(), applied.needs_replay


def test_reload_starts_new_rules_on_the_rows_already_kept() -> None:
    source = MemoryRules(rush())
    ev = Evaluator(source())
    assert feed(ev, row(0, 2), row(1, 2)) == []  # 4 over two minutes: under 5
    assert reload_rules(source, ev) is None  # nothing changed
    source.rules.append(Rule(id="slow", metric="orders_placed", condition="lt", threshold=3))
    resolves, evaluated, needs_replay = reload(source, ev)
    assert resolves == [] and not needs_replay
    assert [(e.rule_id, e.status, e.value, e.id) for e in evaluated] == [("slow", "firing", 2.0, "slow:t1:1:firing")]
    assert [r.id for r in ev.rules] == ["rush", "slow"]
    assert [(e.rule_id, e.status) for e in feed(ev, row(2, 9))] == [("rush", "firing"), ("slow", "resolved")]


def test_reload_applies_a_changed_threshold_and_window_to_the_open_breach() -> None:
    source = MemoryRules(rush())
    ev = Evaluator(source())
    (fired,) = feed(ev, row(0, 2), row(1, 4))  # 6 > 5
    source.rules = [rush(threshold=10)]
    resolves, evaluated, needs_replay = reload(source, ev)
    # A new threshold is no new breach: the open one carries on and resolves under the rule as it now reads.
    assert resolves == [] and not needs_replay
    assert [(e.status, e.reason, e.breach_id, e.threshold) for e in evaluated] == [
        ("resolved", "recovered", fired.breach_id, 10.0)]
    source.rules = [rush(threshold=10, window_minutes=3)]
    assert reload(source, ev) == ([], [], True)  # a longer window needs rows the table may have dropped
    source.rules = [rush(threshold=3, window_minutes=1)]  # the last minute alone: 4 > 3
    resolves, evaluated, needs_replay = reload(source, ev)
    assert [(e.status, e.value, e.id) for e in evaluated] == [("firing", 4.0, "rush:t1:2:firing")]
    assert ev.table.keep_minutes == 1 + 30 + 2  # shrinks with the rules


def test_reload_resolves_a_deleted_rules_breach_and_never_reuses_its_keys() -> None:
    source = MemoryRules(rush(), Rule(id="other", metric="gross_sales", condition="gt", threshold=1e9))
    ev = Evaluator(source())
    (fired,) = feed(ev, row(0, 2), row(1, 4))
    source.rules = source.rules[1:]
    resolves, evaluated, needs_replay = reload(source, ev)
    assert [(e.id, e.status, e.reason, e.channel, e.value) for e in resolves] == [
        ("rush:t1:1:resolved", "resolved", "rule_deleted", HOOK_A, None)]
    assert evaluated == [] and not needs_replay
    assert ("t1", "orders_placed") not in ev.table.series  # rows no rule reads are dropped
    source.rules.append(rush())  # the same id again: a new breach, never the old one's keys
    # orders_placed is a new metric again: the service replays its rows before judging it.
    assert reload(source, ev) == ([], [], True)
    assert [e.id for e in feed(ev, row(2, 50))] == ["rush:t1:2:firing"]
    assert fired.id == "rush:t1:1:firing"


def test_reload_closes_a_breach_whose_rule_was_redefined() -> None:
    source = MemoryRules(rush())
    ev = Evaluator(source())
    feed(ev, row(0, 2), row(1, 4))
    source.rules = [rush(channel=HOOK_B)]
    resolves, evaluated, _ = reload(source, ev)
    # The receiver it fired to gets the resolve; the new channel gets a breach of its own.
    assert [(e.id, e.reason, e.channel) for e in resolves] == [("rush:t1:1:resolved", "rule_changed", HOOK_A)]
    assert [(e.id, e.reason, e.channel) for e in evaluated] == [("rush:t1:2:firing", "breached", HOOK_B)]
    source.rules = [rush(channel=HOOK_B, tenant_id="t2")]  # out of scope for t1
    resolves, evaluated, _ = reload(source, ev)
    assert [(e.id, e.reason) for e in resolves] == [("rush:t1:2:resolved", "rule_changed")] and evaluated == []


def test_a_failed_or_invalid_read_keeps_the_rules_in_force() -> None:
    source = MemoryRules(rush())
    ev = Evaluator(source())
    feed(ev, row(0, 2), row(1, 4))
    source.error = ConnectionError("database down")
    assert reload_rules(source, ev) is None
    source.error, source.rules = None, [rush(), rush(threshold=1)]
    assert reload_rules(source, ev) is None  # duplicate ids
    assert ev.rules == [rush()] and ev.state["rush|t1"]["status"] == "firing"


def test_rules_deleted_while_the_service_was_down_are_resolved_on_start() -> None:
    ev = Evaluator([rush()])
    (fired,) = feed(ev, row(0, 2), row(1, 4))
    restarted = Evaluator([], json.loads(json.dumps(ev.state)))  # as service.run starts
    assert restarted.apply_rules([rush()]) == []  # still defined the same way: the breach stays open
    assert restarted.state["rush|t1"]["status"] == "firing"
    (resolved,) = Evaluator([], json.loads(json.dumps(ev.state))).apply_rules([])
    assert (resolved.id, resolved.breach_id, resolved.reason, resolved.channel, resolved.threshold) == (
        "rush:t1:1:resolved", fired.breach_id, "rule_deleted", HOOK_A, 5.0)


def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    source = FileRuleSource(path)
    assert source() == []  # no file ships: no rules
    path.write_text(json.dumps([rush().model_dump()]))
    ev = Evaluator([])
    assert reload_rules(source, ev) is not None and ev.rules == [rush()]
    path.write_text("[{")  # half written
    assert reload_rules(source, ev) is None and ev.rules == [rush()]
    path.unlink()  # an editor's delete-and-write, not a request to drop every rule
    assert reload_rules(source, ev) is None and ev.rules == [rush()]
    path.write_text("[]")
    assert reload_rules(source, ev) is not None and ev.rules == []
