"""A rule cycle: claim due rules, one ``_msearch``, alert transitions, notifications, heartbeat.

The runner wires stages that each decide one thing (as Alertmanager's notify pipeline does), and
passes the cycle (:class:`~rules.cycle.Cycle`) from one to the next:

1. :mod:`rules.claims` claims the rules that are due (two runners side by side: one wins);
2. one ``_msearch`` reads the state index and every claimed window (rules that read the same
   streams over the same window share a search: :mod:`rules.packing`); each rule type
   (:mod:`rules.types`) measures its window and its lifecycle (:mod:`rules.lifecycle`) decides;
3. :mod:`rules.alerting` writes the alerts (one bulk request for the cycle's rules), queues
   notifications composed by :mod:`rules.compose` and keeps the history; :mod:`rules.liveness`
   does the same for regwatch's own alerts;
4. :mod:`rules.outbox` claims what is due to be sent, :mod:`rules.silences` mutes, and
   :mod:`rules.dispatch` sends, a thread per target, each with a deadline;
5. :mod:`rules.refresh` re-posts firing alerts to targets that hold alert state.

One rule that fails (a bad response for it) is logged, counted and tried again next cycle; the
others go on. The cycle waits a moment (:data:`WAIT_S`) for its sends' answers; a send still
running is taken by a later cycle, its claim held meanwhile: a target that hangs costs its own
notifications a timeout, not the other targets, rules or cycles.
"""

from __future__ import annotations

import random
import threading
import time

import structlog
from elasticsearch import Elasticsearch

from rules.alerting import Alerter
from rules.claims import SETTLE_S, RuleClaims
from rules.compose import Composer
from rules.cycle import SYNTHETIC, Cycle, CycleReport, Known
from rules.dispatch import CLAIM_S, GRACE_S, Dispatcher
from rules.liveness import FAILING_AFTER_S, Liveness
from rules.metrics import RunnerMetrics
from rules.model import Rule
from rules.notification import Job, Outcome
from rules.notify import Target
from rules.outbox import RETRY_MAX_S, Outbox
from rules.packing import Search, msearch
from rules.query import Window, header
from rules.refresh import Refresher
from rules.results import Results
from rules.silences import Silences
from rules.state import StateStore
from rules.tail import Tail
from rules.types import measure, request

__all__ = ["CycleReport", "Runner"]

log = structlog.get_logger(__name__)

WAIT_S = 0.5  # how long a cycle waits for its sends' answers; later ones are taken at the next cycle


