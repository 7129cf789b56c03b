"""Pure alerting logic: rules, the latest minute rows, window values, breach state and the anomaly flag.

A rule's value over `window_minutes` is computed from the newest minute seen for its (tenant, metric):
counts and sums add; averages and distributions are sum/count. Rows arrive as upserts (update mode
re-emits a minute as it grows), so the table keeps the latest row per primary key. A (rule, tenant)
fires when its value first breaches, never again while it stays breached, and resolves when it recovers.

Firing and resolving are two events of one breach: they share its `breach_id` and each has an `id` of its
own, the webhook's Idempotency-Key. Both are derived from state, not clocks: breach n of rule r for
tenant t is `r:t:n`, its events `r:t:n:firing` and `r:t:n:resolved`. The counter n lives in the persisted
state, so a crash before the state is saved re-sends the same keys; the minute a breach began is not part of
the key, since a value that bounces within one minute (an average as its minute grows, a threshold edited
back and forth) would otherwise give a second breach the first one's keys.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from lakepulse.catalog import get_catalog

MINUTE_MS = 60_000
Condition = Literal["gt", "lt", "gte", "lte", "anomaly"]
# Why an event happened: the rule breached, it recovered, or its rule was deleted or redefined while firing.
Reason = Literal["breached", "recovered", "rule_deleted", "rule_changed"]


class Rule(BaseModel):
    """One alert rule; `tenant_id` "*" evaluates every tenant separately."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = ""  # shown in events and kept in alert history (a database rule's name; files may omit it)
    metric: str
    tenant_id: str = "*"
    dimensions: dict[str, str] = Field(default_factory=dict)  # rows must carry these values
    condition: Condition
    threshold: float = 0.0
    window_minutes: int = Field(default=1, ge=1, le=1440)
    channel: str = "kafka"  # "kafka" (alerts topic only) or a webhook URL (topic and webhook)
    baseline_minutes: int = Field(default=30, ge=3, le=1440)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        try:
            metric = get_catalog().metric(name)
        except KeyError as exc:
            raise ValueError(str(exc)) from None
        if metric.kind == "distinct":
            raise ValueError(f"{name} is a sketch metric; alert rules take count/sum/average/distribution")
        return name

    @property
    def webhook(self) -> str | None:
        return webhook_of(self.channel)


def webhook_of(channel: str) -> str | None:
    """The webhook URL of a channel ("kafka" has none)."""
    # Schemes are case-insensitive (the API accepts HTTPS://...): such a URL must not silently go undelivered.
    return channel if channel.lower().startswith(("http://", "https://")) else None


def keep_minutes(rules: Iterable[Rule]) -> int:
    """Minutes of rows the rules need: the longest window plus its baseline, and a little slack."""
    return max([r.window_minutes + r.baseline_minutes for r in rules], default=1) + 2


def load_rules(path: Path) -> list[Rule]:
    """Rules from a JSON file (a list of rule objects); none when the file does not exist."""
    if not path.exists():
        return []
    rules = [Rule.model_validate(r) for r in json.loads(path.read_text())]
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate rule ids in {path}")
    return rules


