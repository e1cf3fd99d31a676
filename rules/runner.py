"""A rule cycle: claim due rules, one ``_msearch``, state transitions, notifications, history.

Two runners side by side claim each rule cycle with optimistic concurrency: one wins, one skips.
Alerts go ok -> pending (while ``for`` has not elapsed) -> firing -> resolved (when the recovery
bound holds, else when the condition no longer does). Firing and resolved are notified; the
notification waits on the alert document's outbox until a notifier accepted it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, Elasticsearch

from parsers import streams
from parsers.timestamps import iso_from_epoch
from rules.metrics import RunnerMetrics
from rules.model import ChangeRule, Rule, ThresholdRule
from rules.notify import DeliveryFailed, Target, render
from rules.query import NO_GROUP, Measurement, Window, header
from rules.state import StateStore, Versioned, alert_id
from rules.states import ACTIVE, changed, step
from rules.types import measure, request, rule_type

log = structlog.get_logger(__name__)

SETTLE_S = 1.0  # an event ingested this recently may not be searchable yet: the window ends before it
MAX_CATCH_UP = 60  # windows re-evaluated, oldest first, after the runner (or Elasticsearch) was away
STALE_RULE = "regwatch-runner-stale"
CLAIM_S = 30.0  # how long a runner owns an outbox entry it is delivering
RETRY_S = (1.0, 5.0, 15.0, 60.0)


@dataclass
class CycleReport:
    evaluated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not due, or claimed by another runner
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # rule, group, new state
    sent: list[str] = field(default_factory=list)  # idempotency keys delivered
    failed: list[str] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)


def _delivery_error(exc: Exception) -> str:
    """DeliveryFailed says what went wrong; anything else is a notifier bug, said with its type."""
    if isinstance(exc, DeliveryFailed):
        return str(exc)[:300]
    log.error("notifier_bug", error=f"{type(exc).__name__}: {exc}"[:300])
    return f"{type(exc).__name__}: {exc}"[:300]


class Runner:
    def __init__(self, client: Elasticsearch, rules: list[Rule], namespace: str,
                 targets: dict[str, Target] | None = None, runner_id: str = "runner", stale_after: float = 180.0,
                 stale_notify: list[str] | None = None, kibana_url: str | None = None,
                 metrics: RunnerMetrics | None = None) -> None:
        self.client = client
        self.rules = rules
        self._by_name = {rule.name: rule for rule in rules}
        self._severities = {rule.name: rule.severity for rule in rules}
        self.namespace = namespace
        self.targets = targets or {}
        self.runner_id = runner_id
        self.stale_after = stale_after
        self.stale_notify = stale_notify or []
        self.kibana_url = kibana_url
        self.store = StateStore(client, namespace)
        self.store.ensure()
        self._alerts: dict[str, list[Versioned]] = {}  # the due rules' alerts, read once per cycle
        self.metrics = metrics or RunnerMetrics()
        self._refreshed: dict[tuple[str, str], float] = {}  # (target, alert id) -> last re-post

    # -- one cycle -----------------------------------------------------------------------------

    def cycle(self, now: float | None = None) -> CycleReport:
        started = time.perf_counter()
        try:
            report = self._cycle(time.time() if now is None else now)
        except Exception:
            self.metrics.cycle_failures.inc()
            raise
        self.metrics.cycle_duration.observe(time.perf_counter() - started)
        for rule in report.evaluated:
            self.metrics.evaluations.labels(rule).inc()
        for rule, _group, state in report.transitions:
            self.metrics.transitions.labels(rule, state).inc()
        for outcome, keys in (("sent", report.sent), ("failed", report.failed), ("silenced", report.silenced)):
            if keys:
                self.metrics.notifications.labels(outcome).inc(len(keys))
        return report

    def _cycle(self, now: float) -> CycleReport:
        report = CycleReport()
        due: list[tuple[Rule, Window]] = []
        claimed = self._claim_all(now)
        for rule in self.rules:
            windows = claimed.get(rule.name, [])
            if not windows:
                report.skipped.append(rule.name)
            due += [(rule, window) for window in windows]
        self._alerts = self.store.alerts_of_rules([r.name for r, _ in due]) if due else {}
        if due:
            searches: list[dict[str, Any]] = []
            for rule, window in due:
                searches += [header(rule, self.namespace), request(rule, window)]
            responses = self.client.msearch(searches=searches)["responses"]
            for (rule, window), response in zip(due, responses, strict=True):
                if rule.name not in report.evaluated:
                    report.evaluated.append(rule.name)
                self._transition(rule, measure(rule, response, window), window.end + SETTLE_S, report)
        self._check_runners(now, report)
        self.deliver(now, report)
        self._firing(now)
        self._heartbeat(now, due)
        return report

    def _claim_all(self, now: float) -> dict[str, list[Window]]:
        """Claim every due rule's cycle in one mget and one bulk (optimistic concurrency)."""
        end = now - SETTLE_S
        cycles = self.store.get_many([f"cycle:{rule.name}" for rule in self.rules])
        writes, wanted = [], []
        for rule, cycle in zip(self.rules, cycles, strict=True):
            last_end = cycle.doc.get("last_end", end - rule.interval)
            if cycle.seq_no is not None and end - last_end < rule.interval:
                continue
            writes.append((cycle, {"type": "cycle", "rule": rule.name, "last_end": end, "updated": now,
                                   "runner": self.runner_id}))
            wanted.append((rule, last_end))
        claimed: dict[str, list[Window]] = {}
        for (rule, last_end), written in zip(wanted, self.store.write_many(writes), strict=True):
            if written is not None:
                claimed[rule.name] = rule_type(rule).windows(rule, last_end, end, MAX_CATCH_UP)
        return claimed

    # -- monitor the monitor -------------------------------------------------------------------

    def _heartbeat(self, now: float, due: list[tuple[Rule, Window]]) -> None:
        lag = max((now - w.end for _, w in due), default=0.0)
        item = self.store.get(f"runner:{self.runner_id}")
        self.store.write(item, {"type": "runner", "runner": self.runner_id, "last_cycle": now, "lag": lag,
                                "rules": len(self.rules), "updated": now})

    def _check_runners(self, now: float, report: CycleReport) -> None:
        """Any live runner raises an alert for a runner that stopped completing cycles."""
        stale_after = self.stale_after
        rule = ThresholdRule(name=STALE_RULE, type="threshold", interval=stale_after, window=stale_after,
                             group_by="runner", condition={"op": ">", "value": stale_after}, severity="critical",
                             notify=self.stale_notify, message="rule runner {group} completed no cycle for {value} s")
        ages = [Measurement(r["runner"], round(now - r["last_cycle"], 1)) for r in self.store.runners()
                if r["runner"] != self.runner_id]
        self._transition(rule, ages, now, report)

    def _transition(self, rule: Rule, measured: list[Measurement], now: float, report: CycleReport) -> None:
        kind = rule_type(rule)
        if kind.mode == "event":
            for event_measure in measured:
                for event in event_measure.events:
                    self._fire_once(rule, event, now, report)
            return
        if kind.mode == "change":
            self._changes(rule, measured, now, report)
            return
        current = {item.doc["group"]: item for item in self._current(rule.name)}
        values = {m.group: m.value for m in measured}
        if not rule.group_by and NO_GROUP not in values:
            values[NO_GROUP] = 0.0
        for group in set(values) | {g for g, item in current.items() if item.doc.get("state") in ACTIVE}:
            value = values.get(group, 0.0)
            item = current.get(group) or Versioned(alert_id(rule.name, group), {})
            state = item.doc.get("state", "ok")
            decided = step(kind, rule, state, item.doc.get("since"), item.doc.get("notified"), value, now)
            unchanged = decided.state == state and not decided.notify and item.seq_no is not None and (
                state not in ACTIVE or item.doc.get("value") == value)
            if unchanged:
                continue
            since = decided.since
            doc = {"type": "alert", "rule": rule.name, "group": group, "state": decided.state, "since": since,
                   "value": value, "updated": now}
            queued = list(item.doc.get("outbox", []))  # undelivered notifications stay queued, in order
            for key in ("outbox_claimed_until", "outbox_claimed_by"):
                if key in item.doc:
                    doc[key] = item.doc[key]
            doc["notified"] = item.doc.get("notified", since)
            if decided.notify:
                queued.append(self._outbox(rule, group, decided.notify, value, since, now, reminder=decided.reminder))
                doc["notified"] = now
            if queued:
                doc["outbox"] = queued
            written = self.store.write(item, doc)
            if written is None:
                continue  # another runner changed it first: it notifies, not us
            self._remember(rule.name, written)
            if decided.state != state:
                report.transitions.append((rule.name, group, decided.state))
                self._history(rule, group, decided.state, value, since, now)

    def _current(self, rule: str) -> list[Versioned]:
        """This rule's alerts as read at the start of the cycle, or fresh for internal rules."""
        return self._alerts[rule] if rule in self._alerts else self.store.alerts_of(rule)

    def _remember(self, rule: str, written: Versioned) -> None:
        alerts = self._alerts
        if rule in alerts:
            alerts[rule] = [a for a in alerts[rule] if a.id != written.id] + [written]

    def _changes(self, rule: ChangeRule, measured: list[Measurement], now: float, report: CycleReport) -> None:
        current = {item.doc["group"]: item for item in self._current(rule.name)}
        for measurement in measured:
            value = measurement.events[0]["value"]
            item = current.get(measurement.group) or Versioned(alert_id(rule.name, measurement.group), {})
            previous = item.doc.get("last_value")
            if previous == value:
                continue
            fired = changed(previous, value)
            doc = {"type": "alert", "rule": rule.name, "group": measurement.group, "state": "changed", "since": now,
                   "value": 0.0, "updated": now, "last_value": value, "outbox": list(item.doc.get("outbox", []))}
            if fired:  # the first value seen is a baseline, not a change
                entry = self._outbox(rule, measurement.group, "changed", 0.0, now, now,
                                     {"_id": "", rule.field: value, "previous": previous})
                doc["outbox"].append(entry)
            if not doc["outbox"]:
                del doc["outbox"]
            written = self.store.write(item, doc)
            if written is not None:
                self._remember(rule.name, written)
            if written is not None and fired:
                report.transitions.append((rule.name, measurement.group, "changed"))
                self._history(rule, measurement.group, "changed", 0.0, now, now)

    def _fire_once(self, rule: Rule, event: dict[str, Any], now: float, report: CycleReport) -> None:
        group = event["_id"]
        item = Versioned(alert_id(rule.name, group), {})
        doc = {"type": "alert", "rule": rule.name, "group": group, "state": "fired", "since": now, "value": 1.0,
               "updated": now, "outbox": [self._outbox(rule, group, "fired", 1.0, now, now, event)]}
        if self.store.write(item, doc) is not None:  # created: first time this event is seen
            report.transitions.append((rule.name, group, "fired"))
            self._history(rule, group, "fired", 1.0, now, now)

    def _outbox(self, rule: Rule, group: str, state: str, value: float, since: float, now: float,
                event: dict[str, Any] | None = None, reminder: bool = False) -> dict[str, Any]:
        moment = now if reminder else since
        key = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{moment}".encode()).hexdigest()
        threshold = rule_type(rule).threshold(rule)
        message = render(rule.message, {"rule": rule.name, "state": state, "value": round(value, 4),
                                        "threshold": threshold, "group": group, "severity": rule.severity})
        payload = {"rule": rule.name, "group": group, "group_by": rule.group_by, "state": state, "value": value,
                   "threshold": threshold, "severity": rule.severity, "labels": dict(rule.labels), "since": since,
                   "at": now, "message": message, "key": key}
        if self.kibana_url:
            payload["dashboard"] = (f"{self.kibana_url.rstrip('/')}/app/dashboards#/view/regwatch-dashboard-alerts"
                                    f"?_g=(time:(from:'{iso_from_epoch(since - 3600, millis=False)}',to:'{iso_from_epoch(now + 300, millis=False)}'))")
        if event is not None:
            payload["event"] = {k: v for k, v in event.items() if not k.startswith("_")}
        return {"key": key, "targets": list(rule.notify), "payload": payload, "attempts": 0, "due": now,
                "labels": dict(rule.labels)}

    def _history(self, rule: Rule, group: str, state: str, value: float, since: float, now: float) -> None:
        dataset = streams.dataset("alert")
        doc_id = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{since}".encode()).hexdigest()
        document = {
            "@timestamp": iso_from_epoch(now),
            "data_stream": {"type": "logs", "dataset": dataset, "namespace": self.namespace},
            "event": {"kind": "alert", "dataset": dataset, "action": state, "outcome": "success"},
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

    # -- the outbox ----------------------------------------------------------------------------

    def deliver(self, now: float, report: CycleReport) -> None:
        """Send what waits in the outboxes: claim, send (digest targets: one message for all),
        write back what is left for a later try."""
        claimed_docs: list[tuple[Versioned, list[dict[str, Any]]]] = []
        for item in self.store.with_outbox():
            queued = item.doc["outbox"]
            if item.doc.get("outbox_claimed_until", 0) > now or all(e["due"] > now for e in queued):
                continue
            claimed = self.store.write(item, item.doc | {"outbox_claimed_until": now + CLAIM_S,
                                                         "outbox_claimed_by": self.runner_id})
            if claimed is not None:  # else another runner is delivering it
                claimed_docs.append((claimed, [dict(e) for e in queued]))
        digests: dict[str, list[dict[str, Any]]] = {}
        for _claimed, entries in claimed_docs:
            for entry in entries:
                if entry["due"] > now:
                    continue
                if self._silenced(entry, now):
                    report.silenced.append(entry["key"])
                    entry["targets"] = []
                    continue
                left = []
                for name in entry["targets"]:
                    target = self.targets.get(name)
                    if target is not None and target.digest:
                        digests.setdefault(name, []).append(entry)
                        continue
                    try:
                        if target is None:
                            raise DeliveryFailed(f"unknown notifier {name!r}")
                        target.send(entry["payload"])
                    except Exception as exc:  # noqa: BLE001 - one bad target must not stop the others
                        left.append(name)
                        entry["last_error"] = _delivery_error(exc)
                waiting = [n for n in entry["targets"] if n in self.targets and self.targets[n].digest]
                entry["targets"] = left + waiting
        for name, entries in digests.items():
            try:
                self.targets[name].send_digest([e["payload"] for e in entries])
            except Exception as exc:  # noqa: BLE001 - isolated like a single delivery
                for entry in entries:
                    entry["last_error"] = _delivery_error(exc)
                continue
            for entry in entries:
                entry["targets"] = [n for n in entry["targets"] if n != name]
        for claimed, entries in claimed_docs:
            remaining = []
            for entry in entries:
                if entry["due"] > now or entry["targets"]:
                    if entry["due"] <= now:  # tried and failed for some target: back off
                        attempts = entry["attempts"] + 1
                        entry |= {"attempts": attempts, "due": now + RETRY_S[min(attempts - 1, len(RETRY_S) - 1)]}
                        report.failed.append(entry["key"])
                        log.warning("notification_failed", key=entry["key"], error=entry.get("last_error"),
                                    attempts=attempts)
                    remaining.append(entry)
                elif entry["key"] not in report.silenced:
                    report.sent.append(entry["key"])
            doc = {k: v for k, v in claimed.doc.items()
                   if k not in ("outbox", "outbox_claimed_until", "outbox_claimed_by")}
            if remaining:
                doc["outbox"] = remaining
            if self.store.write(claimed, doc) is None:
                log.warning("outbox_write_conflict", alert=claimed.id)

    # -- what fires now: the gauge, and targets that want firing alerts re-posted ---------------

    def _firing(self, now: float) -> None:
        """Set the firing gauge and re-post firing alerts to targets that hold alert state
        (Alertmanager) every ``resend_s``. A re-post is not a notification: it keeps the target's
        copy of the alert alive, so it is neither queued nor counted; a failed one is tried on the
        next cycle. The first re-post of an alert comes ``resend_s`` after this runner first saw it
        firing (its firing notification went through the outbox)."""
        firing = self.store.firing()
        self.metrics.set_firing(firing, self._severities)
        seen: set[tuple[str, str]] = set()
        for alert in firing:
            rule = self._by_name.get(alert["rule"])
            if rule is None:
                continue
            for name in rule.notify:
                target = self.targets.get(name)
                if not getattr(target, "refreshes", False):
                    continue
                key = (name, alert_id(rule.name, alert["group"]))
                seen.add(key)
                last = self._refreshed.setdefault(key, now)
                if now - last < target.resend_s:
                    continue
                entry = self._outbox(rule, alert["group"], "firing", alert["value"], alert["since"], now)
                if self._silenced(entry, now):
                    continue
                try:
                    target.send(entry["payload"])
                except Exception as exc:  # noqa: BLE001 - the next cycle tries again
                    log.warning("refresh_failed", target=name, rule=rule.name, error=_delivery_error(exc))
                    continue
                self._refreshed[key] = now
        for key in set(self._refreshed) - seen:  # resolved: forget
            del self._refreshed[key]

    # -- silences ------------------------------------------------------------------------------

    def silence(self, rule: str, labels: dict[str, str] | None = None, until: float | None = None,
                group: str | None = None, reason: str = "") -> str:
        """Mute notifications of a rule (and labels) until a time, or, with ``until=None`` and a
        group, until that alert resolves."""
        silence_id = "silence:" + hashlib.sha1(f"{rule}{labels}{until}{group}{time.time()}".encode()).hexdigest()[:16]
        self.store.write(Versioned(silence_id, {}), {"type": "silence", "rule": rule, "labels": labels or {},
                                                     "until": until, "group": group, "reason": reason,
                                                     "updated": time.time()})
        return silence_id

    def _silences(self) -> list[Versioned]:
        hits = self.store.client.search(index=self.store.index, size=1000, seq_no_primary_term=True,
                                        query={"term": {"type": "silence"}})
        return [Versioned(h["_id"], h["_source"], h["_seq_no"], h["_primary_term"]) for h in hits["hits"]["hits"]]

    def _silenced(self, entry: dict[str, Any], now: float) -> bool:
        payload = entry["payload"]
        for item in self._silences():
            silence = item.doc
            if silence["rule"] not in ("*", payload["rule"]):
                continue
            if any(entry.get("labels", {}).get(k) != v for k, v in silence["labels"].items()):
                continue
            if silence["until"] is not None:
                if now < silence["until"]:
                    return True
            elif silence.get("group") in (None, payload["group"]):
                # Until resolved: mutes the alert up to and including its resolution, then ends.
                if payload["state"] == "resolved":
                    self.store.write(item, silence | {"until": now, "ended_by": "resolved"})
                return True
        return False
