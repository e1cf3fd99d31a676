"""One aggregation query per rule, all of a cycle in one ``_msearch``; responses to measurements.

Windows select on ``event.ingested`` by default: an event that arrives five minutes late is
counted in the window in which it was ingested, never missed and, with ``window == interval``,
never counted twice. A document without ``event.ingested`` is placed by its ``@timestamp``
instead (each document falls in exactly one window either way). Any other time field is a rule's
choice, as is any index pattern instead of regwatch's streams.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from elasticsearch import ApiError, BadRequestError

from contract.streams import data_stream_name
from contract.traffic import AUDIT_TRAIL_QUERY
from contract.traffic import actions as one_each
from rules.model import MatchRule, Rule, RuleBase

R = TypeVar("R", bound=RuleBase)
NO_GROUP = "*"
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Window:
    start: float  # epoch seconds, inclusive
    end: float  # exclusive


@dataclass(frozen=True)
class Measurement:
    group: str
    value: float
    events: tuple[dict[str, Any], ...] = ()  # match rules: the matching events


def indices(rule: RuleBase, namespace: str) -> str:
    if rule.index is not None:
        return rule.index
    return ",".join(data_stream_name(kind, namespace) for kind in rule.kinds)


def header(rule: RuleBase, namespace: str) -> dict[str, Any]:
    """A rule's ``_msearch`` header: its streams, of which some may not exist yet."""
    return {"index": indices(rule, namespace), "ignore_unavailable": True, "allow_no_indices": True}


def ms(epoch: float) -> int:
    return int(epoch * 1000)


def time_range(rule: RuleBase, start: float | None, end: float | None) -> dict[str, Any]:
    """Documents whose time (the rule's time field, else its fallback) is in [start, end)."""
    bounds: dict[str, Any] = {"format": "epoch_millis"}
    if start is not None:
        bounds["gte"] = ms(start)
    if end is not None:
        bounds["lt"] = ms(end)
    primary = {"range": {rule.time_field: bounds}}
    if rule.time_fallback is None:
        return primary
    fallback = {"bool": {"must_not": [{"exists": {"field": rule.time_field}}],
                         "filter": [{"range": {rule.time_fallback: bounds}}]}}
    return {"bool": {"should": [primary, fallback], "minimum_should_match": 1}}


def selection(rule: RuleBase) -> list[dict[str, Any]]:
    """The rule's own filters, whatever the time: query string, KQL, Query DSL, exact terms."""
    from contract.kql import to_dsl

    out: list[dict[str, Any]] = []
    if rule.filter:
        out.append({"query_string": {"query": rule.filter}})
    if rule.kql:
        out.append(to_dsl(rule.kql))
    if rule.query:
        out.append(rule.query)
    for field, value in rule.terms.items():
        out.append({"terms": {field: value}} if isinstance(value, list) else {"term": {field: value}})
    return out


def filters(rule: RuleBase, window: Window) -> list[dict[str, Any]]:
    """The time range of the window and the rule's selection."""
    return [time_range(rule, window.start, window.end), *selection(rule)]


def time_sort(rule: RuleBase, order: str) -> list[dict[str, Any]]:
    """Newest (or oldest) first by the rule's time, documents without it by the fallback."""
    out = [{rule.time_field: {"order": order, "unmapped_type": "date"}}]
    if rule.time_fallback:
        out.append({rule.time_fallback: {"order": order, "unmapped_type": "date"}})
    return out


def group_aggs(rule: RuleBase, leaf: dict[str, Any]) -> dict[str, Any]:
    """Terms aggregations nested one per ``group_by`` field, ``leaf`` innermost."""
    aggs = leaf
    for field in reversed(rule.group_fields):
        aggs = {"groups": {"terms": {"field": field, "size": rule.max_groups}, **({"aggs": aggs} if aggs else {})}}
    return aggs


def group_name(keys: list[Any]) -> str:
    """The group of one field is its value; of several, a JSON list of the values (unambiguous,
    whatever the values hold)."""
    return str(keys[0]) if len(keys) == 1 else json.dumps([str(k) for k in keys], ensure_ascii=False)


def group_values(rule: RuleBase, group: str) -> dict[str, str]:
    """The field values of a group name (empty for the group of all)."""
    fields = rule.group_fields
    if not fields or group == NO_GROUP:
        return {}
    if len(fields) == 1:
        return {fields[0]: group}
    try:
        values = json.loads(group)
    except ValueError:
        return {}
    return dict(zip(fields, values, strict=False))


def group_buckets(rule: RuleBase, aggregations: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, innermost bucket) for each combination of ``group_by`` values."""
    def walk(aggs: dict[str, Any], depth: int, keys: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for bucket in aggs.get("groups", {}).get("buckets", []):
            if depth + 1 == len(rule.group_fields):
                yield group_name(keys + [bucket.get("key_as_string", bucket["key"])]), bucket
            else:
                yield from walk(bucket, depth + 1, keys + [bucket.get("key_as_string", bucket["key"])])
    yield from walk(aggregations, 0, [])


def ranges(window: Window, count: int) -> list[dict[str, int]]:
    """``count`` windows of this window's length ending at ``window.end``, oldest first."""
    length = window.end - window.start
    return [{"from": ms(window.end - (count - i) * length), "to": ms(window.end - (count - i - 1) * length)}
            for i in range(count)]