@dataclass
class MinuteTable:
    """Latest minute row per primary key, grouped by (tenant, metric) series, pruned by age."""

    keep_minutes: int
    series: dict[tuple[str, str], dict[tuple[str, int], dict[str, Any]]] = field(default_factory=dict)
    newest: dict[tuple[str, str], int] = field(default_factory=dict)

    def upsert(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """Apply one metrics.minute value (Pinot encoding); returns its (tenant, metric) or None if stale."""
        name = (row["tenant_id"], row["metric"])
        key = (row["dims_key"], int(row["window_start"]))
        rows = self.series.setdefault(name, {})
        old = rows.get(key)
        if old is not None and int(old.get("updated_at", 0)) > int(row.get("updated_at", 0)):
            return None  # same rule as Pinot's comparison column: an older version never wins
        rows[key] = row
        self.newest[name] = max(self.newest.get(name, key[1]), key[1])
        return name

    def prune(self) -> None:
        """Forget minutes older than `keep_minutes` before the newest of their series."""
        for name, rows in self.series.items():
            oldest = self.newest[name] - self.keep_minutes * MINUTE_MS
            for key in [k for k in rows if k[1] < oldest]:
                del rows[key]

    def rows(self, tenant: str, metric: str) -> dict[tuple[str, int], dict[str, Any]]:
        return self.series.get((tenant, metric), {})


def _dims_of(row: dict[str, Any]) -> dict[str, str]:
    dims = row.get("dims")
    if isinstance(dims, str):
        dims = json.loads(dims) if dims else {}
    return dims or {}


def window_value(table: MinuteTable, rule: Rule, tenant: str, end_minute: int) -> float | None:
    """The rule's value over the `window_minutes` minutes ending at `end_minute` (None: no data)."""
    kind = get_catalog().metric(rule.metric).kind
    start = end_minute - (rule.window_minutes - 1) * MINUTE_MS
    count, total, seen = 0, 0.0, False
    for (_dims_key, minute), row in table.rows(tenant, rule.metric).items():
        if not start <= minute <= end_minute:
            continue
        dims = _dims_of(row)
        if any(dims.get(k) != v for k, v in rule.dimensions.items()):
            continue
        seen = True
        count += int(row.get("count") or 0)
        total += float(row.get("sum") or 0.0)
    if not seen:
        return 0.0 if kind in ("count", "sum") else None
    if kind == "count":
        return float(count)
    if kind == "sum":
        return total
    return total / count if count else None


def is_anomaly(value: float, baseline: Iterable[float], sigmas: float = 2.0, min_points: int = 5) -> bool:
    """True when `value` lies beyond `sigmas` standard deviations of the trailing baseline's mean."""
    points = list(baseline)
    if len(points) < min_points:
        return False
    mean = statistics.fmean(points)
    std = statistics.pstdev(points)
    if std == 0:
        return not math.isclose(value, mean)
    return abs(value - mean) > sigmas * std


def breached(rule: Rule, value: float | None, anomaly: bool) -> bool:
    """Whether a value breaches the rule's condition."""
    if rule.condition == "anomaly":
        return anomaly
    if value is None:
        return False
    return {
        "gt": value > rule.threshold,
        "gte": value >= rule.threshold,
        "lt": value < rule.threshold,
        "lte": value <= rule.threshold,
    }[rule.condition]


@dataclass(frozen=True)
class AlertEvent:
    """A firing or a resolve, as written to the alerts topic and posted to the webhook."""

    id: str  # this event's idempotency key: the breach id and the status
    breach_id: str  # shared by a breach's firing and its resolve: rule, tenant and the breach's number
    rule_id: str
    tenant_id: str
    metric: str
    status: Literal["firing", "resolved"]
    reason: Reason
    value: float | None
    threshold: float
    condition: str
    window_minutes: int
    window_end_ms: int
    anomaly: bool
    baseline_mean: float | None
    baseline_std: float | None
    dimensions: dict[str, str]
    channel: str
    rule_name: str = ""  # the rule's name as it fired (history keeps it when the rule is deleted)

    @property
    def webhook(self) -> str | None:
        return webhook_of(self.channel)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def _check_unique(rules: list[Rule]) -> None:
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate rule ids: {sorted({i for i in ids if ids.count(i) > 1})}")


def _identity(rule: Rule) -> tuple[object, ...]:
    """What a breach is about: a change here closes an open breach; name, threshold, window and baseline do not."""
    return rule.metric, rule.tenant_id, sorted(rule.dimensions.items()), rule.condition, rule.channel


class Evaluator:
    """Breach state per (rule, tenant); `state` is a plain dict so it can be persisted between runs.

    A state entry is {"status": "ok"|"firing", "breaches": n} plus, while firing, "since" (the minute the
    breach began), "breach_id" and "rule" (the rule as it fired, to settle the breach should the rule be
    gone after a restart). Entries of deleted rules keep their counter so a rule re-created under the same
    id never reuses a key.
    """

    def __init__(self, rules: list[Rule], state: dict[str, dict[str, Any]] | None = None) -> None:
        self.rules: list[Rule] = []
        self.state: dict[str, dict[str, Any]] = state if state is not None else {}
        self.table = MinuteTable(keep_minutes=1)
        self._use(rules)

    def _use(self, rules: list[Rule]) -> None:
        _check_unique(rules)
        self.rules = list(rules)
        self.table.keep_minutes = keep_minutes(rules)
        metrics = {r.metric for r in rules}
        for name in [n for n in self.table.series if n[1] not in metrics]:
            del self.table.series[name], self.table.newest[name]

    def apply_rules(self, rules: list[Rule]) -> list[AlertEvent]:
        """Switch to `rules`, a RuleSource's full current list; returns resolves of breaches it closes.

        New rules, and new thresholds, windows and baselines, apply from the next evaluation (the caller
        re-evaluates known series with `evaluate_all`); an open breach carries on and resolves when the rule
        as it now reads has recovered. An open breach whose rule was deleted, or whose metric, dimensions,
        condition, tenant scope or channel changed, is resolved at once, with reason "rule_deleted" or
        "rule_changed", to the channel it fired to: otherwise that receiver would keep an incident open
        forever, since nothing would ever resolve it. The changed rule then starts afresh (its next breach
        has a new id).
        """
        _check_unique(rules)
        known = {r.id: r for r in self.rules}
        current = {r.id: r for r in rules}
        events: list[AlertEvent] = []
        for key, entry in sorted(self.state.items()):
            if entry.get("status") != "firing":
                continue
            rule_id, tenant = key.split("|", 1)
            fired = known.get(rule_id) or (Rule.model_construct(**entry["rule"]) if "rule" in entry else None)
            rule = current.get(rule_id)
            if rule is not None and (fired is None or _identity(fired) == _identity(rule)):
                entry["rule"] = rule.model_dump()
                continue
            if fired is not None:
                events.append(self._event(fired, tenant, entry, "resolved",
                                          "rule_deleted" if rule is None else "rule_changed"))
            self.state[key] = {"status": "ok", "breaches": int(entry.get("breaches", 0))}
        self._use(rules)
        return events

    def evaluate_all(self) -> list[AlertEvent]:
        """Re-evaluate every rule on every series in the table (after the rules changed)."""
        return self.evaluate(set(self.table.series))

    def evaluate(self, changed: set[tuple[str, str]]) -> list[AlertEvent]:
        """Re-evaluate the rules touched by changed (tenant, metric) series; returns transitions."""
        events: list[AlertEvent] = []
        for rule in self.rules:
            tenants = {t for (t, m) in changed if m == rule.metric and (t, m) in self.table.series}
            if rule.tenant_id != "*":
                tenants &= {rule.tenant_id}
            for tenant in sorted(tenants):
                event = self._evaluate_one(rule, tenant)
                if event is not None:
                    events.append(event)
        self.table.prune()
        return events

    def _evaluate_one(self, rule: Rule, tenant: str) -> AlertEvent | None:
        end = self.table.newest[(tenant, rule.metric)]
        value = window_value(self.table, rule, tenant, end)
        # The baseline covers only minutes the series has data since (not "zero before it existed").
        first = min(minute for _dims_key, minute in self.table.rows(tenant, rule.metric))
        baseline = [
            v for i in range(1, rule.baseline_minutes + 1)
            if end - i * MINUTE_MS >= first
            and (v := window_value(self.table, rule, tenant, end - i * MINUTE_MS)) is not None
        ]
        anomaly = value is not None and is_anomaly(value, baseline)
        key = f"{rule.id}|{tenant}"
        current = self.state.get(key, {"status": "ok"})
        now_breached = breached(rule, value, anomaly)
        if now_breached == (current["status"] == "firing"):
            return None
        breaches = int(current.get("breaches", 0))
        if now_breached:
            breaches += 1
            entry = {"status": "firing", "breaches": breaches, "since": end,
                     "breach_id": f"{rule.id}:{tenant}:{breaches}", "rule": rule.model_dump()}
            self.state[key] = entry
            return self._event(rule, tenant, entry, "firing", "breached", value, anomaly, baseline)
        self.state[key] = {"status": "ok", "breaches": breaches}
        return self._event(rule, tenant, current, "resolved", "recovered", value, anomaly, baseline)

    def _event(self, rule: Rule, tenant: str, entry: dict[str, Any], status: Literal["firing", "resolved"],
               reason: Reason, value: float | None = None, anomaly: bool = False,
               baseline: list[float] | None = None) -> AlertEvent:
        """The event of a transition of the breach `entry` (a state entry while firing)."""
        # State written before breaches were numbered has no breach id: its firing went out as rule:tenant:since.
        breach_id = entry.get("breach_id") or f"{rule.id}:{tenant}:{entry['since']}"
        end = self.table.newest.get((tenant, rule.metric), int(entry["since"]))
        return AlertEvent(
            id=f"{breach_id}:{status}",
            breach_id=breach_id,
            rule_id=rule.id,
            tenant_id=tenant,
            metric=rule.metric,
            status=status,
            reason=reason,
            value=value,
            threshold=rule.threshold,
            condition=rule.condition,
            window_minutes=rule.window_minutes,
            window_end_ms=end + MINUTE_MS,
            anomaly=anomaly,
            baseline_mean=statistics.fmean(baseline) if baseline else None,
            baseline_std=statistics.pstdev(baseline) if baseline else None,
            dimensions=rule.dimensions,
            channel=rule.channel,
            rule_name=rule.name,
        )
