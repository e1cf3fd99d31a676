"""One aggregation query per rule, all of a cycle in one ``_msearch``; responses to measurements.

Windows select on ``event.ingested`` by default: an event that arrives five minutes late is
counted in the window in which it was ingested, never missed and, with ``window == interval``,
never counted twice. ``@timestamp`` windows stay available per rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parsers.streams import data_stream_name
from rules.model import Rule

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
    return ",".join(data_stream_name(kind, namespace) for kind in rule.kinds)


def header(rule: Rule, namespace: str) -> dict[str, Any]:
    """A rule's ``_msearch`` header: its streams, of which some may not exist yet."""
    return {"index": indices(rule, namespace), "ignore_unavailable": True, "allow_no_indices": True}


def ms(epoch: float) -> int:
    return int(epoch * 1000)


def filters(rule: Rule, window: Window) -> list[dict[str, Any]]:
    """The time range of the window on the rule's time field, its query string and exact terms."""
    out: list[dict[str, Any]] = [
        {"range": {rule.time_field: {"gte": ms(window.start), "lt": ms(window.end), "format": "epoch_millis"}}}]
    if rule.filter:
        out.append({"query_string": {"query": rule.filter}})
    for field, value in rule.terms.items():
        out.append({"terms": {field: value}} if isinstance(value, list) else {"term": {field: value}})
    return out


def ranges(window: Window, count: int) -> list[dict[str, int]]:
    """``count`` windows of this window's length ending at ``window.end``, oldest first."""
    length = window.end - window.start
    return [{"from": ms(window.end - (count - i) * length), "to": ms(window.end - (count - i - 1) * length)}
            for i in range(count)]


def grouped(rule: Rule, window: Window, leaf: dict[str, Any]) -> dict[str, Any]:
    """A count of the window's events (per ``group_by`` term when grouped), with ``leaf``'s
    sub-aggregations per group."""
    body: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters(rule, window)}}}
    if rule.group_by:
        body["aggs"] = {"groups": {"terms": {"field": rule.group_by, "size": rule.max_groups},
                                   **({"aggs": leaf} if leaf else {})}}
    elif leaf:
        body["aggs"] = leaf
    return body


def totals(rule: Rule, response: dict[str, Any],
           value: Callable[[Rule, dict[str, Any], int], float]) -> list[Measurement]:
    """One measurement per group (or one for all) from a :func:`grouped` response."""
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    if not rule.group_by:
        return [Measurement(NO_GROUP, value(rule, response.get("aggregations", {}), response["hits"]["total"]["value"]))]
    buckets = response.get("aggregations", {}).get("groups", {}).get("buckets", [])
    return [Measurement(str(b["key"]), value(rule, b, b["doc_count"])) for b in buckets]


def field_value(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def matches_lists(rule: Any, event: dict[str, Any]) -> bool:
    """A match rule's allow / deny lists on its ``field``."""
    if rule.field is None:
        return True
    value = field_value(event, rule.field)
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
