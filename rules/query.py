"""One aggregation query per rule, all of a cycle in one ``_msearch``; responses to measurements.

Windows select on ``event.ingested`` by default: an event that arrives five minutes late is
counted in the window in which it was ingested, never missed and, with ``window == interval``,
never counted twice. ``@timestamp`` windows stay available per rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math

from rules.model import (AbsenceRule, AnomalyRule, ChangeRule, MatchRule, NewTermRule, RatioRule, Rule, SpikeRule,
                         ThresholdRule)

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


def _ranges(rule: Rule, window: Window, count: int) -> list[dict[str, int]]:
    """``count`` windows of the rule's length ending at ``window.end``, oldest first."""
    length = window.end - window.start
    return [{"from": _ms(window.end - (count - i) * length), "to": _ms(window.end - (count - i - 1) * length)}
            for i in range(count)]


def request(rule: Rule, window: Window) -> dict[str, Any]:
    """The search body of one rule for one window."""
    if isinstance(rule, (SpikeRule, AnomalyRule)):
        count = 2 if isinstance(rule, SpikeRule) else rule.buckets + 1
        ranges = _ranges(rule, window, count)
        wide = Window(ranges[0]["from"] / 1000, window.end)
        series = {"series": {"date_range": {"field": rule.time_field, "format": "epoch_millis", "ranges": ranges,
                                            "keyed": False}}}
        body = {"size": 0, "query": {"bool": {"filter": _filters(rule, wide)}}}
        body["aggs"] = ({"groups": {"terms": {"field": rule.group_by, "size": rule.max_groups}, "aggs": series}}
                        if rule.group_by else series)
        return body
    if isinstance(rule, NewTermRule):
        wide = Window(window.end - rule.lookback, window.end)
        return {"size": 0, "query": {"bool": {"filter": _filters(rule, wide)}},
                "aggs": {"terms": {"terms": {"field": rule.field, "size": rule.max_terms},
                                   "aggs": {"first": {"min": {"field": rule.time_field}}}}}}
    if isinstance(rule, ChangeRule):
        latest = {"top_hits": {"size": 1, "sort": [{rule.time_field: "desc"}], "_source": [rule.field]}}
        aggs = ({"groups": {"terms": {"field": rule.group_by, "size": rule.max_groups}, "aggs": {"latest": latest}}}
                if rule.group_by else {"latest": latest})
        return {"size": 0, "query": {"bool": {"filter": _filters(rule, window)}}, "aggs": aggs}
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


def _series_value(rule: Rule, bucket: dict[str, Any]) -> float:
    counts = [b["doc_count"] for b in bucket["series"]["buckets"]]
    current, history = counts[-1], counts[:-1]
    if isinstance(rule, SpikeRule):
        previous = history[-1]
        if previous < rule.min_events:
            return 0.0  # no baseline to speak of: a first window is not a spike
        up = current / previous
        down = previous / max(current, 1)
        return {"up": up, "down": down, "both": max(up, down)}[rule.direction]
    mean = sum(history) / len(history)
    # A flat baseline has no deviation: one event of difference counts as one deviation.
    deviation = max(math.sqrt(sum((c - mean) ** 2 for c in history) / len(history)), 1.0)
    return abs(current - mean) / deviation


def _value(rule: Rule, bucket: dict[str, Any], total: int) -> float:
    if isinstance(rule, (SpikeRule, AnomalyRule)):
        return _series_value(rule, bucket)
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


def measurements(rule: Rule, response: dict[str, Any], window: Window | None = None) -> list[Measurement]:
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    aggregations = response.get("aggregations", {})
    if isinstance(rule, NewTermRule):
        start = _ms(window.start) if window else 0
        return [Measurement(str(b["key"]), 1.0) for b in aggregations.get("terms", {}).get("buckets", [])
                if b["first"]["value"] is not None and b["first"]["value"] >= start]
    if isinstance(rule, ChangeRule):
        buckets = aggregations.get("groups", {}).get("buckets", []) if rule.group_by else (
            [{"key": NO_GROUP, "latest": aggregations["latest"]}] if "latest" in aggregations else [])
        out = []
        for bucket in buckets:
            hits = bucket["latest"]["hits"]["hits"]
            if hits:
                value = _field(hits[0]["_source"], rule.field)
                if value is not None:
                    out.append(Measurement(str(bucket["key"]), 0.0, ({"value": str(value)},)))
        return out
    if isinstance(rule, (SpikeRule, AnomalyRule)) and not rule.group_by and "series" not in aggregations:
        return [Measurement(NO_GROUP, 0.0)]
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


def check_queries(client: Any, rules: list[Rule], index: str) -> list[str]:
    """Lucene query strings (``filter``, ``numerator``) that Elasticsearch cannot parse, one line
    each naming the rule and the key. ``index`` must exist: with no index, every query is "valid"."""
    problems = []
    for rule in rules:
        for key in ("filter", "numerator"):
            text = getattr(rule, key, None)
            if not text:
                continue
            answer = client.indices.validate_query(index=index, query={"query_string": {"query": text}},
                                                   explain=True)
            if not answer.get("valid", False):
                reason = next((e.get("error", "") for e in answer.get("explanations", []) if e.get("error")), "")
                problems.append(f"rule {rule.name!r}: {key}: not a valid query string: {reason[:200]}")
    return problems
