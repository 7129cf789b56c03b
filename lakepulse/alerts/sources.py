"""Where alert rules come from, and applying the current list to a running evaluator.

A `RuleSource` is any callable returning the full current list of rules. The alert service polls it
every `rules_poll_s` and applies what changed without a restart. A source returns every rule or raises:
a partial list would read as deleted rules and resolve their breaches. A failed poll keeps the rules
already in force. `DatabaseRuleSource` (the default) reads every tenant's enabled rules from the
configuration database, where the API writes them; `FileRuleSource` reads a JSON file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from pydantic import ValidationError

from lakepulse.alerts.rules import AlertEvent, Evaluator, Rule, keep_minutes, load_rules
from lakepulse.config import models
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.system import enabled_rules

log = logging.getLogger("lakepulse.alerts")

LOGGED_IDS: Final = 20  # a reload names this many rule ids (every tenant's rules can be thousands)


class RuleSource(Protocol):
    def __call__(self) -> list[Rule]:
        """Every rule currently defined; raises when they cannot be read."""
        ...


@dataclass
class FileRuleSource:
    """Rules from a JSON file (`load_rules`). No file means no rules, but a file that disappears after it
    was read is a failed read: editors that save by delete-and-write would otherwise resolve every breach
    and fire it again. Write `[]` to remove every rule."""

    path: Path
    seen: bool = field(default=False, init=False)

    def __call__(self) -> list[Rule]:
        if self.seen and not self.path.exists():
            raise FileNotFoundError(f"rules file {self.path} disappeared; keeping the rules read before")
        rules = load_rules(self.path)
        self.seen = self.seen or self.path.exists()
        return rules

    def __str__(self) -> str:
        return f"the file {self.path}"


def rule_of(row: models.AlertRule) -> Rule:
    """The evaluator's rule for a stored one: its id and tenant, a webhook URL as its channel (none: the alerts
    topic only), an anomaly rule's unused threshold as 0. Raises ValidationError when the evaluator cannot take it."""
    return Rule(id=str(row.id), name=row.name, tenant_id=row.tenant_id, metric=row.metric,
                dimensions=dict(row.dimensions), condition=row.condition,  # type: ignore[arg-type]
                threshold=row.threshold if row.threshold is not None else 0.0, window_minutes=row.window_minutes,
                baseline_minutes=row.baseline_minutes, channel=row.webhook_url or "kafka")


@dataclass
class DatabaseRuleSource:
    """Every tenant's enabled rules from the configuration database (`lakepulse.config.system.enabled_rules`):
    a rule created, changed, disabled or deleted through the API is in force from the next poll. A failed read
    raises. A stored rule the evaluator cannot take (its metric has left the catalog since) is left out with a
    warning, as a deleted one would be: one such row must not hold back every other tenant's changes."""

    db: ConfigDatabase
    warned: set[str] = field(default_factory=set, init=False)  # ids of rules left out (warned once each)

    def __call__(self) -> list[Rule]:
        rules: list[Rule] = []
        with self.db.session() as session:
            for row in enabled_rules(session):
                try:
                    rules.append(rule_of(row))
                except ValidationError as exc:
                    if str(row.id) not in self.warned:
                        self.warned.add(str(row.id))
                        log.warning("alert rule %s of %s left out: %s", row.id, row.tenant_id,
                                    "; ".join(e["msg"] for e in exc.errors()))
        return rules

    def __str__(self) -> str:
        return "the configuration database"


@dataclass(frozen=True)
class Reload:
    """What applying a new rule list did."""

    events: list[AlertEvent]  # resolves of breaches whose rule was deleted or redefined
    needs_replay: bool  # a new metric or a longer window: rows the table never kept are needed


def reload_rules(source: RuleSource, evaluator: Evaluator) -> Reload | None:
    """Read `source` and apply it to `evaluator`; None when nothing changed or the read failed (logged)."""
    try:
        rules = source()
    except Exception:  # any failure of any source (file, database) must leave alerting running as it was
        log.exception("reading alert rules failed; keeping the %d rules in force", len(evaluator.rules))
        return None
    if rules == evaluator.rules:
        return None
    before = {r.metric for r in evaluator.rules}, keep_minutes(evaluator.rules)
    try:
        events = evaluator.apply_rules(rules)
    except ValueError as exc:
        log.error("alert rules refused (%s); keeping the %d rules in force", exc, len(evaluator.rules))
        return None
    ids = sorted(r.id for r in rules)
    more = f" and {len(ids) - LOGGED_IDS} more" if len(ids) > LOGGED_IDS else ""
    log.info("alert rules now %d: %s%s", len(rules), ", ".join(ids[:LOGGED_IDS]) or "none", more)
    after = {r.metric for r in evaluator.rules}, keep_minutes(evaluator.rules)
    return Reload(events, needs_replay=not after[0] <= before[0] or after[1] > before[1])
