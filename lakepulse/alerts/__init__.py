"""Alerts on the speed layer's minute rows: threshold rules, once-per-breach firing, resolve, anomaly flag."""

from lakepulse.alerts.rules import AlertEvent, Evaluator, MinuteTable, Rule, is_anomaly, load_rules
from lakepulse.alerts.sources import FileRuleSource, RuleSource, reload_rules
from lakepulse.alerts.webhooks import check_webhook_url

__all__ = ["AlertEvent", "Evaluator", "FileRuleSource", "MinuteTable", "Rule", "RuleSource", "check_webhook_url",
           "is_anomaly", "load_rules", "reload_rules"]
