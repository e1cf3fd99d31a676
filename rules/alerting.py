"""Alerting: a rule's decisions written to its alert documents, its notifications queued, its
transitions kept in the alert history.

Each write is conditional on the document's version as read: of two runners that decide the same
transition, one writes it (and queues its notification), the other finds the document changed
and does nothing. So a transition is notified once, however many runners run.

A cycle's writes go in one bulk request (searchable for the next cycle's one search, after the
refresh of its claims) and the history lines of the transitions written go with the cycle's last
request (:mod:`rules.tail`); each write keeps its own outcome, so a write refused fails only its
rule.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from contract import streams
from contract.ecs import ECS
from contract.timestamps import iso_from_epoch
from rules.compose import Composer
from rules.cycle import CycleReport, Known
from rules.lifecycle import Decision
from rules.model import Rule
from rules.notification import OutboxEntry
from rules.query import Measurement, Window
from rules.state import StateStore, StateWriteError, Versioned, alert_id
from rules.states import ACTIVE
from rules.tail import Outcome, Tail
from rules.types import rule_type

log = structlog.get_logger(__name__)
# ECS event.type of an alert history line, by the state it entered
EVENT_TYPES = {"firing": "start", "resolved": "end"}
# ECS event.severity is a number; Elastic Security's own scale for low, medium and critical
SEVERITIES = {"info": 21, "warning": 47, "critical": 99}
RULESET = "regwatch"

CLAIM_KEYS = ("outbox_claimed_until", "outbox_claimed_by")  # an alert document's outbox lease


@dataclass
class Pending:
    """One alert write decided and not sent yet: the document to store over ``item``."""

    rule: Rule
    decision: Decision
    item: Versioned
    doc: dict[str, Any]
    now: float
    window: Window
    report: CycleReport


class Alerter:
    def __init__(self, client: Elasticsearch, store: StateStore, known: Known, composer: Composer,
                 namespace: str, tail: Tail | None = None) -> None:
        self.client = client
        self.tail = tail  # where the history lines wait for the cycle's end; None: written at once
        self.store = store
        self.known = known
        self.composer = composer
        self.namespace = namespace
        self._pending: list[Pending] = []  # decided by ``apply(defer=True)``, written by ``flush``
        self._pending_rules: set[str] = set()

    def apply(self, rule: Rule, measured: list[Measurement], now: float, report: CycleReport,
              window: Window | None = None, defer: bool = False) -> None:
        """Decide what ``measured`` (at ``now``, over ``window``) does to the rule's alerts, and
        write it; with ``defer`` the writes wait for :meth:`flush` (one bulk request for a cycle's
        rules, not a request per transition). The rule's alerts as known do not change until
        then: a rule is not applied again before its writes are flushed."""
        kind = rule_type(rule)
        window = window or Window(now - rule.window, now)
        current = self.known.alerts_of(rule.name)
        stored = {group: item.doc for group, item in current.items()}
        writes = []
        for decision in kind.lifecycle.decide(kind, rule, stored, measured, now):
            item = current.get(decision.group) if not decision.once else None
            item = item or Versioned(alert_id(rule.name, decision.group), {})
            writes.append(self._pending_write(rule, decision, item, now, report, window))
        if defer:
            self._pending += writes
            self._pending_rules.update(write.rule.name for write in writes)
            return
        for _rule, _window, exc in self._commit(writes):
            raise exc

    def pending(self, rule: str) -> bool:
        """Whether writes of ``rule`` wait for :meth:`flush`."""
        return rule in self._pending_rules

    def flush(self) -> list[tuple[Rule, Window, Exception]]:
        """Write the deferred alert writes in one bulk request (searchable when it returns), and
        their transitions' history lines in one more. Returns the rules whose writes failed (not
        lost to another runner: refused, or the request failed), each with its window and
        error: nothing of theirs that failed is known as written nor notified, and the rule is
        to be evaluated again."""
        writes, self._pending = self._pending, []
        self._pending_rules.clear()
        return self._commit(writes)

    def retire(self, rule: Rule, now: float, report: CycleReport) -> bool:
        """End the active alerts of a rule that no longer exists (reloaded away): a firing one
        resolves, notified as such (as Alertmanager resolves an alert Prometheus stopped sending),
        a pending one goes back to ok. True while any is left (a write lost to another runner is
        tried again next cycle)."""
        writes = []
        for group, item in self.known.alerts_of(rule.name).items():
            state = item.doc.get("state")
            if state not in ACTIVE:
                continue
            since, value = item.doc.get("since", now), float(item.doc.get("value", 0.0))
            ended = "resolved" if state == "firing" else "ok"
            decision = Decision(group, {"state": ended, "since": since, "value": value, "notified": now}, value, since,
                                "resolved" if ended == "resolved" else None, ended)
            writes.append(self._pending_write(rule, decision, item, now, report, Window(now - rule.window, now)))
        for _rule, _window, exc in self._commit(writes):
            raise exc
        return any(item.doc.get("state") in ACTIVE for item in self.known.alerts_of(rule.name).values())

    def _pending_write(self, rule: Rule, decision: Decision, item: Versioned, now: float, report: CycleReport,
                       window: Window) -> Pending:
        group = decision.group
        doc: dict[str, Any] = {"type": "alert", "rule": rule.name, "group": group, **decision.fields,
                               "updated": now}
        queued: list[OutboxEntry] = list(item.doc.get("outbox", []))  # undelivered ones stay queued, in order
        for key in CLAIM_KEYS:  # a send for this alert may be in flight: its claim stays
            if key in item.doc:
                doc[key] = item.doc[key]
        if decision.notify:
            # the sample events are a search each: only for a notification someone will read
            entry = self.composer.entry(rule, group, decision.notify, decision.value, decision.since, now, window,
                                        decision.event, reminder=decision.reminder, samples=bool(rule.notify))
            if entry["targets"]:  # a notification for no target is not queued: nothing to claim nor send
                queued.append(entry)
        if queued:
            doc["outbox"] = queued
        return Pending(rule, decision, item, doc, now, window, report)

    def _commit(self, writes: list[Pending]) -> list[tuple[Rule, Window, Exception]]:
        """Write ``writes`` in one bulk request; then the history lines of the transitions
        written. A write another runner beat (a conflict) is theirs to notify, not ours."""
        if not writes:
            return []
        failed: dict[str, tuple[Rule, Window, Exception]] = {}
        try:
            outcomes = self.store.write_each([(write.item, write.doc) for write in writes])
        except Exception as exc:  # nothing is known of any of them: each rule is evaluated again
            for write in writes:
                failed.setdefault(write.rule.name, (write.rule, write.window, exc))
            return list(failed.values())
        lines: list[tuple[str, dict[str, Any], str]] = []
        for write, written in zip(writes, outcomes, strict=True):
            if isinstance(written, StateWriteError):
                failed.setdefault(write.rule.name, (write.rule, write.window, written))
                continue
            if written is None:
                continue  # another runner changed it first (or created it: an event fires once): it notifies, not us
            self.known.put(written)
            decision = write.decision
            if decision.transition is not None:
                write.report.transitions.append((write.rule.name, decision.group, decision.transition))
                lines.append(self._history(write.rule, decision.group, decision.transition, decision.value,
                                           decision.since, write.now, write.window, decision.event))
        self._write_history(lines)
        return list(failed.values())

    def _write_history(self, lines: list[tuple[str, dict[str, Any], str]]) -> None:
        """The history lines (id, document, rule) with the cycle's last request (in one bulk
        request of their own without a tail); a line written already (a 409: by us, or a runner
        beside us) is fine. History is best effort: the alert state is the truth."""
        if not lines:
            return
        index = streams.data_stream_name("alert", self.namespace)
        operations: list[dict[str, Any]] = []
        for doc_id, document, _rule in lines:
            operations += [{"create": {"_index": index, "_id": doc_id}}, document]

        def done(outcome: Outcome) -> None:
            self._history_written(lines, outcome)

        if self.tail is not None:
            self.tail.add(operations, done)
            return
        try:
            items = self.client.bulk(operations=operations)["items"]
        except (ApiError, TransportError) as exc:
            done(exc)
            return
        done(items)

    @staticmethod
    def _history_written(lines: list[tuple[str, dict[str, Any], str]], outcome: Outcome) -> None:
        if isinstance(outcome, Exception):
            log.warning("history_failed", rules=sorted({rule for _, _, rule in lines}), error=str(outcome)[:200])
            return
        for (_doc_id, _document, rule), item in zip(lines, outcome, strict=True):
            result = next(iter(item.values()))
            if result.get("status") not in (200, 201, 409):
                log.warning("history_failed", rule=rule, error=str(result.get("error"))[:200])

    def _history(self, rule: Rule, group: str, state: str, value: float, since: float, now: float,
                 window: Window, event: dict[str, Any] | None) -> tuple[str, dict[str, Any], str]:
        """A transition's history line: its id (one per alert, state and episode), the document
        and the rule."""
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
        return doc_id, document, rule.name
