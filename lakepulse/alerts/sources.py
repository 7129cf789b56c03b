"""Where alert rules come from, and applying the current list to a running evaluator.

A `RuleSource` is any callable returning the full current list of rules. The alert service polls it
every `rules_poll_s` and applies what changed without a restart. A source returns every rule or raises:
a partial list would read as deleted rules and resolve their breaches. A failed poll keeps the rules
already in force. `FileRuleSource` reads a JSON file; a database source, with the same protocol, can
replace it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lakepulse.alerts.rules import AlertEvent, Evaluator, Rule, keep_minutes, load_rules

log = logging.getLogger("lakepulse.alerts")


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
    log.info("alert rules now %d: %s", len(rules), ", ".join(sorted(r.id for r in rules)) or "none")
    after = {r.metric for r in evaluator.rules}, keep_minutes(evaluator.rules)
    return Reload(events, needs_replay=not after[0] <= before[0] or after[1] > before[1])
