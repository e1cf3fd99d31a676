"""Rule types over a count or a metric of one window: threshold, ratio, absence, and consecutive
checks.
"""

from __future__ import annotations

from typing import Any

from rules.model import (
    AbsenceRule,
    Condition,
    ConsecutiveRule,
    RatioRule,
    ThresholdRule,
)
from rules.notify.values import Unit, shown
from rules.query import (
    Window,
    actions,
    counted,
    field_value,
    grouped,
    time_range,
)
from rules.ruletype import Bounded, RuleType, for_group, metric_aggs, metric_unit, metric_value


class Threshold(Bounded[ThresholdRule]):
    name = "threshold"

    def leaf(self, rule: ThresholdRule, window: Window) -> dict[str, Any]:
        return metric_aggs(rule.aggregate)

    def value(self, rule: ThresholdRule, bucket: dict[str, Any], total: int) -> float:
        measured = metric_value(rule.aggregate, bucket, total)
        return 0.0 if measured is None else measured

    def recovery(self, rule: ThresholdRule) -> Condition | None:
        return rule.recovery

    def unit(self, rule: ThresholdRule) -> Unit:
        return metric_unit(rule.aggregate)




class Ratio(Bounded[RatioRule]):
    name = "ratio"

    def leaf(self, rule: RatioRule, window: Window) -> dict[str, Any]:
        return {"numerator": counted(rule, {"filter": {"query_string": {"query": rule.numerator}}})}

    def value(self, rule: RatioRule, bucket: dict[str, Any], total: int) -> float:
        if total == 0 or total < rule.min_events or "numerator" not in bucket:
            return 0.0
        numerator = bucket["numerator"]
        return actions(numerator, numerator["doc_count"]) / total

    def recovery(self, rule: RatioRule) -> Condition | None:
        return rule.recovery

    def unit(self, rule: RatioRule) -> Unit:
        return "ratio"




class Absence(RuleType[AbsenceRule]):
    name = "absence"

    def request(self, rule: AbsenceRule, window: Window) -> dict[str, Any]:
        if not rule.group_by:
            return grouped(rule, window, {})
        # Groups seen over the previous window too, so a group that falls silent is noticed.
        wide = Window(window.start - (window.end - window.start), window.end)
        current = {"current": counted(rule, {"filter": time_range(rule, window.start, None)})}
        return grouped(rule, wide, current)

    def value(self, rule: AbsenceRule, bucket: dict[str, Any], total: int) -> float:
        if "current" in bucket:
            return float(actions(bucket["current"], bucket["current"]["doc_count"]))
        return float(total)

    def breached(self, rule: AbsenceRule, value: float) -> bool:
        return value < rule.minimum

    def threshold(self, rule: AbsenceRule) -> float | None:
        return float(rule.minimum)

    def message(self, rule: AbsenceRule) -> str:
        return "{rule} is {state}: {value} events in the window, fewer than {threshold}" + for_group(rule)

    def resolved_message(self, rule: AbsenceRule) -> str:
        return "{rule} resolved: {value} events in the window" + for_group(rule)




class Consecutive(RuleType[ConsecutiveRule]):
    """The latest checks per group, newest first: how many in a row failed (a positive value) or
    passed (a negative one). Breached at ``failures`` failed in a row, recovered at ``successes``
    passed in a row, so one good check amid an outage does not resolve it, nor one bad check fire it."""

    name = "consecutive"

    def leaf(self, rule: ConsecutiveRule, window: Window) -> dict[str, Any]:
        return {"latest": {"top_hits": {"size": max(rule.failures, rule.successes),
                                        "sort": [{rule.order_by: {"order": "desc"}}], "_source": [rule.field]}}}

    def value(self, rule: ConsecutiveRule, bucket: dict[str, Any], total: int) -> float:
        hits = bucket.get("latest", {}).get("hits", {}).get("hits", [])
        states = [bool(field_value(hit["_source"], rule.field)) for hit in hits]
        if not states:
            return 0.0
        run = next((i for i, state in enumerate(states) if state != states[0]), len(states))
        return float(-run if states[0] else run)

    def breached(self, rule: ConsecutiveRule, value: float) -> bool:
        return value >= rule.failures

    def recovered(self, rule: ConsecutiveRule, value: float) -> bool:
        return value <= -rule.successes

    def threshold(self, rule: ConsecutiveRule) -> float | None:
        return float(rule.failures)

    def shown_value(self, rule: ConsecutiveRule, value: float, event: dict[str, Any] | None) -> str:
        """How many checks in a row, failed or passed: the state says which (never "-2")."""
        return shown("count", abs(value))

    def message(self, rule: ConsecutiveRule) -> str:
        return "{rule} is {state}: {value} checks failed in a row (bound {threshold})" + for_group(rule)

    def resolved_message(self, rule: ConsecutiveRule) -> str:
        return "{rule} resolved: {value} checks passed in a row" + for_group(rule)
