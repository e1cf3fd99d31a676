"""Rule types over what happened rather than how much: a matching event, a term first seen, a
value that changed. Each fires once per occurrence (:class:`~rules.lifecycle.PerEvent`,
:class:`~rules.lifecycle.OnChange`).
"""

from __future__ import annotations

from typing import Any

from rules.lifecycle import OnChange, PerEvent
from rules.model import (
    ChangeRule,
    MatchRule,
    NewTermRule,
)
from rules.query import (
    NO_GROUP,
    Measurement,
    Window,
    field_value,
    filters,
    group_aggs,
    group_buckets,
    matches_lists,
    time_sort,
)
from rules.ruletype import RuleType, template_literal

# What names a matched event in a message, those it has, in this order.
SUMMARY_FIELDS = ("event.action", "modelregistry.model.name", "modelregistry.model.version", "user.name",
                  "source.ip")



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
        return f"{{rule}}: new {template_literal(rule.field)} {{group}}"




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
        of_group = " of {group}" if rule.group_by else ""
        return f"{{rule}}: {template_literal(rule.field)}{of_group} is now {{value}}"