# Each bucket's records split by source, so that an action the access log and the audit trail
# both recorded is counted once (contract.traffic): read back by :func:`actions`.
SOURCES: dict[str, Any] = {"sources": {"filters": {"filters": {"trail": AUDIT_TRAIL_QUERY},
                                                   "other_bucket_key": "calls"}}}


def sources(rule: RuleBase) -> dict[str, Any]:
    """:data:`SOURCES` where the rule counts actions, nothing where it counts documents."""
    return SOURCES if rule.count == "actions" else {}


def counted(rule: RuleBase, aggregation: dict[str, Any]) -> dict[str, Any]:
    """A bucket aggregation whose actions :func:`actions` can read (as the rule counts them)."""
    return {**aggregation, "aggs": sources(rule)} if rule.count == "actions" else aggregation


def actions(bucket: dict[str, Any], doc_count: int) -> int:
    """The registry actions of a bucket that carries :data:`SOURCES`: the larger of its access-log
    and audit-trail counts. A bucket without it (an older response shape) counts its documents."""
    sources = bucket.get("sources", {}).get("buckets")
    if not sources:
        return doc_count
    return one_each(sources.get("calls", {}).get("doc_count", 0), sources.get("trail", {}).get("doc_count", 0))


def grouped(rule: RuleBase, window: Window, leaf: dict[str, Any]) -> dict[str, Any]:
    """A count of the window's actions (per ``group_by`` term when grouped), with ``leaf``'s
    sub-aggregations per group."""
    body: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": filters(rule, window)}}}
    aggs = group_aggs(rule, {**sources(rule), **leaf})
    if aggs:
        body["aggs"] = aggs
    return body


def totals(rule: R, response: dict[str, Any], value: Callable[[R, dict[str, Any], int], float]) -> list[Measurement]:
    """One measurement per group (or one for all) from a :func:`grouped` response; ``value`` is
    given the bucket and its count of actions."""
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    if not rule.group_by:
        aggregations = response.get("aggregations", {})
        return [Measurement(NO_GROUP, value(rule, aggregations,
                                            actions(aggregations, response["hits"]["total"]["value"])))]
    return [Measurement(group, value(rule, bucket, actions(bucket, bucket["doc_count"])))
            for group, bucket in group_buckets(rule, response.get("aggregations", {}))]


def field_value(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def matches_lists(rule: MatchRule, event: dict[str, Any]) -> bool:
    """A match rule's allow / deny lists on its ``field``."""
    if rule.field is None:
        return True
    value = field_value(event, rule.field)
    if rule.allow is not None and value in rule.allow:
        return False
    if rule.deny is not None and value not in rule.deny:
        return False
    return True


def check_queries(client: Any, rules: list[Rule], index: str, namespace: str) -> list[str]:
    """Queries (``filter``, ``numerator``, ``query``, ``kql``) Elasticsearch cannot run, one line
    each naming the rule and the key. ``index`` must exist: with no index, every query is "valid";
    the rule's own indices are asked too, where a value must fit the field's type."""
    problems = []
    for rule in rules:
        for key in ("filter", "numerator", "query", "kql"):
            text = getattr(rule, key, None)
            if not text:
                continue
            if key == "query":
                query = text
            elif key == "kql":
                from contract.kql import to_dsl

                query = to_dsl(text)
            else:
                query = {"query_string": {"query": text}}
            what = {"query": "Query DSL query", "kql": "KQL query"}.get(key, "query string")
            try:  # on the rule's own indices too: a range beyond a long field's reach fails there only
                answer = client.indices.validate_query(index=f"{indices(rule, namespace)},{index}", query=query,
                                                       explain=True, ignore_unavailable=True, allow_no_indices=True)
            except BadRequestError as exc:  # a DSL query Elasticsearch cannot even parse
                problems.append(f"rule {rule.name!r}: {key}: not a valid {what}: {str(exc.info)[:200]}")
                continue
            if not answer.get("valid", False):
                reason = next((e.get("error", "") for e in answer.get("explanations", []) if e.get("error")), "")
                problems.append(f"rule {rule.name!r}: {key}: not a valid {what}: {reason[:200]}")
    return problems


def _security_off(exc: ApiError) -> bool:
    """The node answers without security: no ``_security`` endpoints (a distribution without
    x-pack security), or security not enabled. Every index is then readable."""
    text = f"{exc.body}".lower()
    return "no handler found" in text or "security must be explicitly enabled" in text \
        or "security is not enabled" in text


def check_privileges(client: Any, rules: list[Rule], namespace: str) -> list[str]:
    """Indices a rule reads that these credentials may not read, one line each naming the rule and
    the index. Searches skip unreadable indices in silence (``ignore_unavailable``): an absence
    rule would fire for ever and a threshold rule never. Asked of ``_has_privileges`` (which needs
    no privilege of its own); on a node without security, every index is readable: no problems."""
    wanted = {rule.name: [name for name in indices(rule, namespace).split(",") if name] for rule in rules}
    names = sorted({name for found in wanted.values() for name in found})
    if not names:
        return []
    try:
        answer = client.security.has_privileges(index=[{"names": names, "privileges": ["read"]}])
    except ApiError as exc:
        if _security_off(exc):
            log.debug("read_privilege_not_checked", why="security is not enabled on the node")
            return []
        log.warning("read_privilege_not_checked", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return []
    granted = answer.get("index", {})
    return [f"rule {rule.name!r}: index {name!r}: the credentials cannot read it (this rule would read nothing "
            "there): grant the read privilege on it"
            for rule in rules for name in wanted[rule.name] if not granted.get(name, {}).get("read", False)]
