"""Prometheus series of the rule runner, in a registry of its own (one per runner)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RunnerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cycle_duration = Histogram("regwatch_rule_cycle_duration_seconds",
                                        "Duration of one rule cycle: claim, one search, transitions, notifications",
                                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.cycle_failures = Counter("regwatch_rule_cycle_failures", "Rule cycles that failed (Elasticsearch away)",
                                      registry=r)
        self.evaluations = Counter("regwatch_rule_evaluations", "Rule windows evaluated", ["rule"], registry=r)
        self.transitions = Counter("regwatch_rule_transitions", "Alert state changes", ["rule", "state"], registry=r)
        self.notifications = Counter("regwatch_notifications", "Notification attempts by outcome",
                                     ["outcome"], registry=r)
        self.idle_wakeups = Counter("regwatch_rule_idle_wakeups", "Wake-ups with nothing due (no request sent)",
                                    registry=r)
        self.exposure = Histogram("regwatch_notification_exposure_seconds",
                                  "From a notification's send to its outcome recorded: a crash in between re-sends it",
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10), registry=r)
        self.firing = Gauge("regwatch_alerts_firing", "Alerts firing now, per rule", ["rule", "severity"], registry=r)
        self.rule_failures = Counter("regwatch_rule_failures", "Rule evaluations that failed (tried again next cycle)",
                                     ["rule"], registry=r)
        self.notifier_failures = Counter("regwatch_notifier_failures",
                                         "Failed sends per notifier; retryable=false ones are dropped, not retried",
                                         ["target", "retryable"], registry=r)
        self.notifier_failing = Gauge("regwatch_notifier_failing",
                                      "1 while a notifier has had no success for rules.notifier_failing_after_s",
                                      ["target"], registry=r)

    def set_firing(self, alerts: list[dict[str, Any]], severities: Mapping[str, str]) -> None:
        """Every rule's firing count, 0 included (a series that vanished reads as 'no data', not 0)."""
        counts = dict.fromkeys(severities, 0)
        for alert in alerts:
            counts[alert["rule"]] = counts.get(alert["rule"], 0) + 1
        for rule, count in counts.items():
            self.firing.labels(rule, severities.get(rule, "warning")).set(count)
