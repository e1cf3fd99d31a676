"""Monitoring the monitor: each runner's heartbeat, and the built-in alerts on regwatch itself.

Any live runner raises ``regwatch-runner-stale`` for a runner that stopped completing cycles, and
``regwatch-notifier-failing`` for a notifier with no success for ``failing_after`` seconds (sent
to the other notifiers). A runner stopped cleanly says so in its heartbeat, and is not stale.
"""

from __future__ import annotations

import os
import socket

from rules.alerting import Alerter
from rules.cycle import NOTIFIER_RULE, STALE_RULE, CycleReport, Known
from rules.metrics import RunnerMetrics
from rules.model import ThresholdRule
from rules.query import Measurement
from rules.state import StateStore, StateWriteError
from rules.tail import Outcome, Tail

FAILING_AFTER_S = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Liveness:
    def __init__(self, store: StateStore, known: Known, alerter: Alerter, metrics: RunnerMetrics, runner_id: str,
                 stale_after: float, stale_notify: list[str], targets: list[str],
                 failing_after: float = FAILING_AFTER_S, failing_notify: list[str] | None = None) -> None:
        self.store = store
        self.known = known
        self.alerter = alerter
        self.metrics = metrics
        self.runner_id = runner_id
        self.stale_after = stale_after
        self.stale_notify = stale_notify
        self.targets = targets
        self.failing_after = failing_after
        self.failing_notify = failing_notify  # None: every notifier but the failing ones
        self.host = socket.gethostname()  # the heartbeat says where and which process, to retire dead ones
        self.pid = os.getpid()
        self.last_beat = 0.0

    @property
    def every(self) -> float:
        """How often the heartbeat is written: a third of ``stale_after``, at least once a second."""
        return max(self.stale_after / 3, 1.0)

    def beat(self, now: float, lag: float, rules: int, state: str = "running", tail: Tail | None = None) -> None:
        """Write the heartbeat: at once, or with the cycle's last request (``tail``), where a
        heartbeat refused fails the cycle as its own request would."""
        doc_id = f"runner:{self.runner_id}"
        doc = {"type": "runner", "runner": self.runner_id, "last_cycle": now, "lag": lag, "rules": rules,
               "updated": now, "state": state, "host": self.host, "pid": self.pid}
        if tail is None:
            self.store.beat(doc_id, doc)
            self.last_beat = now
            return

        def done(outcome: Outcome) -> None:
            if isinstance(outcome, Exception):
                raise outcome
            result = next(iter(outcome[0].values()))
            if result.get("status") not in (200, 201):
                raise StateWriteError(doc_id, result.get("status"), result.get("error"))
            self.last_beat = now

        tail.add(self.store.beat_operations(doc_id, doc), done)

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

    def check_runners(self, now: float, report: CycleReport) -> None:
        """Any live runner raises an alert for a runner that stopped completing cycles."""
        stale_after = self.stale_after
        rule = ThresholdRule(name=STALE_RULE, type="threshold", interval=stale_after, window=stale_after,
                             group_by="runner", condition={"op": ">", "value": stale_after}, severity="critical",
                             notify=self.stale_notify, message="rule runner {group} completed no cycle for {value} s",
                             resolved_message="rule runner {group} completes its cycles again",
                             sample={"size": 0})
        ages = [Measurement(r.doc["runner"], round(now - r.doc["last_cycle"], 1)) for r in self.known.of_type("runner")
                if r.doc["runner"] != self.runner_id and r.doc.get("state") != "stopped"]
        self.alerter.apply(rule, ages, now, report)

    def check_notifiers(self, now: float, report: CycleReport) -> None:
        """A notifier with no success for ``failing_after`` seconds raises an alert, sent to the
        other notifiers; /metrics says which fail."""
        after = self.failing_after
        notify = self.failing_notify if self.failing_notify is not None else sorted(self.targets)
        rule = ThresholdRule(name=NOTIFIER_RULE, type="threshold", interval=after, window=after, group_by="target",
                             condition={"op": ">=", "value": after}, severity="critical", notify=notify,
                             message="notifier {group} has delivered nothing for {value} s",
                             resolved_message="notifier {group} delivers again", sample={"size": 0})
        measured = []
        for name in self.targets:
            since = self.known.failing_since(name)
            failing = since is not None and now - since >= after
            self.metrics.notifier_failing.labels(name).set(1 if failing else 0)
            if since is not None:
                measured.append(Measurement(name, round(now - since, 1)))
        self.alerter.apply(rule, measured, now, report)
