"""Alerting: a rule's decisions written to its alert documents, its notifications queued, its
transitions kept in the alert history.

Each write is conditional on the document's version as read: of two runners that decide the same
transition, one writes it (and queues its notification), the other finds the document changed
and does nothing. So a transition is notified once, however many runners run.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, Elasticsearch

from contract import streams
from contract.ecs import ECS
from contract.timestamps import iso_from_epoch
from rules.compose import Composer
from rules.cycle import CycleReport, Known
from rules.lifecycle import Decision
from rules.model import Rule
from rules.notification import OutboxEntry
from rules.query import Measurement, Window
from rules.state import StateStore, Versioned, alert_id
from rules.states import ACTIVE
from rules.types import rule_type

log = structlog.get_logger(__name__)
# ECS event.type of an alert history line, by the state it entered
EVENT_TYPES = {"firing": "start", "resolved": "end"}
# ECS event.severity is a number; Elastic Security's own scale for low, medium and critical
SEVERITIES = {"info": 21, "warning": 47, "critical": 99}
RULESET = "regwatch"

CLAIM_KEYS = ("outbox_claimed_until", "outbox_claimed_by")  # an alert document's outbox lease


class Alerter:
    def __init__(self, client: Elasticsearch, store: StateStore, known: Known, composer: Composer,
                 namespace: str) -> None:
        self.client = client
        self.store = store
        self.known = known
        self.composer = composer
        self.namespace = namespace

    def apply(self, rule: Rule, measured: list[Measurement], now: float, report: CycleReport,
              window: Window | None = None) -> None:
        """Decide what ``measured`` (at ``now``, over ``window``) does to the rule's alerts, and
        write it."""
        kind = rule_type(rule)
        window = window or Window(now - rule.window, now)
        current = self.known.alerts_of(rule.name)
        stored = {group: item.doc for group, item in current.items()}
        for decision in kind.lifecycle.decide(kind, rule, stored, measured, now):
            item = current.get(decision.group) if not decision.once else None
            self._write(rule, decision, item or Versioned(alert_id(rule.name, decision.group), {}), now, report,
                        window)

    def retire(self, rule: Rule, now: float, report: CycleReport) -> bool:
        """End the active alerts of a rule that no longer exists (reloaded away): a firing one
        resolves, notified as such (as Alertmanager resolves an alert Prometheus stopped sending),
        a pending one goes back to ok. True while any is left (a write lost to another runner is
        tried again next cycle)."""
        left = False
        for group, item in self.known.alerts_of(rule.name).items():
            state = item.doc.get("state")
            if state not in ACTIVE:
                continue
            since, value = item.doc.get("since", now), float(item.doc.get("value", 0.0))
            ended = "resolved" if state == "firing" else "ok"
            decision = Decision(group, {"state": ended, "since": since, "value": value, "notified": now}, value, since,
                                "resolved" if ended == "resolved" else None, ended)
            self._write(rule, decision, item, now, report, Window(now - rule.window, now))
            left = left or self.known.alerts_of(rule.name)[group].doc.get("state") in ACTIVE
        return left

    def _write(self, rule: Rule, decision: Decision, item: Versioned, now: float, report: CycleReport,
               window: Window) -> None:
        group = decision.group
        doc: dict[str, Any] = {"type": "alert", "rule": rule.name, "group": group, **decision.fields,
                               "updated": now}
        queued: list[OutboxEntry] = list(item.doc.get("outbox", []))  # undelivered ones stay queued, in order
        for key in CLAIM_KEYS:  # a send for this alert may be in flight: its claim stays
            if key in item.doc:
                doc[key] = item.doc[key]
        if decision.notify:
            queued.append(self.composer.entry(rule, group, decision.notify, decision.value, decision.since, now,
                                              window, decision.event, reminder=decision.reminder))
        if queued:
            doc["outbox"] = queued
        written = self.store.write(item, doc)
        if written is None:
            return  # another runner changed it first (or created it: an event fires once): it notifies, not us
        self.known.put(written)
        if decision.transition is not None:
            report.transitions.append((rule.name, group, decision.transition))
            self._history(rule, group, decision.transition, decision.value, decision.since, now, window,
                          decision.event)

    def _history(self, rule: Rule, group: str, state: str, value: float, since: float, now: float,
                 window: Window, event: dict[str, Any] | None) -> None:
        dataset = streams.dataset("alert")
        doc_id = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{since}".encode()).hexdigest()
        # the rule's own words, as its notification says them (composed without reading anything)
        message = self.composer.entry(rule, group, state, value, since, now, window, event,
                                      samples=False)["payload"]["message"]
        document = {
            "@timestamp": iso_from_epoch(now),
            "ecs": ECS,
            "message": message,
            "data_stream": {"type": "logs", "dataset": dataset, "namespace": self.namespace},
            # ECS: an alert's start and end (event.type), any other step of its life is info; an
            # alert has no outcome (event.outcome says whether an action succeeded)
            "event": {"kind": "alert", "dataset": dataset, "action": state, "type": [EVENT_TYPES.get(state, "info")],
                      "severity": SEVERITIES[rule.severity], "reason": message,
                      "ingested": iso_from_epoch(time.time())},
            "rule": {"id": rule.name, "name": rule.name, "ruleset": RULESET},
            "modelregistry": {"operation": "other", "alert": {"rule": rule.name, "severity": rule.severity,
                                                              "group": group, "state": state, "value": value,
                                                              "threshold": rule_type(rule).threshold(rule)}},
        }
        try:
            self.client.create(index=streams.data_stream_name("alert", self.namespace), id=doc_id, document=document)
        except ConflictError:
            pass  # a 409: this history line was written already (by us, or a runner beside us)
        except (ApiError, TransportError) as exc:  # history is best effort: the alert state is the truth
            log.warning("history_failed", rule=rule.name, error=str(exc)[:200])
