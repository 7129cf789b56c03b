"""Alerts on the speed layer's minute rows: threshold rules, once-per-breach firing, resolve, anomaly flag."""

from lakepulse.alerts.rules import AlertEvent, Evaluator, MinuteTable, Rule, is_anomaly, load_rules

__all__ = ["AlertEvent", "Evaluator", "MinuteTable", "Rule", "is_anomaly", "load_rules"]
