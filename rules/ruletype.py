"""The rule-type protocol: what a rule type asks Elasticsearch, what it makes of the answer, and
how a notification words it; and the base of the types with a ``condition`` bound.

Each concrete type (:mod:`rules.counts`, :mod:`rules.series`, :mod:`rules.occurrences`) is a
small class over the rule model it reads; :mod:`rules.types` registers them by name.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from rules.lifecycle import Lifecycle, Stateful
from rules.model import (
    Aggregate,
    AnomalyRule,
    Condition,
    RatioRule,
    RuleBase,
    SpikeRule,
    ThresholdRule,
)
from rules.notify.values import Unit, shown
from rules.query import (
    Measurement,
    Window,
    grouped,
    totals,
)

R = TypeVar("R", bound=RuleBase)

class RuleType(Generic[R]):
    """The protocol, over the rule model ``R`` it reads. Defaults fit a rule with a ``condition``
    evaluated on counts per window, whose alerts have a state (:class:`~rules.lifecycle.Stateful`)."""

    name: ClassVar[str] = ""
    lifecycle: ClassVar[Lifecycle] = Stateful()

    def request(self, rule: R, window: Window) -> dict[str, Any]:
        return grouped(rule, window, self.leaf(rule, window))

    def leaf(self, rule: R, window: Window) -> dict[str, Any]:
        """Sub-aggregations a value is computed from (per group)."""
        return {}

    def measure(self, rule: R, response: dict[str, Any], window: Window) -> list[Measurement]:
        return totals(rule, response, self.value)

    def value(self, rule: R, bucket: dict[str, Any], total: int) -> float:
        return float(total)

    def breached(self, rule: R, value: float) -> bool:
        raise NotImplementedError

    def recovered(self, rule: R, value: float) -> bool:
        return not self.breached(rule, value)

    def threshold(self, rule: R) -> float | None:
        return None

    # -- how a notification words it (the payload keeps the raw numbers) --

    def unit(self, rule: R) -> Unit:
        """What the value is: a count by default."""
        return "count"

    def shown_value(self, rule: R, value: float, event: dict[str, Any] | None) -> str:
        """The value as a message shows it, in the rule's unit (8.0 -> "8", 0.401 -> "40.1 %")."""
        return shown(self.unit(rule), value)

    def shown_group(self, rule: R, group: str, event: dict[str, Any] | None) -> str:
        """The group as a message names it."""
        return group

    def message(self, rule: R) -> str:
        """The firing message of a rule that sets no ``message``."""
        return "{rule} is {state}: {value} (bound {threshold})" + for_group(rule)

    def resolved_message(self, rule: R) -> str:
        """The resolution message of a rule that sets no ``resolved_message``."""
        return "{rule} resolved: {value} (bound {threshold})" + for_group(rule)

    def windows(self, rule: R, last_end: float, end: float, catch_up: int) -> list[Window]:
        """The windows due now: each one missed since ``last_end`` (at most ``catch_up``), once."""
        ends: list[float] = []
        step = last_end + rule.interval
        while step < end and len(ends) < catch_up - 1:
            ends.append(step)
            step += rule.interval
        ends.append(end)
        return [Window(e - rule.window, e) for e in ends[-catch_up:]]

    def window_at(self, rule: R, end: float) -> Window:
        """The window a backtest evaluates at ``end``."""
        return Window(end - rule.window, end)


def for_group(rule: RuleBase) -> str:
    return " for {group}" if rule.group_by else ""


def template_literal(text: str) -> str:
    """``text`` inside a message template, its braces as text."""
    return text.replace("{", "{{").replace("}", "}}")


def metric_unit(aggregate: Aggregate) -> Unit:
    """The unit of an aggregate: counts for count and cardinality, nanoseconds over ECS
    ``event.duration``, a ratio over an ECS ``*.pct`` field (0 to 1), else a plain number."""
    if aggregate.function in ("count", "cardinality"):
        return "count"
    if aggregate.field == "event.duration":
        return "duration_ns"
    if aggregate.field is not None and aggregate.field.endswith(".pct"):
        return "ratio"
    return "number"


def metric_aggs(aggregate: Aggregate) -> dict[str, Any]:
    """The sub-aggregation computing ``aggregate`` (none for a count)."""
    if aggregate.function == "count":
        return {}
    if aggregate.function == "percentile":
        return {"value": {"percentiles": {"field": aggregate.field, "percents": [aggregate.percentile]}}}
    return {"value": {aggregate.function: {"field": aggregate.field}}}


def metric_value(aggregate: Aggregate, bucket: dict[str, Any], total: int) -> float | None:
    """A bucket's count or metric; None where the metric has no value (no event had the field)."""
    if aggregate.function == "count":
        return float(total)
    metric = bucket.get("value")  # absent when no index matched at all
    if metric is None:
        return None
    raw = next(iter(metric["values"].values())) if "values" in metric else metric["value"]
    return float(raw) if raw is not None else None


C = TypeVar("C", ThresholdRule, RatioRule, SpikeRule, AnomalyRule)
S = TypeVar("S", SpikeRule, AnomalyRule)


class Bounded(RuleType[C]):
    """A rule with a ``condition`` (and, where the model has one, a ``recovery`` bound)."""

    def breached(self, rule: C, value: float) -> bool:
        return rule.condition.holds(value)

    def recovery(self, rule: C) -> Condition | None:
        return None

    def recovered(self, rule: C, value: float) -> bool:
        recovery = self.recovery(rule)
        return recovery.holds(value) if recovery is not None else not self.breached(rule, value)

    def threshold(self, rule: C) -> float | None:
        return rule.condition.value
