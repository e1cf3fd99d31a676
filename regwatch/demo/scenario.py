"""The demo's story: the registry's past hours shipped, normal traffic, a runaway client
loading a model in a tight loop until registry-retrievals-unusual fires (it resolves while the
rest runs), the registry stopped until registry-down fires and restarted until it resolves;
clients whose token was revoked at the gateway (nginx answers 401) calling until
registry-error-ratio fires, and normal traffic until it resolves; a version worse than the champion
promoted while replicas keep pulling the one it replaced (regression and stale usage); then the
shipper catches up and the summary is taken. Without nginx there is no gateway to revoke a token: incident 2 is skipped.

Every step is reported to a :class:`Reporter` (the CLI draws it with rich); the timeline of what
happened when goes into the summary.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.checkpoint import CheckpointStore, lag
from regwatch.demo.processes import Spec
from regwatch.demo.stack import Stack, regwatch_argv
from regwatch.demo.webhook_sink import received
from regwatch.demo.workload import STORM_MODEL

REGRESSION_RULE = "champion-regression"  # rules/builtin/models.yaml
STALE_RULE = "champion-stale-usage"
STORM_RULE = "registry-retrievals-unusual"  # rules/builtin/anomaly


class Reporter(Protocol):
    def step(self, text: str) -> None: ...

    def done(self, text: str) -> None: ...


@dataclass
class Timings:
    """How long each phase lasts (seconds): the test runs a shorter story than ``make demo``."""

    warmup_s: float = 40.0
    # Normal traffic: a team's working morning, the rate the history's working hours have
    # (history.requests at clients / pace_s operations a second), so that it is usual for the
    # anomaly rules and the runaway client is not.
    clients: int = 2
    pace_s: float = 4.0
    history_h: float = 5.0  # what the anomaly rules at demo speed read (regwatch/demo/demo.yaml)
    burst_s: float = 10.0
    burst_clients: int = 6
    burst_pace_s: float = 0.05  # each revoked client's pause between calls (nginx answers at once)
    promote_s: float = 45.0  # the third story: how long replicas pinned to the replaced version keep pulling it
    replicas: int = 1  # pinned replicas, and as many that load the champion as it is now
    replica_pace_s: float = 2.0  # as often as the team's clients: a rollout is no retrieval storm
    alert_timeout_s: float = 120.0
    catch_up_timeout_s: float = 120.0


class ScenarioError(RuntimeError):
    pass


class Scenario:
    def __init__(self, stack: Stack, run_id: str, timings: Timings, reporter: Reporter) -> None:
        self.stack = stack
        self.run_id = run_id
        self.timings = timings
        self.say = reporter
        self.truth = stack.workdir / "truth.jsonl"
        self.started = time.time()
        self.timeline: list[dict[str, Any]] = []
        self.history: dict[str, Any] = {}
        self.phases = 0

    def mark(self, what: str) -> None:
        self.timeline.append({"what": what, "after_s": round(time.time() - self.started, 1)})

    def _workload(self, phase: str, duration_s: float = 0.0, clients: int = 1, pace_s: float = 0.0) -> list[str]:
        # Each phase's clients go on where the last ones stopped, not from the same first choices:
        # at the team's pace a phase makes a few operations per client, and the same few each time
        # would never download a model.
        self.phases += 1
        return regwatch_argv("demo", "workload", "--tracking-uri", self.stack.registry.url, "--truth", str(self.truth),
                             "--run-id", self.run_id, "--phase", phase, "--duration", str(duration_s),
                             "--clients", str(clients), "--pace", str(pace_s), "--seed", str(7 + self.phases))

    def _run_workload(self, phase: str, duration_s: float = 0.0, clients: int = 1, pace_s: float = 0.0) -> None:
        log = self.stack.processes.log_of("workload")
        with log.open("ab") as out:
            done = subprocess.run(self._workload(phase, duration_s, clients, pace_s), stdout=out,
                                  stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=duration_s + 300, check=False)
        if done.returncode != 0:
            raise ScenarioError(f"the workload's {phase} phase exited {done.returncode}: see {log}")

    def _notified(self, rule: str, state: str, since: float) -> dict[str, Any] | None:
        for record in received(self.stack.notifications):
            payload = record["payload"]
            if payload.get("rule") == rule and payload.get("state") == state and record["received"] >= since:
                return record
        return None

    def _wait_notified(self, rule: str, state: str, since: float) -> None:
        """Until the webhook receiver got this notification after ``since`` (the incident's start)."""
        deadline = time.monotonic() + self.timings.alert_timeout_s
        while self._notified(rule, state, since) is None:
            if dead := self.stack.check_alive():
                raise ScenarioError(f"{', '.join(dead)} stopped: see {self.stack.processes.logs}")
            if time.monotonic() > deadline:
                raise ScenarioError(f"no {state} notification of {rule} within {self.timings.alert_timeout_s:.0f} s: "
                                    f"see {self.stack.processes.logs}")
            time.sleep(0.5)
        self.mark(f"{rule} {state}")

    def run(self) -> None:
        t = self.timings
        if self.stack.history_written is not None:
            self.ship_history(*self.stack.history_written)
        self.say.step("seeding the registry: models, runs, artifacts, versions, aliases")
        self._run_workload("seed")
        self._wait_inventory(aliases=4)
        self._run_workload("rollout")  # the team's day starts: each champion loaded, a training script registers
        self.say.done(f"seeded {self.stack.registry.url}; the serving replicas loaded each model")
        self.say.step(f"normal traffic: {t.clients} clients for {t.warmup_s:.0f} s")
        self._run_workload("traffic", t.warmup_s, t.clients, t.pace_s)
        self.say.done(f"{t.warmup_s:.0f} s of normal traffic")

        storm = self.incident_storm()

        self.say.step("incident 1: the registry is stopped; waiting for registry-down")
        self.mark("registry stopped")
        incident = time.time()
        self.stack.stop_registry()
        self._wait_notified("registry-down", "firing", incident)
        self.say.step("registry-down fired; restarting the registry; waiting for the resolution")
        self.stack.start_registry()
        self.mark("registry restarted")
        self._wait_notified("registry-down", "resolved", incident)
        self.say.done("incident 1: registry-down fired and resolved")

        self.incident_revoked_token()
        self.story_worse_promotion()
        self._wait_notified(STORM_RULE, "resolved", storm)
        self.say.step("waiting for the shipper to acknowledge every line")
        self._wait_caught_up()
        self.mark("shipper caught up")
        self.say.done("every line acknowledged by Elasticsearch")

    def ship_history(self, lines: int, written_s: float) -> None:
        """Until the shipper has acknowledged the registry's past (written before it started)."""
        started = time.monotonic()
        self.say.step(f"the registry's past: {lines} requests of {self.timings.history_h:.0f} hours written in "
                      f"{written_s:.1f} s; shipping them")
        self._wait_caught_up({str(self.stack.history_log)})
        self.history = {"lines": lines, "hours": self.timings.history_h, "written_s": round(written_s, 1),
                        "shipped_s": round(time.monotonic() - started, 1)}
        self.mark("history shipped")
        self.say.done(f"{self.timings.history_h:.0f} hours of history shipped in {self.history['shipped_s']:.1f} s: "
                      "the anomaly rules have a rhythm to learn from")

    def incident_storm(self) -> float:
        """A runaway client loads one model in a tight loop among the team's ordinary traffic,
        until registry-retrievals-unusual fires; its resolution is waited for at the end (a
        minute of ordinary buckets later, while the other incidents run). Returns its start."""
        t = self.timings
        self.say.step(f"incident: a runaway client loads {STORM_MODEL} in a tight loop; waiting for {STORM_RULE}")
        traffic = self.stack.processes.start(Spec("workload-traffic", self._workload("traffic", 3600, t.clients,
                                                                                     t.pace_s)))
        self.mark("runaway client started")
        since = time.time()
        runaway = self.stack.processes.start(Spec("workload-storm", self._workload("storm", t.alert_timeout_s)))
        try:
            self._wait_notified(STORM_RULE, "firing", since)
        finally:
            self._stop_traffic(runaway, "workload-storm")
            self.mark("runaway client stopped")
            self._stop_traffic(traffic)
        self.say.done(f"{STORM_RULE} fired; it resolves once its buckets are ordinary again")
        return since

    def incident_revoked_token(self) -> None:
        """Incident 2: a token revoked at the gateway, its clients still calling (401s from nginx).

        Only nginx can refuse the token; MLflow alone would answer the calls, so without nginx the
        incident is skipped and the demo says why."""
        t = self.timings
        if self.stack.registry.front != "nginx":
            self.mark("incident 2 skipped: no nginx")
            self.say.done("incident 2 skipped: it needs nginx in front of MLflow (the gateway revokes a client's "
                          "token and answers 401); install nginx to see registry-error-ratio fire")
            return
        self.say.step(f"incident 2: the gateway revoked a deploy token; {t.burst_clients} clients still using it "
                      f"get 401 ({t.burst_s:.0f} s)")
        # The team's traffic goes on beside the revoked token's calls, and until the rule resolves.
        traffic = self.stack.processes.start(Spec("workload-traffic", self._workload("traffic", 3600, t.clients,
                                                                                     t.pace_s)))
        try:
            self.mark("revoked token in use")
            incident = time.time()
            self._run_workload("burst", t.burst_s, t.burst_clients, t.burst_pace_s)
            self.mark("revoked token no longer used")
            self.say.step("normal traffic until registry-error-ratio has fired and resolved")
            self._wait_notified("registry-error-ratio", "firing", incident)
            self._wait_notified("registry-error-ratio", "resolved", incident)
        finally:
            self._stop_traffic(traffic)
        self.say.done("incident 2: registry-error-ratio fired and resolved")

    def story_worse_promotion(self) -> None:
        """Story 3: a version of fraud-detector whose run's accuracy is worse than the champion's is
        promoted to champion (regression fires once); replicas that were not redeployed keep
        pulling the version it replaced (stale usage fires, and resolves once they stop)."""
        t = self.timings
        self.say.step(f"story 3: a worse fraud-detector version becomes champion; {t.replicas} replicas keep "
                      f"pulling the one it replaced ({t.promote_s:.0f} s)")
        self.mark("worse version registered")
        since = time.time()
        self._run_workload("promote", t.promote_s, t.replicas, t.replica_pace_s)
        self.mark("pinned replicas stopped")
        self._wait_notified(REGRESSION_RULE, "fired", since)  # a finding: fired once, nothing to resolve
        self._wait_notified(STALE_RULE, "firing", since)
        self._wait_notified(STALE_RULE, "resolved", since)
        self.say.done(f"story 3: {REGRESSION_RULE} fired once, {STALE_RULE} fired and resolved")

    def _stop_traffic(self, pid: int, name: str = "workload-traffic") -> None:
        """SIGTERM: the clients finish the call they are in (so the record holds every request)."""
        import os

        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 120
        while self.stack.processes.running(name) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        self.stack.processes.stop(name)

    def _wait_inventory(self, aliases: int) -> None:
        """Until the inventory has read the seeded registry (its ``champion`` aliases) and the
        shipper's table had time to load it: from then on every download is named."""
        import urllib.request

        url = f"http://127.0.0.1:{self.stack.ports.inventory_metrics}/metrics"
        deadline = time.monotonic() + self.timings.alert_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    text = answer.read().decode()
            except OSError:
                text = ""
            seen = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("regwatch_inventory_aliases{")]
            if seen and max(seen) >= aliases:
                time.sleep(2 * float(self.stack.settings["inventory_interval_s"]) + 1)  # the shipper's table, refreshed
                return
            time.sleep(0.5)
        raise ScenarioError(f"the inventory did not read the registry within {self.timings.alert_timeout_s:.0f} s: "
                            f"see {self.stack.processes.logs}")

    def _wait_caught_up(self, wanted: set[str] | None = None) -> None:
        """Until the shipper has acknowledged every byte the files held when the wait began.

        Not "nothing behind" at one instant: the probe's health checks go through nginx every
        2 s, and on a loaded machine the shipper's acknowledgement trails the next line by more
        than that, so the access log could be behind at every look while nothing is lost."""
        import os

        store_path = Path(self.stack.workdir / "checkpoints.json")
        wanted = wanted or {str(self.stack.registry.access_log), str(self.stack.audit_log)}
        sizes = {path: os.stat(path).st_size if os.path.exists(path) else 0 for path in wanted}
        deadline = time.monotonic() + self.timings.catch_up_timeout_s
        while time.monotonic() < deadline:
            if store_path.exists():
                rows = {row.path: row for row in lag(CheckpointStore(store_path))}
                if wanted <= set(rows) and all(rows[p].size is not None and rows[p].offset >= sizes[p]
                                               for p in wanted):
                    return
            time.sleep(0.5)
        raise ScenarioError(f"the shipper did not catch up within {self.timings.catch_up_timeout_s:.0f} s: "
                            f"`regwatch status -c {self.stack.config_path}`")
