"""A rule cycle: claim due rules, one ``_msearch``, state transitions, notifications, history.

Two runners side by side claim each rule cycle with optimistic concurrency: one wins, one skips.
Alerts go ok -> pending (while ``for`` has not elapsed) -> firing -> resolved (when the recovery
bound holds, else when the condition no longer does). Firing and resolved are notified; the
notification waits on the alert document's outbox until a notifier accepted it.

One rule that fails (a bad response for it) is logged, counted and tried again next cycle; the
others go on. Deliveries of a cycle run concurrently, one thread per target, each with a
deadline below the outbox lease; the cycle waits a moment (``WAIT_S``) for their answers, and a
send still running is taken by a later cycle, its claim held meanwhile: a target that hangs
costs its own notifications a timeout, not the other targets, rules or cycles. A failure that
may pass is retried with a bounded, jittered exponential back-off; one that will not (a 404
from a revoked webhook) is dropped for that target, recorded and counted. A target with no
success for ``failing_after`` seconds raises the built-in ``regwatch-notifier-failing`` alert on
the other targets.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, Elasticsearch

from contract import streams
from contract.timestamps import iso_from_epoch
from rules.links import discover_url
from rules.metrics import RunnerMetrics
from rules.model import ChangeRule, Rule, ThresholdRule
from rules.notify import DeliveryFailed, Notifier, Target, render
from rules.notify.base import max_timeout, send_deadline
from rules.query import NO_GROUP, Measurement, Window, filters, group_values, header, indices, time_sort
from rules.state import StateStore, Versioned, alert_id
from rules.states import ACTIVE, changed, step
from rules.types import measure, request, rule_type

log = structlog.get_logger(__name__)

SETTLE_S = 1.0  # an event ingested this recently may not be searchable yet: the window ends before it
MAX_CATCH_UP = 60  # windows re-evaluated, oldest first, after the runner (or Elasticsearch) was away
STALE_RULE = "regwatch-runner-stale"
NOTIFIER_RULE = "regwatch-notifier-failing"
SYNTHETIC = (STALE_RULE, NOTIFIER_RULE)  # the runner's own rules: about regwatch, not about the data
CLAIM_S = 30.0  # how long a runner owns an outbox entry it is delivering
RETRY_BASE_S = 2.0  # the first retry of a failed delivery; then 4, 8, 16 s... up to retry_max_s
RETRY_MAX_S = 600.0
FAILING_AFTER_S = 600.0
GRACE_S = 0.5  # past a target's deadline, for its thread to hand its outcome over
CLAIM_KEYS = ("outbox_claimed_until", "outbox_claimed_by")  # an alert document's outbox lease
WAIT_S = 0.5  # how long a cycle waits for its sends' answers; later ones are taken at the next cycle


@dataclass
class CycleReport:
    evaluated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not due, or claimed by another runner
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # rule, group, new state
    sent: list[str] = field(default_factory=list)  # idempotency keys delivered
    failed: list[str] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # a target refused for good (not retried)
    rule_failures: list[str] = field(default_factory=list)  # rules that failed this cycle (tried again)
    idle: bool = False  # nothing was due: no request was sent


@dataclass
class _Claim:
    """An alert document this runner holds the outbox lease of, and its entries as they stand.
    It is held until every send made for it answered (or timed out), which may be cycles later."""

    item: Versioned
    entries: list[dict[str, Any]]
    jobs: set[int] = field(default_factory=set)  # the sends for it not answered yet (their ids)
    tried: set[str] = field(default_factory=set)  # keys of the entries that were due: sent, or silenced
    quiet: set[str] = field(default_factory=set)  # keys silenced or dropped by a target: not "sent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@dataclass
class _Job:
    """One send to one target: an outbox entry, a batch of them (a digest, an aggregation), or
    a re-post (no claim)."""

    target: str
    members: list[tuple[_Claim | None, dict[str, Any]]]
    batch: bool = False
    refresh: bool = False  # a re-post of a firing alert (its outcome only says when to re-post)


@dataclass
class _Outcome:
    job: _Job
    error: DeliveryFailed | None
    seconds: float = 0.0
    counted: bool = True  # an attempt that says something about the target (not: stopped, busy)
    fatal: BaseException | None = None  # not an error but a death (SystemExit...): the cycle dies of it
    answered: float = field(default_factory=time.perf_counter)  # when the target answered


@dataclass
class _Flight:
    """A send started and not answered yet: its outcome is taken when it comes, by this cycle or
    a later one; past ``deadline`` (and a grace for its thread) it has timed out."""

    job: _Job
    deadline: float  # time.monotonic()
    timeout: float  # the target's timeout_s, as it was applied
    due: float  # the deadline (and grace) on the cycles' clock: a cycle is due then to record it


def _work(target: Notifier, jobs: list[_Job], payloads: list[list[dict[str, Any]]], deadline: float,
          results: queue.SimpleQueue[_Outcome]) -> None:
    """A target's sends of one cycle, in its own thread, all ended by ``deadline``. Each outcome
    is handed over as it comes, to the runner's queue: the cycle that sent it, or the next one,
    records it. One that comes after its deadline and grace is dropped (the send was recorded as
    timed out, and the notification is sent again: at least once)."""
    with send_deadline(deadline):
        for job, payload in zip(jobs, payloads, strict=True):
            started = time.perf_counter()
            error = None
            if time.monotonic() >= deadline:
                error = DeliveryFailed("timed out: no time left for this send")
            else:
                try:
                    if job.batch:
                        target.send_digest(payload)
                    else:
                        target.send(payload[0])
                except DeliveryFailed as exc:
                    error = exc
                except Exception as exc:
                    log.error("notifier_bug", target=job.target, error=type(exc).__name__)
                    error = DeliveryFailed(f"{type(exc).__name__} in the notifier")
                except BaseException as exc:
                    results.put(_Outcome(job, None, fatal=exc))
                    return
            results.put(_Outcome(job, error, time.perf_counter() - started))


class Runner:
    def __init__(self, client: Elasticsearch, rules: list[Rule], namespace: str,
                 targets: dict[str, Target] | None = None, runner_id: str = "runner", stale_after: float = 180.0,
                 stale_notify: list[str] | None = None, kibana_url: str | None = None,
                 metrics: RunnerMetrics | None = None, lease_s: float = CLAIM_S,
                 stop: threading.Event | None = None, retry_max_s: float = RETRY_MAX_S,
                 failing_after: float = FAILING_AFTER_S, failing_notify: list[str] | None = None,
                 rng: random.Random | None = None) -> None:
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
        self.lease_s = lease_s
        self.retry_max_s = retry_max_s
        self.failing_after = failing_after
        self.failing_notify = failing_notify  # None: every notifier but the failing ones
        self._stop = stop or threading.Event()  # set: in-flight sends are given up, the cycle ends
        self._rng = rng or random.Random()
        self._inflight: dict[str, threading.Thread] = {}  # target -> the thread of its last send
        # Sends outlive the cycle that started them: their outcomes come in on this queue, and the
        # claims they were made for stay held (the lease keeps other runners off) until each
        # answered or timed out.
        self._results: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._flights: dict[int, _Flight] = {}  # id of the job -> a send not answered yet
        self._held: dict[str, _Claim] = {}  # alert document id -> its claim, held across cycles
        self._fares: dict[str, list[_Outcome]] = {}  # target -> outcomes taken, not yet in its state
        self._claims: dict[str, tuple[Versioned, float]] = {}  # rule -> its cycle document, last_end before
        self._started = time.monotonic()  # when the current cycle began (its ``now`` may be a test's clock)
        self.host = socket.gethostname()  # the heartbeat says where and which process, to retire dead ones
        self.pid = os.getpid()
        self.store = StateStore(client, namespace)
        self.store.ensure()
        self.metrics = metrics or RunnerMetrics()
        self._refreshed: dict[tuple[str, str], float] = {}  # (target, alert id) -> last re-post
        # What this cycle knows of the state index: the documents its one search read, with this
        # runner's writes since (by id), and the alerts among them by rule.
        self._docs: dict[str, Versioned] = {}
        self._alerts: dict[str, dict[str, Versioned]] = {}
        # When there is something to do, as last seen: a wake-up before that sends no request.
        self._rule_due: dict[str, float] = {}
        self._outbox_due = 0.0
        self._last_cycle = 0.0

    # -- when -----------------------------------------------------------------------------------

    @property
    def heartbeat_every(self) -> float:
        return max(self.stale_after / 3, 1.0)

    def wake_at(self) -> float:
        """The earliest moment something is due: a rule's next window, an outbox entry (a retry,
        an aggregation), a re-post, the heartbeat, an answer to record (now, if one came in; at a
        send's deadline, if none did). Before it, :meth:`cycle` sends nothing."""
        moments = [self._last_cycle + self.heartbeat_every, self._outbox_due]
        moments += [flight.due for flight in self._flights.values()]
        if not self._results.empty():
            moments.append(0.0)
        moments += [self._rule_due.get(rule.name, 0.0) for rule in self.rules]
        for (name, _alert), last in self._refreshed.items():
            target = self.targets.get(name)
            if target is not None:
                moments.append(last + getattr(target, "resend_s", 0.0))
        return min(moments)

    # -- one cycle -----------------------------------------------------------------------------

    def cycle(self, now: float | None = None) -> CycleReport:
        """One cycle if anything is due at ``now``; an idle wake-up (no request at all) if not."""
        now = time.time() if now is None else now
        if now < self.wake_at():
            self.metrics.idle_wakeups.inc()
            return CycleReport(idle=True)
        started = time.perf_counter()
        self._started = time.monotonic()
        try:
            report = self._cycle(now)
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
        self._drain(now, report)  # before the search: it reads what the late answers changed
        due: list[tuple[Rule, Window]] = []
        claimed = self._claim_all(now)
        for rule in self.rules:
            windows = claimed.get(rule.name, [])
            if not windows:
                report.skipped.append(rule.name)
            due += [(rule, window) for window in windows]
        names = sorted({rule.name for rule, _ in due} | set(SYNTHETIC))
        searches: list[dict[str, Any]] = list(self.store.cycle_search(names))
        asked: list[tuple[Rule, Window]] = []
        failed: set[str] = set()
        for rule, window in due:
            if rule.name in failed:
                continue
            try:
                searches += [header(rule, self.namespace), request(rule, window)]
            except Exception as exc:
                failed.add(rule.name)
                self._rule_failed(rule, window, exc, report)
                continue
            asked.append((rule, window))
        responses = self.client.msearch(searches=searches)["responses"]
        self._read_state(self.store.documents(responses[0]))
        for (rule, window), response in zip(asked, responses[1:], strict=True):
            if rule.name in failed:
                continue  # its later windows wait for the failed one, next cycle
            try:
                self._transition(rule, measure(rule, response, window), window.end + SETTLE_S, report, window)
            except Exception as exc:
                failed.add(rule.name)
                self._rule_failed(rule, window, exc, report)
                continue
            if rule.name not in report.evaluated:
                report.evaluated.append(rule.name)
        self._check_runners(now, report)
        self._check_notifiers(now, report)
        self.deliver(now, report)
        self._firing(now, report)
        self._heartbeat(now, due)
        return report

    def _rule_failed(self, rule: Rule, window: Window, exc: Exception, report: CycleReport) -> None:
        """Log and count one rule's failure, and give its claim back from ``window`` on, so the
        next cycle evaluates that window again (the rule's later windows too)."""
        log.warning("rule_failed", rule=rule.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        self.metrics.rule_failures.labels(rule.name).inc()
        report.rule_failures.append(rule.name)
        claimed = self._claims.get(rule.name)
        if claimed is None:
            return
        cycle, before = claimed
        windows = rule_type(rule).windows(rule, before, cycle.doc["last_end"], MAX_CATCH_UP)
        earlier = [w.end for w in windows if w.end < window.end]
        back = max(earlier) if earlier else before
        try:
            written = self.store.write(cycle, cycle.doc | {"last_end": back})
        except (ApiError, TransportError) as err:
            log.warning("rule_claim_not_returned", rule=rule.name, error=type(err).__name__)
            return
        if written is not None:
            self._claims[rule.name] = (written, before)

    def _read_state(self, documents: list[Versioned]) -> None:
        self._docs = {}
        self._alerts = {}
        for item in documents:
            self._put(item)

    def _put(self, item: Versioned) -> None:
        """Keep a state document as read or as just written."""
        self._docs[item.id] = item
        if item.doc.get("type") == "alert":
            self._alerts.setdefault(item.doc["rule"], {})[item.id] = item

    def _of_type(self, kind: str) -> list[Versioned]:
        return [item for item in self._docs.values() if item.doc.get("type") == kind]

    def _claim_all(self, now: float) -> dict[str, list[Window]]:
        """Claim every due rule's cycle in one mget and one bulk (optimistic concurrency)."""
        end = now - SETTLE_S
        cycles = self.store.get_many([f"cycle:{rule.name}" for rule in self.rules])
        writes, wanted = [], []
        for rule, cycle in zip(self.rules, cycles, strict=True):
            last_end = cycle.doc.get("last_end", end - rule.interval)
            if cycle.seq_no is not None and end - last_end < rule.interval:
                self._rule_due[rule.name] = last_end + rule.interval + SETTLE_S
                continue
            writes.append((cycle, {"type": "cycle", "rule": rule.name, "last_end": end, "updated": now,
                                   "runner": self.runner_id}))
            wanted.append((rule, last_end))
        claimed: dict[str, list[Window]] = {}
        self._claims = {}
        for (rule, last_end), written in zip(wanted, self.store.write_many(writes), strict=True):
            if written is not None:  # else another runner claimed it: due alike, an interval on
                claimed[rule.name] = rule_type(rule).windows(rule, last_end, end, MAX_CATCH_UP)
                self._claims[rule.name] = (written, last_end)
            self._rule_due[rule.name] = end + rule.interval + SETTLE_S
        return claimed

    # -- monitor the monitor -------------------------------------------------------------------

    def _heartbeat(self, now: float, due: list[tuple[Rule, Window]], state: str = "running") -> None:
        lag = max((now - w.end for _, w in due), default=0.0)
        self.store.beat(f"runner:{self.runner_id}", {
            "type": "runner", "runner": self.runner_id, "last_cycle": now, "lag": lag, "rules": len(self.rules),
            "updated": now, "state": state, "host": self.host, "pid": self.pid})
        self._last_cycle = now

    def stopped(self) -> None:
        """A clean stop: sends still in flight are waited for up to their deadline (given up at
        once when the stop event is set: SIGTERM), what is known is recorded and the claims are
        released; the heartbeat says so, and no live runner reports this one as stale."""
        now, report = time.time(), CycleReport()
        self._started = time.monotonic()
        if self._flights:
            self._await(max(f.deadline for f in self._flights.values()) + GRACE_S, now, report)
        self._drain(now, report, final=True)
        self._heartbeat(time.time(), [], state="stopped")

    def retire_dead_runners(self) -> list[str]:
        """Mark as stopped the heartbeats of runners of this host whose process is gone (a runner
        killed and started again has a new id): their stale alert resolves instead of firing
        forever. A runner of another host cannot be checked from here and is left to go stale."""
        retired = []
        for runner in self.store.runners():
            if (runner.get("host") != self.host or runner.get("state") == "stopped"
                    or runner["runner"] == self.runner_id or not runner.get("pid") or _alive(runner["pid"])):
                continue
            self.store.beat(f"runner:{runner['runner']}", runner | {"state": "stopped", "stopped_by": self.runner_id})
            retired.append(runner["runner"])
        return retired

    def _check_runners(self, now: float, report: CycleReport) -> None:
        """Any live runner raises an alert for a runner that stopped completing cycles."""
        stale_after = self.stale_after
        rule = ThresholdRule(name=STALE_RULE, type="threshold", interval=stale_after, window=stale_after,
                             group_by="runner", condition={"op": ">", "value": stale_after}, severity="critical",
                             notify=self.stale_notify, message="rule runner {group} completed no cycle for {value} s",
                             sample={"size": 0})
        ages = [Measurement(r.doc["runner"], round(now - r.doc["last_cycle"], 1)) for r in self._of_type("runner")
                if r.doc["runner"] != self.runner_id and r.doc.get("state") != "stopped"]
        self._transition(rule, ages, now, report)

    def _failing_since(self, name: str) -> float | None:
        """Since when a target has had no success (None: it is fine), as the state index says."""
        item = self._docs.get(f"notifier:{name}")
        return item.doc.get("failing_since") if item is not None else None

    def _check_notifiers(self, now: float, report: CycleReport) -> None:
        """A notifier with no success for ``failing_after`` seconds raises an alert, sent to the
        other notifiers; /metrics says which fail."""
        after = self.failing_after
        notify = self.failing_notify if self.failing_notify is not None else sorted(self.targets)
        rule = ThresholdRule(name=NOTIFIER_RULE, type="threshold", interval=after, window=after, group_by="target",
                             condition={"op": ">=", "value": after}, severity="critical", notify=notify,
                             message="notifier {group} has delivered nothing for {value} s", sample={"size": 0})
        measured = []
        for name in self.targets:
            since = self._failing_since(name)
            failing = since is not None and now - since >= after
            self.metrics.notifier_failing.labels(name).set(1 if failing else 0)
            if since is not None:
                measured.append(Measurement(name, round(now - since, 1)))
        self._transition(rule, measured, now, report)

    def _transition(self, rule: Rule, measured: list[Measurement], now: float, report: CycleReport,
                    window: Window | None = None) -> None:
        kind = rule_type(rule)
        window = window or Window(now - rule.window, now)
        if kind.mode == "event":
            for event_measure in measured:
                for event in event_measure.events:
                    self._fire_once(rule, event, now, report, window)
            return
        if kind.mode == "change":
            assert isinstance(rule, ChangeRule)  # the one rule type whose mode is "change"
            self._changes(rule, measured, now, report, window)
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
            # Nothing to store: no change, or a group never seen that is and stays ok (no document
            # per quiet rule and group: writes happen on transitions, not per cycle).
            unchanged = decided.state == state and not decided.notify and (
                item.seq_no is None if state == "ok" else state not in ACTIVE or item.doc.get("value") == value)
            if unchanged:
                continue
            since = decided.since
            doc = {"type": "alert", "rule": rule.name, "group": group, "state": decided.state, "since": since,
                   "value": value, "updated": now}
            queued = list(item.doc.get("outbox", []))  # undelivered notifications stay queued, in order
            for key in CLAIM_KEYS:
                if key in item.doc:
                    doc[key] = item.doc[key]
            doc["notified"] = item.doc.get("notified", since)
            if decided.notify:
                queued.append(self._outbox(rule, group, decided.notify, value, since, now, window,
                                           reminder=decided.reminder))
                doc["notified"] = now
            if queued:
                doc["outbox"] = queued
            written = self.store.write(item, doc)
            if written is None:
                continue  # another runner changed it first: it notifies, not us
            self._put(written)
            if decided.state != state:
                report.transitions.append((rule.name, group, decided.state))
                self._history(rule, group, decided.state, value, since, now)

    def _current(self, rule: str) -> list[Versioned]:
        """This rule's alerts as the cycle's search read them, with this cycle's writes."""
        return list(self._alerts.get(rule, {}).values())

    def _changes(self, rule: ChangeRule, measured: list[Measurement], now: float, report: CycleReport,
                 window: Window) -> None:
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
            for key in CLAIM_KEYS:  # a send for this alert may be in flight: its claim stays
                if key in item.doc:
                    doc[key] = item.doc[key]
            if fired:  # the first value seen is a baseline, not a change
                entry = self._outbox(rule, measurement.group, "changed", 0.0, now, now, window,
                                     {"_id": "", rule.field: value, "previous": previous})
                doc["outbox"].append(entry)
            if not doc["outbox"]:
                del doc["outbox"]
            written = self.store.write(item, doc)
            if written is not None:
                self._put(written)
            if written is not None and fired:
                report.transitions.append((rule.name, measurement.group, "changed"))
                self._history(rule, measurement.group, "changed", 0.0, now, now)

    def _fire_once(self, rule: Rule, event: dict[str, Any], now: float, report: CycleReport, window: Window) -> None:
        group = event["_id"]
        item = Versioned(alert_id(rule.name, group), {})
        doc = {"type": "alert", "rule": rule.name, "group": group, "state": "fired", "since": now, "value": 1.0,
               "updated": now, "outbox": [self._outbox(rule, group, "fired", 1.0, now, now, window, event)]}
        written = self.store.write(item, doc)
        if written is not None:  # created: first time this event is seen
            self._put(written)
            report.transitions.append((rule.name, group, "fired"))
            self._history(rule, group, "fired", 1.0, now, now)

    def _outbox(self, rule: Rule, group: str, state: str, value: float, since: float, now: float, window: Window,
                event: dict[str, Any] | None = None, reminder: bool = False, samples: bool = True) -> dict[str, Any]:
        """A notification, queued on the alert document until every target took it. The payload
        says enough to act on: the window, the query, sample events, links."""
        moment = now if reminder else since
        key = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{moment}".encode()).hexdigest()
        threshold = rule_type(rule).threshold(rule)
        message = render(rule.message, {"rule": rule.name, "state": state, "value": round(value, 4),
                                        "threshold": threshold, "group": group, "severity": rule.severity})
        payload: dict[str, Any] = {
                   "rule": rule.name, "group": group, "group_by": rule.group_by, "state": state, "value": value,
                   "threshold": threshold, "severity": rule.severity, "labels": dict(rule.labels), "since": since,
                   "at": now, "message": message, "key": key, "alert": alert_id(rule.name, group),
                   "groups": group_values(rule, group),
                   "window": {"start": iso_from_epoch(window.start), "end": iso_from_epoch(window.end),
                              "time_field": rule.time_field},
                   "index": indices(rule, self.namespace) if rule.name not in SYNTHETIC else self.store.index,
                   "query": {"bool": {"filter": filters(rule, window)}}}
        if self.kibana_url and rule.name not in SYNTHETIC:
            payload["dashboard"] = (f"{self.kibana_url.rstrip('/')}/app/dashboards#/view/regwatch-dashboard-alerts"
                                    f"?_g=(time:(from:'{iso_from_epoch(since - 3600, millis=False)}',"
                                    f"to:'{iso_from_epoch(now + 300, millis=False)}'))")
            payload["discover"] = discover_url(self.kibana_url, rule, window.start, window.end, group)
        if event is not None:
            payload["event"] = {k: v for k, v in event.items() if not k.startswith("_")}
        elif samples and state == "firing" and rule.sample.size and rule.name not in SYNTHETIC:
            payload["events"] = self._samples(rule, window, group)
        due = now
        if rule.aggregation:  # held and sent with the rule's other notifications at the period's end
            due = math.ceil(now / rule.aggregation) * rule.aggregation
        targets = list(rule.notify or ())
        if rule.name == NOTIFIER_RULE:  # told on the others: not the failing target, nor any failing one
            targets = [t for t in targets if t != group and self._failing_since(t) is None]
        entry = {"key": key, "targets": targets, "payload": payload, "attempts": 0, "due": due,
                 "labels": dict(rule.labels)}
        if rule.aggregation:
            entry["batch"] = rule.name
        return entry

    def _samples(self, rule: Rule, window: Window, group: str) -> list[dict[str, Any]]:
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

    def _history(self, rule: Rule, group: str, state: str, value: float, since: float, now: float) -> None:
        dataset = streams.dataset("alert")
        doc_id = hashlib.sha1(f"{rule.name}\x00{group}\x00{state}\x00{since}".encode()).hexdigest()
        document = {
            "@timestamp": iso_from_epoch(now),
            "data_stream": {"type": "logs", "dataset": dataset, "namespace": self.namespace},
            "event": {"kind": "alert", "dataset": dataset, "action": state, "outcome": "success",
                      "ingested": iso_from_epoch(time.time())},
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
        """Send what waits in the outboxes, at least once and as seldom twice as can be.

        A runner claims an alert document (a lease of ``lease_s``, with optimistic concurrency)
        before it sends anything, and records each target's outcome right after that target
        answered (at the latest at the start of the next cycle), before the lease ends. A runner
        that dies while it holds the claim leaves it to expire; the next runner re-sends only
        what has no recorded outcome: the send in flight at the crash. Targets that batch
        (digests, a rule's ``aggregation``) get one message for the entries of a cycle.

        The targets are sent to concurrently, each in a thread of its own with a deadline (its
        ``timeout_s``, below the lease). The cycle waits :data:`WAIT_S` at most for answers (or
        until all came), so a target that hangs delays no other target, rule or cycle. A send
        still running then is left in flight and its claim stays held: the next cycles take its
        answer when it comes, or record a timeout past its deadline, and then finish the claim
        (back-off for what failed, the claim released) as this cycle does for the claims whose
        sends all answered. A target whose send is still running gets no new one. A stop
        (SIGTERM) ends the wait at once: what was answered is recorded, the rest is sent again
        later."""
        self._outbox_due = math.inf
        if self._stop.is_set():
            return
        work: list[_Claim] = []
        for item in [d for d in self._docs.values() if d.doc.get("outbox")]:
            queued = item.doc["outbox"]
            if item.id in self._held:  # ours, a send for it still running: recorded when it answers
                continue
            if item.doc.get("outbox_claimed_until", 0) > now:
                self._outbox_due = min(self._outbox_due, item.doc["outbox_claimed_until"])
                continue
            if all(e["due"] > now for e in queued):
                self._outbox_due = min(self._outbox_due, *(e["due"] for e in queued))
                continue
            # The lease runs from the claim, not from the cycle's start: the sends begin now.
            until = now + (time.monotonic() - self._started) + self.lease_s
            claimed = self.store.write(item, item.doc | {"outbox_claimed_until": until,
                                                         "outbox_claimed_by": self.runner_id})
            if claimed is not None:  # else another runner is delivering it
                self._put(claimed)
                claim = _Claim(claimed, [dict(e) for e in claimed.doc["outbox"]])
                self._held[claimed.id] = claim
                work.append(claim)
        jobs: list[_Job] = []
        batches: dict[tuple[str, str], list[tuple[_Claim | None, dict[str, Any]]]] = {}
        for claim in work:
            for entry in claim.entries:
                if entry["due"] > now:
                    continue
                claim.tried.add(entry["key"])
                if self._silenced(entry, now):
                    report.silenced.append(entry["key"])
                    claim.quiet.add(entry["key"])
                    entry["targets"] = []
                    self._record(claim, now)
                    continue
                for name in list(entry["targets"]):
                    target = self.targets.get(name)
                    if target is not None and (target.digest or entry.get("batch")):
                        batches.setdefault((name, entry.get("batch", "")), []).append((claim, entry))
                        continue
                    jobs.append(_Job(name, [(claim, entry)]))
        jobs += [_Job(name, members, batch=True) for (name, _batch), members in batches.items()]
        self._dispatch(jobs, now, report)

    def _finish(self, claim: _Claim, now: float, report: CycleReport) -> None:
        """End a claim whose sends all answered: the entries tried and still owed to a target back
        off, the others are sent (or silenced, or dropped), and the claim is released."""
        remaining = []
        for entry in claim.entries:
            if entry["key"] not in claim.tried:  # not due when claimed: left as it was
                remaining.append(entry)
            elif entry["targets"]:  # tried and failed for some target: back off
                attempts = entry["attempts"] + 1
                entry = entry | {"attempts": attempts, "due": now + self._backoff(attempts)}
                report.failed.append(entry["key"])
                log.warning("notification_failed", key=entry["key"], error=entry.get("last_error"),
                            attempts=attempts, retry_in=round(entry["due"] - now, 1))
                remaining.append(entry)
            elif entry["key"] not in claim.quiet:
                report.sent.append(entry["key"])
        self._outbox_due = min([self._outbox_due] + [e["due"] for e in remaining])
        self._record(claim, now, release=True, entries=remaining)

    def _backoff(self, attempts: int) -> float:
        """Seconds to the next try after ``attempts`` failed ones: doubling from
        :data:`RETRY_BASE_S`, within ±20 % (runners and alerts do not retry in step), at most
        ``retry_max_s``."""
        delay = RETRY_BASE_S * 2.0 ** min(attempts - 1, 40)
        return min(self.retry_max_s, delay * self._rng.uniform(0.8, 1.2))

    def _dispatch(self, jobs: list[_Job], now: float, report: CycleReport) -> None:
        """Start ``jobs``, one thread per target, and take the outcomes that come within
        :data:`WAIT_S` (sooner when all came; at once on stop); the others are taken by a later
        cycle (:meth:`_drain`). Then finish the claims whose sends all answered."""
        by_target: dict[str, list[_Job]] = {}
        for job in jobs:
            by_target.setdefault(job.target, []).append(job)
        mine: set[int] = set()
        for name, batch in by_target.items():
            target = self.targets.get(name)
            if target is None:
                for job in batch:
                    self._land(job, _Outcome(job, DeliveryFailed(f"no notifier {name!r} is configured",
                                                                 retryable=False)), now, report)
                continue
            busy = self._inflight.get(name)
            if busy is not None and busy.is_alive():
                for job in batch:
                    self._land(job, _Outcome(job, DeliveryFailed("the previous send to this target has not ended yet"),
                                             counted=False), now, report)
                continue
            timeout = self._timeout(name)
            deadline = time.monotonic() + timeout
            due = now + (deadline + GRACE_S - self._started)  # on the cycle's clock
            payloads = [[copy.deepcopy(entry["payload"]) for _claim, entry in job.members] for job in batch]
            for job in batch:
                self._flights[id(job)] = _Flight(job, deadline, timeout, due)
                for claim in self._claims_of(job):
                    claim.jobs.add(id(job))
                mine.add(id(job))
            thread = threading.Thread(target=_work, args=(target, batch, payloads, deadline, self._results),
                                      name=f"notify-{name}", daemon=True)
            self._inflight[name] = thread
            thread.start()
        self._await(time.monotonic() + WAIT_S, now, report, mine)
        if self._stop.is_set():
            self._expire(now, report, final=True)
        self._settle(now, report)

    @staticmethod
    def _claims_of(job: _Job) -> list[_Claim]:
        return list({id(claim): claim for claim, _entry in job.members if claim is not None}.values())

    def _await(self, until: float, now: float, report: CycleReport, wanted: set[int] | None = None) -> None:
        """Take outcomes as they come (any send's) until ``until`` (``time.monotonic()``), until
        the ``wanted`` sends (None: all) answered, or until stop."""
        while not self._stop.is_set():
            pending = self._flights.keys() if wanted is None else wanted & self._flights.keys()
            left = until - time.monotonic()
            if not pending or left <= 0:
                return
            try:
                outcome = self._results.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            self._take(outcome, now, report)

    def _drain(self, now: float, report: CycleReport, final: bool = False) -> None:
        """Take the outcomes that came since the last look, record a timeout for each send past
        its deadline (``final``: for each send left; on stop: a give-up, not counted), and finish
        the claims whose sends all answered."""
        while True:
            try:
                outcome = self._results.get_nowait()
            except queue.Empty:
                break
            self._take(outcome, now, report)
        self._expire(now, report, final)
        self._settle(now, report)

    def _expire(self, now: float, report: CycleReport, final: bool) -> None:
        stopping = self._stop.is_set()
        moment = time.monotonic()
        for flight in list(self._flights.values()):
            job = flight.job
            if stopping:
                error = DeliveryFailed("the runner stopped before the target answered")
                self._land(job, _Outcome(job, error, counted=False), now, report)
            elif final or moment >= flight.deadline + GRACE_S:
                error = DeliveryFailed(f"timed out: no answer within {flight.timeout:g} s")
                self._land(job, _Outcome(job, error, moment - flight.deadline + flight.timeout), now, report)

    def _take(self, outcome: _Outcome, now: float, report: CycleReport) -> None:
        """An outcome off the queue: for its send if that is still in flight, else too late
        (the send was recorded as timed out or given up) and dropped."""
        flight = self._flights.get(id(outcome.job))
        if flight is not None and flight.job is outcome.job:
            self._land(outcome.job, outcome, now, report)
        elif outcome.fatal is not None:
            raise outcome.fatal

    def _land(self, job: _Job, outcome: _Outcome, now: float, report: CycleReport) -> None:
        """Apply one send's outcome: the send is no longer in flight, its entries take it."""
        self._flights.pop(id(job), None)
        for claim in self._claims_of(job):
            claim.jobs.discard(id(job))
        if outcome.fatal is not None:
            raise outcome.fatal
        if job.refresh:
            self._reposted(outcome, now)
        else:
            self._answered(outcome, now, report)

    def _settle(self, now: float, report: CycleReport) -> None:
        """Write how the targets fared, and finish each held claim whose sends all answered."""
        self._fared(now)
        for doc_id, claim in list(self._held.items()):
            if claim.jobs:
                continue
            self._finish(claim, now, report)
            del self._held[doc_id]

    def _timeout(self, name: str) -> float:
        """How long a send to a target may take: its ``timeout_s``, within the lease."""
        return min(getattr(self.targets[name], "timeout_s", CLAIM_S), max_timeout(self.lease_s))

    def _answered(self, outcome: _Outcome, now: float, report: CycleReport) -> None:
        """Take one target's outcome for the entries it was sent: off the entries when it took
        them (recorded now), or the error kept; an error not worth retrying drops the entry for
        that target, recorded and counted."""
        name, error = outcome.job.target, outcome.error
        members = outcome.job.members
        claims = self._claims_of(outcome.job)
        if outcome.counted:
            self._fares.setdefault(name, []).append(outcome)
        if error is None:
            for _claim, entry in members:
                entry["targets"] = [n for n in entry["targets"] if n != name]
            for claim in claims:
                self._record(claim, now)
            # From the target's answer to the outcome written: the only moment a crash duplicates.
            self.metrics.exposure.observe(outcome.seconds + time.perf_counter() - outcome.answered)
            return
        if outcome.counted:
            self.metrics.notifier_failures.labels(name, "true" if error.retryable else "false").inc()
        for owner, entry in members:
            entry["last_error"] = f"{name}: {error}"[:300]
            entry["errors"] = entry.get("errors", {}) | {name: str(error)[:300]}  # each target's latest
            if not error.retryable:
                entry["targets"] = [n for n in entry["targets"] if n != name]
                entry["dropped"] = sorted({*entry.get("dropped", []), name})
                if owner is not None:
                    owner.quiet.add(entry["key"])
                if entry["key"] not in report.dropped:
                    report.dropped.append(entry["key"])
                log.warning("notification_dropped", key=entry["key"], target=name, error=str(error)[:300],
                            why="the target refused it and would refuse it again")
        if not error.retryable:
            for claim in claims:
                self._record(claim, now)

    def _fared(self, now: float) -> None:
        """Keep how each target fared (the outcomes taken since the last call) in its
        ``notifier:<name>`` document: written when it fails, and when it succeeds after failing
        (not on every success)."""
        fared = dict(self._fares)
        self._fares.clear()
        for name, outcomes in fared.items():
            doc_id = f"notifier:{name}"
            item = self._docs.get(doc_id)
            old = item.doc if item is not None else {}
            if any(o.error is None for o in outcomes):
                if old.get("failing_since") is None:
                    continue
                doc = old | {"failing_since": None, "last_success": now, "failures": 0, "updated": now,
                             "runner": self.runner_id}
            else:
                errors = [o.error for o in outcomes if o.error is not None]
                doc = {"type": "notifier", "target": name, "failing_since": old.get("failing_since") or now,
                       "last_error": str(errors[-1])[:300], "retryable": errors[-1].retryable,
                       "last_failure": now, "last_success": old.get("last_success"),
                       "failures": old.get("failures", 0) + len(errors),
                       "dropped": old.get("dropped", 0) + sum(1 for e in errors if not e.retryable),
                       "updated": now, "runner": self.runner_id}
            try:
                self.store.beat(doc_id, doc)
            except (ApiError, TransportError) as exc:  # the next failure writes it again
                log.warning("notifier_state_not_written", target=name, error=type(exc).__name__)
                continue
            self._put(Versioned(doc_id, doc))

    def _record(self, claim: _Claim, now: float, release: bool = False,
                entries: list[dict[str, Any]] | None = None) -> None:
        """Write a claimed document's outbox as it stands now: a target that took an entry is off
        it. With ``release`` the claim ends too (``entries``: the outbox to leave). Entries queued
        on the document since the claim (a later cycle's transition) are kept."""
        base = self._claimed(claim)
        if base is None:
            log.warning("outbox_claim_lost", alert=claim.item.id, why="the lease ran out and another runner took it")
            return
        entries = claim.entries if entries is None else entries
        doc = {k: v for k, v in base.doc.items() if k != "outbox"}
        if release:
            doc.pop("outbox_claimed_until", None)
            doc.pop("outbox_claimed_by", None)
        kept = [e for e in entries if e["targets"] or e["due"] > now] if not release else list(entries)
        mine = {e["key"] for e in claim.entries}
        newer = [e for e in base.doc.get("outbox", []) if e["key"] not in mine]
        kept += newer
        if release and newer:  # queued while the claim was held: due as they say, not at the next rule
            self._outbox_due = min([self._outbox_due] + [e["due"] for e in newer])
        if kept:
            doc["outbox"] = kept
        written = self.store.write(base, doc)
        if written is None:
            log.warning("outbox_write_conflict", alert=claim.item.id)
            return
        claim.item = written
        claim.entries = entries
        self._put(written)

    def _claimed(self, claim: _Claim) -> Versioned | None:
        """The newest version of a claimed document this runner knows (a later cycle may have
        written its state since the claim), or None if the claim is no longer this one."""
        latest = self._docs.get(claim.item.id, claim.item)
        if (latest.primary_term or 0, latest.seq_no or -1) < (claim.item.primary_term or 0, claim.item.seq_no or -1):
            latest = claim.item
        if any(latest.doc.get(k) != claim.item.doc.get(k) for k in CLAIM_KEYS):
            return None
        return latest

    # -- what fires now: the gauge, and targets that want firing alerts re-posted ---------------

    def _firing(self, now: float, report: CycleReport) -> None:
        """Set the firing gauge and re-post firing alerts to targets that hold alert state
        (Alertmanager) every ``resend_s``. A re-post is not a notification: it keeps the target's
        copy of the alert alive, so it is neither queued nor counted; a failed one is tried on the
        next cycle. The first re-post of an alert comes ``resend_s`` after this runner first saw it
        firing (its firing notification went through the outbox)."""
        firing = [item.doc for item in self._of_type("alert") if item.doc.get("state") == "firing"]
        self.metrics.set_firing(firing, self._severities)
        seen: set[tuple[str, str]] = set()
        jobs: list[_Job] = []
        for alert in firing:
            rule = self._by_name.get(alert["rule"])
            if rule is None:
                continue
            for name in rule.notify or ():
                target = self.targets.get(name)
                resend_s = getattr(target, "resend_s", None)
                if not getattr(target, "refreshes", False) or resend_s is None:
                    continue
                key = (name, alert_id(rule.name, alert["group"]))
                seen.add(key)
                last = self._refreshed.setdefault(key, now)
                if now - last < resend_s:
                    continue
                entry = self._outbox(rule, alert["group"], "firing", alert["value"], alert["since"], now,
                                     Window(now - rule.window, now), samples=False)
                if self._silenced(entry, now):
                    continue
                jobs.append(_Job(name, [(None, entry)], refresh=True))
        if jobs and not self._stop.is_set():
            self._dispatch(jobs, now, report)
        for key in set(self._refreshed) - seen:  # resolved: forget
            del self._refreshed[key]

    def _reposted(self, outcome: _Outcome, now: float) -> None:
        """A re-post answered: re-post again ``resend_s`` from now; a failed one is tried again
        at the next cycle."""
        name = outcome.job.target
        alert = outcome.job.members[0][1]["payload"]["alert"]
        if outcome.error is None:
            if (name, alert) in self._refreshed:  # else it resolved meanwhile: nothing to re-post
                self._refreshed[(name, alert)] = now
            return
        if outcome.counted:
            self.metrics.notifier_failures.labels(name, "true" if outcome.error.retryable else "false").inc()
        log.warning("refresh_failed", target=name, alert=alert, error=str(outcome.error)[:300])

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
        return self._of_type("silence")

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
                    ended = self.store.write(item, silence | {"until": now, "ended_by": "resolved"})
                    if ended is not None:
                        self._put(ended)
                return True
        return False
