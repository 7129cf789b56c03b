"""Alerts on the speed layer's minute rows: threshold rules, once-per-breach firing, resolve, anomaly flag."""

from lakepulse.alerts.history import DatabaseHistory
from lakepulse.alerts.rules import AlertEvent, Evaluator, MinuteTable, Rule, is_anomaly, load_rules
from lakepulse.alerts.sources import DatabaseRuleSource, FileRuleSource, RuleSource, reload_rules, rule_of
from lakepulse.alerts.webhooks import check_webhook_url

__all__ = ["AlertEvent", "DatabaseHistory", "DatabaseRuleSource", "Evaluator", "FileRuleSource", "MinuteTable", "Rule",
           "RuleSource", "check_webhook_url", "is_anomaly", "load_rules", "reload_rules", "rule_of"]
