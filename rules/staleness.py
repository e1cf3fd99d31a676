"""The ``stale_usage`` rule type (#30 item 4): clients still pulling a version some time after
the alias moved away from it (a serving job that never reloaded, a pinned URI nobody updated).

One search per window, over the change stream and the retrieval stream: one aggregation brings
each model's latest moves of the rule's alias (where it points, which versions it left and
when), another the window's retrievals that name a version (pipeline/attribution.py names
artifact downloads and alias lookups), per model, version, client and user, with each one's
last pull. The judgement is :func:`rules.regression.stale_uses`, pure. An alert per model and
version fires while a client pulls it ``after`` the move (at least ``min_pulls`` in the window)
and resolves when they stop; its notification names the clients, the users and their pulls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from contract.timestamps import iso_from_epoch
from rules.lifecycle import Bounds, Decision, Stateful, Stored, TrialRow
from rules.model import RuleBase, StaleUsageRule, duration_text
from rules.promotion import ALIAS_ACTIONS
from rules.query import NO_GROUP, Measurement, Window, filters, ms
from rules.regression import Puller, StaleUse, alias_timeline, stale_uses
from rules.ruletype import RuleType, template_literal


@dataclass(frozen=True)
class Explained(Stateful):
    """A stateful alert whose firing notification carries what its measurement says (the stale
    version's clients): not samples of raw events, which would not count them."""

    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        said = {m.group: m.events[0] for m in measured if m.events}
        return [replace(d, event=said.get(d.group)) if d.notify == "firing" else d
                for d in super().decide(bounds, rule, stored, measured, now)]

    def trial(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
              now: float) -> list[TrialRow]:
        """The versions measured or alerting (no row for "all versions", which is no alert)."""
        return [row for row in super().trial(bounds, rule, stored, measured, now)
                if row.group != NO_GROUP or row.group in stored]


def group_of(model: str, version: str) -> str:
    """The alert's group: model and version, as a rule grouped by both names it."""
    return json.dumps([model, version], ensure_ascii=False)


def pulls_query(rule: StaleUsageRule, window: Window) -> dict[str, Any]:
    """The window's retrievals that name a version; the probe's own are no client's."""
    return {"bool": {"filter": [*filters(rule, window), {"exists": {"field": "modelregistry.model.version"}},
                                {"term": {"data_stream.dataset": "modelregistry.retrieval"}}],
                     "must_not": [{"term": {"modelregistry.synthetic": True}}]}}


def moves_query(rule: StaleUsageRule, window: Window) -> dict[str, Any]:
    return {"bool": {"filter": [{"terms": {"event.action": ALIAS_ACTIONS}},
                                {"term": {"modelregistry.model.alias": rule.alias}},
                                {"range": {"@timestamp": {"lt": ms(window.end), "format": "epoch_millis"}}}]}}


# A model's MLmodel file: MLflow's client fetches it once each time it downloads or loads a model,
# so its fetches count whole models pulled (as regwatch downloads and regwatch stale count them).
MODEL_FILE = {"wildcard": {"modelregistry.artifact.path": {"value": "*/MLmodel"}}}


def _pullers(rule: StaleUsageRule, field: str) -> dict[str, Any]:
    return {"terms": {"field": field, "size": rule.max_clients},
            "aggs": {"last": {"max": {"field": "@timestamp"}}, "downloads": {"filter": MODEL_FILE}}}


def _read(buckets: list[dict[str, Any]]) -> list[Puller]:
    return [Puller(str(b["key"]), int(b["doc_count"]), float(b["last"]["value"]) / 1000,
                   int((b.get("downloads") or {}).get("doc_count", 0))) for b in buckets
            if b.get("last", {}).get("value") is not None]


class StaleUsage(RuleType[StaleUsageRule]):
    """A version the alias left that clients still pull fires, per model and version, until they stop."""

    name = "stale_usage"
    lifecycle = Explained()

    def request(self, rule: StaleUsageRule, window: Window) -> dict[str, Any]:
        pulls, moves = pulls_query(rule, window), moves_query(rule, window)
        newest = [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}]
        return {
            "size": 0, "track_total_hits": False,
            "query": {"bool": {"should": [pulls, moves], "minimum_should_match": 1}},
            "aggs": {
                "moves": {"filter": moves, "aggs": {"models": {
                    "terms": {"field": "modelregistry.model.name", "size": rule.max_groups},
                    "aggs": {"latest": {"top_hits": {"size": rule.history, "sort": newest, "_source": [
                        "@timestamp", "event.action", "modelregistry.model", "modelregistry.change"]}}}}}},
                "pulls": {"filter": pulls, "aggs": {"models": {
                    "terms": {"field": "modelregistry.model.name", "size": rule.max_groups},
                    "aggs": {"versions": {"terms": {"field": "modelregistry.model.version", "size": 100},
                                          "aggs": {"clients": _pullers(rule, rule.client_field),
                                                   "users": _pullers(rule, rule.user_field)}}}}}},
            },
        }

    def measure(self, rule: StaleUsageRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        aggs = response.get("aggregations") or {}
        changes = [hit["_source"] for bucket in (aggs.get("moves") or {}).get("models", {}).get("buckets", [])
                   for hit in bucket["latest"]["hits"]["hits"]]
        pulled = {(str(model["key"]), str(version["key"])): (_read(version["clients"]["buckets"]),
                                                             _read(version["users"]["buckets"]))
                  for model in (aggs.get("pulls") or {}).get("models", {}).get("buckets", [])
                  for version in model["versions"]["buckets"]}
        timeline = alias_timeline(changes, rule.alias)
        return [Measurement(group_of(use.model, use.version), float(use.pulls), (notified(rule, use),))
                for use in stale_uses(timeline, pulled, rule.after)]

    def breached(self, rule: StaleUsageRule, value: float) -> bool:
        return value >= rule.min_pulls

    def recovered(self, rule: StaleUsageRule, value: float) -> bool:
        return value == 0

    def threshold(self, rule: StaleUsageRule) -> float | None:
        return float(rule.min_pulls)

    def shown_group(self, rule: StaleUsageRule, group: str, event: dict[str, Any] | None) -> str:
        try:
            model, version = json.loads(group)
        except (ValueError, TypeError):
            return group
        return f"{model} version {version}"

    def message(self, rule: StaleUsageRule) -> str:
        return (f"{{rule}}: {{group}} is still pulled ({{value}} pulls), {duration_text(rule.after)} or more "
                f"after {template_literal(rule.alias)} moved away from it")

    def resolved_message(self, rule: StaleUsageRule) -> str:
        return "{rule} resolved: nobody pulls {group} any more"


def _pullers_out(pullers: tuple[Puller, ...]) -> list[dict[str, Any]]:
    return [{"name": p.name, "pulls": p.pulls, "downloads": p.downloads, "last": iso_from_epoch(p.last)}
            for p in pullers]


def notified(rule: StaleUsageRule, use: StaleUse) -> dict[str, Any]:
    """What the notification carries: the model, the alias, the version it points to and the one
    still pulled, and who pulls it, how often: ``pulls``, the retrievals that name it (each file,
    each lookup); ``downloads``, the whole models among them (MLmodel fetches)."""
    return {
        "_id": group_of(use.model, use.version),
        "modelregistry": {
            "model": {"name": use.model, "alias": rule.alias, "version": use.version},
            "stale_usage": {
                "version": use.version, "current_version": use.current, "left_at": iso_from_epoch(use.left_at),
                "pulls": use.pulls, "downloads": use.downloads, "clients": _pullers_out(use.clients),
                "users": _pullers_out(use.users),
                "client_field": rule.client_field, "user_field": rule.user_field,
            },
        },
    }
