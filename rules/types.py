"""Rule types: what each one asks Elasticsearch and what it makes of the answer.

A rule type is a small class registered by the name rule files use in ``type:`` (as Vector
registers its components, or ElastAlert 2 its rule types). It builds the search of one window,
turns the response into measurements, and says when a value breaches and when it has recovered;
its ``lifecycle`` (:mod:`rules.lifecycle`) says what a measurement does to the rule's alerts. The
runner, the backtest, the dry run and the query validation all go through :data:`RULE_TYPES`:
adding a rule type is adding a class, typed by the rule model it reads.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Generic, TypeVar

from rules.lifecycle import Lifecycle, OnChange, PerEvent, Stateful
from rules.model import (
    AbsenceRule,
    Aggregate,
    AnomalyRule,
    ChangeRule,
    Condition,
    ConsecutiveRule,
    MatchRule,
    NewTermRule,
    RatioRule,
    Rule,
    RuleBase,
    SpikeRule,
    ThresholdRule,
)
from rules.notify.values import Unit, shown
from rules.query import (
    NO_GROUP,
    Measurement,
    Window,
    field_value,
    filters,
    group_aggs,
    group_buckets,
    grouped,
    matches_lists,
    ranges,
    time_range,
    time_sort,
    totals,
)

R = TypeVar("R", bound=RuleBase)

# What names a matched event in a message, those it has, in this order.
SUMMARY_FIELDS = ("event.action", "modelregistry.model.name", "modelregistry.model.version", "user.name",
                  "source.ip")

RULE_TYPES: dict[str, RuleType[Any]] = {}


def register(cls: type[RuleType[R]]) -> type[RuleType[R]]:
    RULE_TYPES[cls.name] = cls()
    return cls


def rule_type(rule: Rule) -> RuleType[Any]:
    return RULE_TYPES[rule.type]


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
        return "{rule} is {state}: {value} (bound {threshold})" + _for_group(rule)

    def resolved_message(self, rule: R) -> str:
        """The resolution message of a rule that sets no ``resolved_message``."""
        return "{rule} resolved: {value} (bound {threshold})" + _for_group(rule)

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


def _for_group(rule: RuleBase) -> str:
    return " for {group}" if rule.group_by else ""


def _literal(text: str) -> str:
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


class _Bounded(RuleType[C]):
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


@register
class Threshold(_Bounded[ThresholdRule]):
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


@register
class Ratio(_Bounded[RatioRule]):
    name = "ratio"

    def leaf(self, rule: RatioRule, window: Window) -> dict[str, Any]:
        return {"numerator": {"filter": {"query_string": {"query": rule.numerator}}}}

    def value(self, rule: RatioRule, bucket: dict[str, Any], total: int) -> float:
        if total == 0 or total < rule.min_events or "numerator" not in bucket:
            return 0.0
        return bucket["numerator"]["doc_count"] / total

    def recovery(self, rule: RatioRule) -> Condition | None:
        return rule.recovery

    def unit(self, rule: RatioRule) -> Unit:
        return "ratio"


@register
class Absence(RuleType[AbsenceRule]):
    name = "absence"

    def request(self, rule: AbsenceRule, window: Window) -> dict[str, Any]:
        if not rule.group_by:
            return grouped(rule, window, {})
        # Groups seen over the previous window too, so a group that falls silent is noticed.
        wide = Window(window.start - (window.end - window.start), window.end)
        current = {"current": {"filter": time_range(rule, window.start, None)}}
        return grouped(rule, wide, current)

    def value(self, rule: AbsenceRule, bucket: dict[str, Any], total: int) -> float:
        return float(bucket["current"]["doc_count"]) if "current" in bucket else float(total)

    def breached(self, rule: AbsenceRule, value: float) -> bool:
        return value < rule.minimum

    def threshold(self, rule: AbsenceRule) -> float | None:
        return float(rule.minimum)

    def message(self, rule: AbsenceRule) -> str:
        return "{rule} is {state}: {value} events in the window, fewer than {threshold}" + _for_group(rule)

    def resolved_message(self, rule: AbsenceRule) -> str:
        return "{rule} resolved: {value} events in the window" + _for_group(rule)


class _Series(_Bounded[S]):
    """Counts (or a metric) of the current window against the windows before it. Each window is a
    ``filters`` bucket of the same time selection as any rule's, so documents placed by their
    fallback time are counted like the others."""

    def history(self, rule: S) -> int:
        raise NotImplementedError

    def metric(self, rule: S) -> dict[str, Any]:
        """The sub-aggregation of each window's value (none: its count)."""
        return {}

    def request(self, rule: S, window: Window) -> dict[str, Any]:
        spans = ranges(window, self.history(rule) + 1)
        wide = Window(spans[0]["from"] / 1000, window.end)
        metric = self.metric(rule)
        series = {"series": {"filters": {"filters": [time_range(rule, s["from"] / 1000, s["to"] / 1000)
                                                     for s in spans]},
                             **({"aggs": metric} if metric else {})}}
        return {"size": 0, "query": {"bool": {"filter": filters(rule, wide)}}, "aggs": group_aggs(rule, series)}

    def measure(self, rule: S, response: dict[str, Any], window: Window) -> list[Measurement]:
        if not rule.group_by and "series" not in response.get("aggregations", {}):
            return [Measurement(NO_GROUP, 0.0)]
        return totals(rule, response, self.value)

    def value(self, rule: S, bucket: dict[str, Any], total: int) -> float:
        buckets = bucket["series"]["buckets"]
        return self.score(rule, [b["doc_count"] for b in buckets], buckets)

    def score(self, rule: S, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        raise NotImplementedError

    def unit(self, rule: S) -> Unit:
        return "score"  # a factor (spike) or a z-score (anomaly)


@register
class Spike(_Series[SpikeRule]):
    name = "spike"

    def history(self, rule: SpikeRule) -> int:
        return 1

    def metric(self, rule: SpikeRule) -> dict[str, Any]:
        return metric_aggs(rule.aggregate)

    def score(self, rule: SpikeRule, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        if counts[-2] < rule.min_events:
            return 0.0  # no baseline to speak of: a first window is not a spike
        previous = metric_value(rule.aggregate, buckets[-2], counts[-2])
        current = metric_value(rule.aggregate, buckets[-1], counts[-1])
        if not previous or current is None:
            return 0.0  # a metric of nothing (no event had the field) is no spike either
        floor = 1.0 if rule.aggregate.function == "count" else abs(previous) * 1e-9
        up = current / previous
        down = previous / max(current, floor)
        return {"up": up, "down": down, "both": max(up, down)}[rule.direction]


@register
class Anomaly(_Series[AnomalyRule]):
    name = "anomaly"

    def history(self, rule: AnomalyRule) -> int:
        return rule.buckets

    def score(self, rule: AnomalyRule, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        current, history = counts[-1], counts[:-1]
        mean = sum(history) / len(history)
        # A flat baseline has no deviation: one event of difference counts as one deviation.
        deviation = max(math.sqrt(sum((c - mean) ** 2 for c in history) / len(history)), 1.0)
        return abs(current - mean) / deviation


@register
class Match(RuleType[MatchRule]):
    """Every matching event fires once (what arrived since the last cycle, however long ago)."""

    name = "match"
    lifecycle = PerEvent()

    def request(self, rule: MatchRule, window: Window) -> dict[str, Any]:
        return {"size": rule.max_events, "sort": time_sort(rule, "asc"), "track_total_hits": True,
                "query": {"bool": {"filter": filters(rule, window)}}}

    def measure(self, rule: MatchRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        events = tuple(hit["_source"] | {"_id": hit["_id"], "_index": hit["_index"]}
                       for hit in response["hits"]["hits"])
        events = tuple(e for e in events if matches_lists(rule, e))
        return [Measurement(e["_id"], 1.0, (e,)) for e in events]

    def breached(self, rule: MatchRule, value: float) -> bool:
        return value > 0

    def windows(self, rule: MatchRule, last_end: float, end: float, catch_up: int) -> list[Window]:
        return [Window(last_end, end)]

    def window_at(self, rule: MatchRule, end: float) -> Window:
        return Window(end - rule.interval, end)

    def shown_group(self, rule: MatchRule, group: str, event: dict[str, Any] | None) -> str:
        """The event, by what it did and to what (its id means nothing to a reader)."""
        if event is None:
            return group
        fields = [rule.field] if rule.field else list(SUMMARY_FIELDS)
        said = [f"{f} {v}" if rule.field else str(v) for f in fields
                if (v := event.get(f, field_value(event, f))) not in (None, "", [], {})]
        return " ".join(said) or group

    def message(self, rule: MatchRule) -> str:
        return "{rule}: {group}"


@register
class NewTerm(RuleType[NewTermRule]):
    """A value of ``field`` first seen inside this window (and not in the look-back) fires once."""

    name = "new_term"
    lifecycle = PerEvent()

    def request(self, rule: NewTermRule, window: Window) -> dict[str, Any]:
        wide = Window(window.end - rule.lookback, window.end)
        first: dict[str, Any] = {"first": {"min": {"field": rule.time_field}}}
        if rule.time_fallback:
            first["unstamped"] = {"filter": {"bool": {"must_not": [{"exists": {"field": rule.time_field}}]}},
                                  "aggs": {"first": {"min": {"field": rule.time_fallback}}}}
        return {"size": 0, "query": {"bool": {"filter": filters(rule, wide)}},
                "aggs": {"terms": {"terms": {"field": rule.field, "size": rule.max_terms}, "aggs": first}}}

    def measure(self, rule: NewTermRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        start = window.start * 1000
        buckets = response.get("aggregations", {}).get("terms", {}).get("buckets", [])
        out = []
        for b in buckets:
            seen = [v for v in (b["first"]["value"], b.get("unstamped", {}).get("first", {}).get("value"))
                    if v is not None]
            if seen and min(seen) >= start:
                out.append(Measurement(f"term:{b['key']}", 1.0,
                                       ({"_id": f"term:{b['key']}", rule.field: str(b["key"])},)))
        return out

    def breached(self, rule: NewTermRule, value: float) -> bool:
        return value > 0

    def shown_group(self, rule: NewTermRule, group: str, event: dict[str, Any] | None) -> str:
        return group.removeprefix("term:")

    def message(self, rule: NewTermRule) -> str:
        return f"{{rule}}: new {_literal(rule.field)} {{group}}"


@register
class Change(RuleType[ChangeRule]):
    """A group's latest value of ``field`` differs from the last one seen."""

    name = "change"
    lifecycle = OnChange()

    def request(self, rule: ChangeRule, window: Window) -> dict[str, Any]:
        latest = {"latest": {"top_hits": {"size": 1, "sort": time_sort(rule, "desc"), "_source": [rule.field]}}}
        return {"size": 0, "query": {"bool": {"filter": filters(rule, window)}}, "aggs": group_aggs(rule, latest)}

    def measure(self, rule: ChangeRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        aggregations = response.get("aggregations", {})
        buckets = list(group_buckets(rule, aggregations)) if rule.group_by else (
            [(NO_GROUP, aggregations)] if "latest" in aggregations else [])
        out = []
        for group, bucket in buckets:
            hits = bucket["latest"]["hits"]["hits"]
            if hits:
                value = field_value(hits[0]["_source"], rule.field)
                if value is not None:
                    out.append(Measurement(group, 0.0, ({"value": str(value), "field": rule.field},)))
        return out

    def breached(self, rule: ChangeRule, value: float) -> bool:
        return False

    def shown_value(self, rule: ChangeRule, value: float, event: dict[str, Any] | None) -> str:
        """The field's new value (the measurement itself is no number)."""
        return str(event["value"]) if event is not None and "value" in event else ""

    def message(self, rule: ChangeRule) -> str:
        return f"{{rule}}: {_literal(rule.field)}" + (" of {group}" if rule.group_by else "") + " is now {value}"


def request(rule: Rule, window: Window) -> dict[str, Any]:
    """The search body of one rule for one window."""
    return rule_type(rule).request(rule, window)


def measure(rule: Rule, response: dict[str, Any], window: Window) -> list[Measurement]:
    """The measurements of one rule from its search response (an error in it is raised)."""
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    return rule_type(rule).measure(rule, response, window)


@register
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
        return "{rule} is {state}: {value} checks failed in a row (bound {threshold})" + _for_group(rule)

    def resolved_message(self, rule: ConsecutiveRule) -> str:
        return "{rule} resolved: {value} checks passed in a row" + _for_group(rule)