class Runner:
    def __init__(self, client: Elasticsearch, rules: list[Rule], namespace: str,
                 targets: dict[str, Target] | None = None, runner_id: str = "runner", stale_after: float = 180.0,
                 stale_notify: list[str] | None = None, kibana_url: str | None = None,
                 metrics: RunnerMetrics | None = None, lease_s: float = CLAIM_S,
                 stop: threading.Event | None = None, retry_max_s: float = RETRY_MAX_S,
                 failing_after: float = FAILING_AFTER_S, failing_notify: list[str] | None = None,
                 rng: random.Random | None = None) -> None:
        """Nothing is asked of Elasticsearch here: the state index is made ready by the first
        cycle (or silence, or stop) that needs it."""
        self.client = client
        self.rules = rules
        self.namespace = namespace
        self.targets = targets or {}
        self.runner_id = runner_id
        self.store = StateStore(client, namespace)
        self.metrics = metrics or RunnerMetrics()
        self._stop = stop or threading.Event()  # set: in-flight sends are given up, the cycle ends
        self._ready = False  # the state index exists
        known = self.known = Known()
        composer = Composer(client, namespace, self.store.index, known, kibana_url)
        self.tail = Tail(client)  # the cycle's last request: history lines and the heartbeat
        self.alerter = Alerter(client, self.store, known, composer, namespace, self.tail)
        self.silences = Silences(self.store, known)
        self.claims = RuleClaims(self.store, rules, runner_id)
        self.outbox = Outbox(self.store, known, self.silences, self.targets, self.metrics, runner_id, lease_s,
                             retry_max_s, rng)
        self.dispatcher = Dispatcher(self.targets, lease_s, self._stop, self._land)
        self.refresher = Refresher(rules, self.targets, known, composer, self.silences, self.metrics)
        self.liveness = Liveness(self.store, known, self.alerter, self.metrics, runner_id, stale_after,
                                 stale_notify or [], list(self.targets), failing_after, failing_notify)
        self._retired: list[Rule] = []  # rules reloaded away whose alerts are still active
        self.results = Results(client, namespace)  # the anomaly rules' buckets, one bulk a cycle

    def _ensure(self) -> None:
        if not self._ready:
            self.store.ensure()
            self._ready = True

    # -- when -----------------------------------------------------------------------------------

    def wake_at(self) -> float:
        """The earliest moment something is due: a rule's next window, an outbox entry (a retry,
        an aggregation), a re-post, the heartbeat, an answer to record (now, if one came in; at a
        send's deadline, if none did). Before it, :meth:`cycle` sends nothing."""
        moments = [self.liveness.last_beat + self.liveness.every, self.outbox.due]
        moments += self.dispatcher.moments() + self.claims.moments() + self.refresher.moments()
        return min(moments)

    # -- one cycle -----------------------------------------------------------------------------

    def cycle(self, now: float | None = None) -> CycleReport:
        """One cycle if anything is due at ``now``; an idle wake-up (no request at all) if not."""
        now = time.time() if now is None else now
        if now < self.wake_at():
            self.metrics.idle_wakeups.inc()
            return CycleReport(idle=True)
        started = time.perf_counter()
        try:
            report = self._cycle(Cycle(now, time.monotonic(), CycleReport()))
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

    def _cycle(self, cycle: Cycle) -> CycleReport:
        now, report = cycle.now, cycle.report
        self._ensure()
        self.dispatcher.drain(cycle)  # before the search: it reads what the late answers changed
        self.outbox.settle(cycle)
        due: list[tuple[Rule, Window]] = []
        claimed = self.claims.claim(now)
        if not self.claims.refreshed:  # no claim written (nothing due): the search reads after a refresh all the same
            self.store.refresh()
        for rule in self.rules:
            windows = claimed.get(rule.name, [])
            if not windows:
                report.skipped.append(rule.name)
            due += [(rule, window) for window in windows]
        names = sorted({rule.name for rule, _ in due} | {rule.name for rule in self._retired} | set(SYNTHETIC))
        searches: list[Search] = [self.store.cycle_search(names)]
        asked: list[tuple[Rule, Window]] = []
        failed: set[str] = set()
        for rule, window in due:
            if rule.name in failed:
                continue
            try:
                searches.append((header(rule, self.namespace), request(rule, window)))
            except Exception as exc:
                failed.add(rule.name)
                self._rule_failed(rule, window, exc, report)
                continue
            asked.append((rule, window))
        responses = msearch(self.client, searches)  # rules reading the same streams and window share a search
        self.known.reset(self.store.documents(responses[0]))
        applied: list[str] = []  # rules applied, their writes not flushed yet
        for (rule, window), response in zip(asked, responses[1:], strict=True):
            if rule.name in failed:
                continue  # its later windows wait for the failed one, next cycle
            if self.alerter.pending(rule.name):  # a window caught up reads what the one before wrote
                self._flush(applied, failed, report)
                if rule.name in failed:
                    continue
            try:
                measured = measure(rule, response, window)
                self.alerter.apply(rule, measured, window.end + SETTLE_S, report, window, defer=True)
                self.results.add(rule, measured)
            except Exception as exc:
                failed.add(rule.name)
                self._rule_failed(rule, window, exc, report)
                continue
            applied.append(rule.name)
        self._flush(applied, failed, report)
        self.results.flush()
        self._retired = [rule for rule in self._retired if self.alerter.retire(rule, now, report)]
        self.liveness.check_runners(now, report)
        self.liveness.check_notifiers(now, report)
        if not self._stop.is_set():
            jobs = self.outbox.collect(cycle)
            if jobs:  # what this cycle stored (history lines) is written before a send can be cut short by kill -9
                self.tail.flush()
            self._send(jobs, cycle)
            refresh = self.refresher.jobs(now)
            if refresh and not self._stop.is_set():
                self._send(refresh, cycle)
        self.liveness.beat(now, max((now - w.end for _, w in due), default=0.0), len(self.rules), tail=self.tail)
        self.tail.flush()
        return report

    def _flush(self, applied: list[str], failed: set[str], report: CycleReport) -> None:
        """Write the alerts the rules ``applied`` decided, in one bulk request: a rule whose write
        failed fails as if its evaluation had (:meth:`_rule_failed`), the others are evaluated."""
        for rule, window, exc in self.alerter.flush():
            failed.add(rule.name)
            self._rule_failed(rule, window, exc, report)
        for name in applied:
            if name not in failed and name not in report.evaluated:
                report.evaluated.append(name)
        applied.clear()

    def _rule_failed(self, rule: Rule, window: Window, exc: Exception, report: CycleReport) -> None:
        """Log and count one rule's failure, and give its claim back from ``window`` on, so the
        next cycle evaluates that window again (the rule's later windows too)."""
        log.warning("rule_failed", rule=rule.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        self.metrics.rule_failures.labels(rule.name).inc()
        report.rule_failures.append(rule.name)
        self.claims.give_back(rule, window)

    def _send(self, jobs: list[Job], cycle: Cycle) -> None:
        """Start ``jobs`` and take the outcomes that come within :data:`WAIT_S` (sooner when all
        came; at once on stop); the others are taken by a later cycle. Then finish the claims
        whose sends all answered."""
        started = self.dispatcher.start(jobs, cycle)
        self.dispatcher.wait(time.monotonic() + WAIT_S, cycle, started)
        if self._stop.is_set():
            self.dispatcher.expire(cycle, final=True)
        self.outbox.settle(cycle)

    def _land(self, outcome: Outcome, cycle: Cycle) -> None:
        """An answered (or timed out) send goes to the stage that made it."""
        if outcome.job.refresh:
            self.refresher.land(outcome, cycle.now)
        else:
            self.outbox.land(outcome, cycle)

    # -- outside a cycle -------------------------------------------------------------------------

    def replace_rules(self, rules: list[Rule]) -> None:
        """Evaluate ``rules`` from the next cycle on (rules reloaded). What is stored stays: a rule
        that still exists keeps its alerts and its last window, sends in flight and queued
        notifications are delivered as before. The active alerts of a rule that is gone end at the
        next cycle: a firing one resolves, and says so."""
        kept = {rule.name for rule in rules}
        self._retired += [rule for rule in self.rules if rule.name not in kept]
        self._retired = [rule for rule in self._retired if rule.name not in kept]
        self.rules = rules
        self.claims.use(rules)
        self.refresher.use(rules)

    def stopped(self) -> None:
        """A clean stop: sends still in flight are waited for up to their deadline (given up at
        once when the stop event is set: SIGTERM), what is known is recorded and the claims are
        released; the heartbeat says so, and no live runner reports this one as stale."""
        self._ensure()
        cycle = Cycle(time.time(), time.monotonic(), CycleReport())
        last = self.dispatcher.last_deadline
        if last is not None:
            self.dispatcher.wait(last + GRACE_S, cycle)
        self.dispatcher.drain(cycle, final=True)
        self.outbox.settle(cycle)
        self.tail.flush()  # history lines a failed cycle left for the next one: there is none
        self.liveness.beat(time.time(), 0.0, len(self.rules), state="stopped")

    def retire_dead_runners(self) -> list[str]:
        """Mark as stopped the heartbeats of this host's runners whose process is gone."""
        self._ensure()
        return self.liveness.retire_dead_runners()

    def silence(self, rule: str, labels: dict[str, str] | None = None, until: float | None = None,
                group: str | None = None, reason: str = "") -> str:
        """Mute notifications of a rule (and labels) until a time, or, with ``until=None`` and a
        group, until that alert resolves."""
        self._ensure()
        return self.silences.add(rule, labels, until, group, reason)
