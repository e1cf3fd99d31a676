"""One aggregation query per rule, all of a cycle in one ``_msearch``; responses to measurements.

Windows select on ``event.ingested`` by default: an event that arrives five minutes late is
counted in the window in which it was ingested, never missed and, with ``window == interval``,
never counted twice. ``@timestamp`` windows stay available per rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.model import AbsenceRule, MatchRule, RatioRule, Rule, ThresholdRule

NO_GROUP = "*"


@dataclass(frozen=True)
class Window:
    start: float  # epoch seconds, inclusive
    end: float  # exclusive


@dataclass(frozen=True)
class Measurement:
    group: str
    value: float
    events: tuple[dict[str, Any], ...] = ()  # match rules: the matching events


def indices(rule: Rule, namespace: str) -> str:
    return ",".join(f"logs-modelregistry.{kind}-{namespace}" for kind in rule.kinds)


def _ms(epoch: float) -> int:
    return int(epoch * 1000)


def _filters(rule: Rule, window: Window) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [
        {"range": {rule.time_field: {"gte": _ms(window.start), "lt": _ms(window.end), "format": "epoch_millis"}}}]
    if rule.filter:
        filters.append({"query_string": {"query": rule.filter}})
    for field, value in rule.terms.items():
        filters.append({"terms": {field: value}} if isinstance(value, list) else {"term": {field: value}})
    return filters


def _metric(rule: ThresholdRule) -> dict[str, Any] | None:
    agg = rule.aggregate
    if agg.function == "count":
        return None
    if agg.function == "percentile":
        return {"percentiles": {"field": agg.field, "percents": [agg.percentile]}}
    return {agg.function: {"field": agg.field}}


def request(rule: Rule, window: Window) -> dict[str, Any]:
    """The search body of one rule for one window."""
    if isinstance(rule, AbsenceRule) and rule.group_by:
        # Groups seen over the previous window too, so a group that falls silent is noticed.
        window = Window(window.start - (window.end - window.start), window.end)
    body: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": _filters(rule, window)}}}
    if isinstance(rule, MatchRule):
        body.update(size=rule.max_events, sort=[{rule.time_field: "asc"}])
        return body
    leaf: dict[str, Any] = {}
    if isinstance(rule, ThresholdRule) and (metric := _metric(rule)) is not None:
        leaf["value"] = metric
    if isinstance(rule, RatioRule):
        leaf["numerator"] = {"filter": {"query_string": {"query": rule.numerator}}}
    if isinstance(rule, AbsenceRule) and rule.group_by:
        leaf["current"] = {"filter": {"range": {rule.time_field: {"gte": _ms(window.end - (window.end - window.start) / 2),
                                                                 "format": "epoch_millis"}}}}
    if rule.group_by:
        body["aggs"] = {"groups": {"terms": {"field": rule.group_by, "size": rule.max_groups},
                                   **({"aggs": leaf} if leaf else {})}}
    elif leaf:
        body["aggs"] = leaf
    return body


def _value(rule: Rule, bucket: dict[str, Any], total: int) -> float:
    if isinstance(rule, ThresholdRule):
        if rule.aggregate.function == "count":
            return float(total)
        metric = bucket.get("value")  # absent when no index matched at all
        if metric is None:
            return 0.0
        raw = next(iter(metric["values"].values())) if "values" in metric else metric["value"]
        return float(raw) if raw is not None else 0.0
    if isinstance(rule, RatioRule):
        return bucket["numerator"]["doc_count"] / total if total and "numerator" in bucket else 0.0
    if isinstance(rule, AbsenceRule):
        return float(bucket["current"]["doc_count"]) if "current" in bucket else float(total)
    raise TypeError(rule)


def measurements(rule: Rule, response: dict[str, Any]) -> list[Measurement]:
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    if isinstance(rule, MatchRule):
        events = tuple(hit["_source"] | {"_id": hit["_id"], "_index": hit["_index"]} for hit in response["hits"]["hits"])
        events = tuple(e for e in events if _matches_lists(rule, e))
        return [Measurement(NO_GROUP, float(len(events)), events)] if events else []
    total = response["hits"]["total"]["value"]
    if not rule.group_by:
        return [Measurement(NO_GROUP, _value(rule, response.get("aggregations", {}), total))]
    buckets = response.get("aggregations", {}).get("groups", {}).get("buckets", [])
    return [Measurement(str(b["key"]), _value(rule, b, b["doc_count"])) for b in buckets]


def _field(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _matches_lists(rule: MatchRule, event: dict[str, Any]) -> bool:
    if rule.field is None:
        return True
    value = _field(event, rule.field)
    if rule.allow is not None and value in rule.allow:
        return False
    if rule.deny is not None and value not in rule.deny:
        return False
    return True
