"""Composing a notification: the outbox entry an alert's transition queues.

What a notifier is given says enough to act on without opening anything: the window, the query,
the newest events behind a firing alert, and links to the dashboard and to Discover on exactly
that window and group.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from contract.timestamps import iso_from_epoch
from rules.cycle import NOTIFIER_RULE, SYNTHETIC, Known
from rules.links import discover_url, kibana_app_url
from rules.model import Rule, RuleBase
from rules.notification import OutboxEntry, Payload
from rules.notify import render
from rules.notify.values import Shown
from rules.notify.values import shown as format_value
from rules.query import Window, filters, group_values, indices, time_sort
from rules.state import alert_id
from rules.types import rule_type

log = structlog.get_logger(__name__)


class Composer:
    def __init__(self, client: Elasticsearch, namespace: str, state_index: str, known: Known,
                 kibana_url: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.state_index = state_index
        self.known = known
        self.kibana_url = kibana_url

    def entry(self, rule: Rule, group: str, state: str, value: float, since: float, now: float, window: Window,
              event: dict[str, Any] | None = None, reminder: bool = False, samples: bool = True) -> OutboxEntry:
        """A notification, queued on the alert document until every target took it. Its key is
        the same however often it is composed (a re-post, a second runner): targets de-duplicate
        on it."""
        moment = now if reminder else since
        key = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{moment}".encode()).hexdigest()
        kind = rule_type(rule)
        threshold = kind.threshold(rule)
        value_text = kind.shown_value(rule, value, event)
        shown = {"group": kind.shown_group(rule, group, event), "value": value_text,
                 "threshold": None if threshold is None else format_value(kind.unit(rule), threshold)}
        if state == "resolved":
            template = rule.resolved_message or kind.resolved_message(rule)
        else:  # a rule that words nothing is worded by its type (an event rule has no bound)
            template = rule.message if "message" in rule.model_fields_set else kind.message(rule)
        message = render(template, {"rule": rule.name, "state": state, "value": Shown(value_text, value),
                                    "threshold": Shown(shown["threshold"] or "", threshold),
                                    "group": shown["group"], "severity": rule.severity})
        own = rule.name in SYNTHETIC
        payload: Payload = {
            "rule": rule.name, "group": group, "group_by": rule.group_by, "state": state, "value": value,
            "threshold": threshold, "severity": rule.severity, "labels": dict(rule.labels), "since": since,
            "at": now, "message": message, "key": key, "alert": alert_id(rule.name, group),
            "groups": group_values(rule, group),
            "window": {"start": iso_from_epoch(window.start), "end": iso_from_epoch(window.end),
                       "time_field": rule.time_field},
            "index": self.state_index if own else indices(rule, self.namespace),
            "query": {"bool": {"filter": filters(rule, window)}}}
        # The value, bound and group as the message words them (the numbers above stay raw), for
        # the targets people read; a re-read outbox entry queued before it existed may lack it.
        payload["shown"] = shown
        if self.kibana_url and not own:
            payload["dashboard"] = (f"{kibana_app_url(self.kibana_url, 'dashboards')}#/view/regwatch-dashboard-alerts"
                                    f"?_g=(time:(from:'{iso_from_epoch(since - 3600, millis=False)}',"
                                    f"to:'{iso_from_epoch(now + 300, millis=False)}'))")
            payload["discover"] = discover_url(self.kibana_url, rule, window.start, window.end, group)
        if event is not None:
            payload["event"] = {k: v for k, v in event.items() if not k.startswith("_")}
        elif samples and state == "firing" and rule.sample.size and not own:
            payload["events"] = self._samples(rule, window, group)
        due = now
        if rule.aggregation:  # held and sent with the rule's other notifications at the period's end
            due = math.ceil(now / rule.aggregation) * rule.aggregation
        targets = list(rule.notify or ())
        if rule.name == NOTIFIER_RULE:  # told on the others: not the failing target, nor any failing one
            targets = [t for t in targets if t != group and self.known.failing_since(t) is None]
        entry: OutboxEntry = {"key": key, "targets": targets, "payload": payload, "attempts": 0, "due": due,
                              "labels": dict(rule.labels)}
        if rule.aggregation:
            entry["batch"] = rule.name
        return entry

    def _samples(self, rule: RuleBase, window: Window, group: str) -> list[dict[str, Any]]:
        """The newest events of the window (and group) behind a firing alert: one search, made
        only when a notification is queued, never per cycle."""
        terms = [{"term": {f: v}} for f, v in group_values(rule, group).items()]
        try:
            hits = self.client.search(index=indices(rule, self.namespace), size=rule.sample.size,
                                      ignore_unavailable=True, allow_no_indices=True,
                                      query={"bool": {"filter": filters(rule, window) + terms}},
                                      sort=time_sort(rule, "desc"),
                                      # _source takes a list of fields too; the client's annotation lacks it
                                      source=rule.sample.fields if rule.sample.fields is not None  # type: ignore[arg-type]
                                      else True)
        except (ApiError, TransportError) as exc:  # samples help; they never hold up an alert
            log.warning("samples_failed", rule=rule.name, error=str(exc)[:200])
            return []
        return [h["_source"] for h in hits["hits"]["hits"]]
