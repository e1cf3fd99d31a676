"""The ``regression`` rule type (#30 item 4): a version promoted (or registered) that is worse,
by a run metric, than the version it replaces.

One search per window, over the inventory's two streams (docs/inventory.md): its hits are the
changes to judge (``alias-set`` of the rule's alias, ``model-version-created``) from the last
``lookback``; one aggregation brings each model's latest moves of the alias (who held it before a
version was registered), another each version's latest state (its run's metrics). The judgement
itself is :func:`rules.regression.regressions`, pure. A change fires once, keyed by its document
id (:class:`~rules.lifecycle.PerEvent`: two runners notify once); one the inventory has not read
the metrics of yet is judged again each cycle, for ``lookback``; one that passes never fires.
"""

from __future__ import annotations

from typing import Any

from rules.lifecycle import PerEvent
from rules.model import RegressionRule
from rules.query import Measurement, Window, ms, selection, time_range
from rules.regression import MOVED, REGISTERED, Finding, MetricCheck, regressions
from rules.ruletype import RuleType

ALIAS_ACTIONS = ["alias-set", "alias-removed"]
VERSION_STATE = "model-version-observed"


def check_of(rule: RegressionRule) -> MetricCheck:
    return MetricCheck(rule.metric, rule.greater_is_better, rule.threshold, rule.min_absolute_change,
                       rule.min_relative_change)


def _before(end: float) -> dict[str, Any]:
    """Documents the registry (or the collector) timed before ``end``: what was known then."""
    return {"range": {"@timestamp": {"lt": ms(end), "format": "epoch_millis"}}}


def judged(rule: RegressionRule, window: Window) -> dict[str, Any]:
    """The changes a window judges: the alias's moves and the registrations, from ``lookback``."""
    which: list[dict[str, Any]] = []
    if MOVED in rule.changes:
        which.append({"bool": {"filter": [{"term": {"event.action": "alias-set"}},
                                          {"term": {"modelregistry.model.alias": rule.alias}}]}})
    if REGISTERED in rule.changes:
        which.append({"term": {"event.action": "model-version-created"}})
    return {"bool": {"filter": [time_range(rule, window.end - rule.lookback, window.end), *selection(rule)],
                     "should": which, "minimum_should_match": 1}}


def moves(rule: RegressionRule, window: Window) -> dict[str, Any]:
    return {"bool": {"filter": [{"terms": {"event.action": ALIAS_ACTIONS}},
                                {"term": {"modelregistry.model.alias": rule.alias}}, _before(window.end)]}}


def states(window: Window) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"event.action": VERSION_STATE}},
                                {"term": {"modelregistry.inventory.entity": "model_version"}}, _before(window.end)]}}


_NEWEST = [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}]


class Regression(RuleType[RegressionRule]):
    """Each change that makes the alias's version (or a new one) worse than the one before fires once."""

    name = "regression"
    lifecycle = PerEvent()

    def request(self, rule: RegressionRule, window: Window) -> dict[str, Any]:
        changes, history, versions = judged(rule, window), moves(rule, window), states(window)
        return {
            # the newest changes: a busy alias (more than max_events moves within lookback) has its
            # latest move judged; the older ones were judged by the cycles they were new in
            "size": rule.max_events, "track_total_hits": False, "sort": _NEWEST,
            "query": {"bool": {"should": [changes, history, versions], "minimum_should_match": 1}},
            "post_filter": changes,
            "aggs": {
                "moves": {"filter": history, "aggs": {"models": {
                    "terms": {"field": "modelregistry.model.name", "size": rule.max_groups},
                    "aggs": {"latest": {"top_hits": {"size": rule.history, "sort": _NEWEST}}}}}},
                "versions": {"filter": versions, "aggs": {"keys": {
                    "terms": {"field": "modelregistry.inventory.key", "size": rule.max_versions},
                    "aggs": {"latest": {"top_hits": {"size": 1, "sort": _NEWEST, "_source": [
                        "modelregistry.registry", "modelregistry.model.name", "modelregistry.model.version",
                        f"modelregistry.inventory.metrics.{rule.metric}"]}}}}}},
            },
        }

    def measure(self, rule: RegressionRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        aggs = response.get("aggregations") or {}
        judge = {hit["_id"]: hit["_source"] for hit in response["hits"]["hits"]}
        history = {hit["_id"]: hit["_source"]
                   for bucket in (aggs.get("moves") or {}).get("models", {}).get("buckets", [])
                   for hit in bucket["latest"]["hits"]["hits"]}
        metrics: dict[tuple[str, str], dict[str, float]] = {}
        for bucket in (aggs.get("versions") or {}).get("keys", {}).get("buckets", []):
            for hit in bucket["latest"]["hits"]["hits"]:
                registry = hit["_source"].get("modelregistry") or {}
                model = registry.get("model") or {}
                if model.get("name") and model.get("version"):
                    metrics[(model["name"], model["version"])] = (registry.get("inventory") or {}).get("metrics") or {}
        changes = sorted((history | judge).items(), key=lambda item: (item[1].get("@timestamp", ""), item[0]))
        found = regressions(changes, metrics, check_of(rule), rule.alias, set(judge), tuple(rule.changes))
        return [Measurement(f.key, 1.0, (notified(rule, f),)) for f in found]

    def breached(self, rule: RegressionRule, value: float) -> bool:
        return value > 0

    def windows(self, rule: RegressionRule, last_end: float, end: float, catch_up: int) -> list[Window]:
        """One window per cycle, reaching back ``lookback``, or to the last one's end when that is
        further (the runners were away longer: what changed meanwhile is judged, once)."""
        return [Window(min(last_end, end - rule.lookback), end)]

    def window_at(self, rule: RegressionRule, end: float) -> Window:
        return Window(end - rule.lookback, end)

    def shown_group(self, rule: RegressionRule, group: str, event: dict[str, Any] | None) -> str:
        """The regression in words (the change's id means nothing to a reader)."""
        if event is None:
            return group
        return str(((event.get("modelregistry") or {}).get("regression") or {}).get("summary") or group)

    def message(self, rule: RegressionRule) -> str:
        return "{rule}: {group}"


def notified(rule: RegressionRule, finding: Finding) -> dict[str, Any]:
    """What the notification carries of a regression: the change, the model, the alias, both
    versions, both values and why it fails."""
    details = finding.details
    return {
        "_id": finding.key,
        "@timestamp": finding.at,
        "event": {"action": "alias-set" if details["change"] == MOVED else "model-version-created"},
        "modelregistry": {
            **({"registry": details["registry"]} if details.get("registry") else {}),
            "model": {"name": finding.model, "alias": rule.alias, "version": finding.version},
            "regression": {
                "change": details["change"], "metric": details["metric"],
                "greater_is_better": rule.greater_is_better,
                "version": finding.version, "value": details["candidate"],
                "previous_version": details["baseline_version"], "previous_value": details["baseline"],
                "reasons": details["reasons"], "summary": finding.message,
            },
        },
    }
