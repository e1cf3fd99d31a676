"""What fires now: the firing gauge, and firing alerts re-posted to targets that hold alert state.

Alertmanager forgets an alert not re-posted within its ``resolve_timeout``; so targets that hold
alert state (``refreshes``) are sent each firing alert again every ``resend_s``. A re-post is not
a notification: it keeps the target's copy of the alert alive, so it is neither queued nor
counted; a failed one is tried on the next cycle. The first re-post of an alert comes
``resend_s`` after this runner first saw it firing (its firing notification went through the
outbox).
"""

from __future__ import annotations

import structlog

from rules.compose import Composer
from rules.cycle import Known
from rules.metrics import RunnerMetrics
from rules.model import Rule
from rules.notification import Job, Outcome
from rules.notify import Target
from rules.query import Window
from rules.silences import Silences
from rules.state import alert_id

log = structlog.get_logger(__name__)


class Refresher:
    def __init__(self, rules: list[Rule], targets: dict[str, Target], known: Known, composer: Composer,
                 silences: Silences, metrics: RunnerMetrics) -> None:
        self.by_name: dict[str, Rule] = {}
        self.severities: dict[str, str] = {}
        self.use(rules)
        self.targets = targets
        self.known = known
        self.composer = composer
        self.silences = silences
        self.metrics = metrics
        self._refreshed: dict[tuple[str, str], float] = {}  # (target, alert id) -> last re-post

    def use(self, rules: list[Rule]) -> None:
        """Re-post the firing alerts of ``rules`` from now on (rules reloaded)."""
        self.by_name = {rule.name: rule for rule in rules}
        self.severities = {rule.name: rule.severity for rule in rules}

    def moments(self) -> list[float]:
        """When a re-post is due next, per target and alert."""
        moments = []
        for (name, _alert), last in self._refreshed.items():
            target = self.targets.get(name)
            if target is not None:
                moments.append(last + getattr(target, "resend_s", 0.0))
        return moments

    def jobs(self, now: float) -> list[Job]:
        """Set the firing gauge; the re-posts due now."""
        firing = [item.doc for item in self.known.of_type("alert") if item.doc.get("state") == "firing"]
        self.metrics.set_firing(firing, self.severities)
        seen: set[tuple[str, str]] = set()
        jobs: list[Job] = []
        for alert in firing:
            rule = self.by_name.get(alert["rule"])
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
                entry = self.composer.entry(rule, alert["group"], "firing", alert["value"], alert["since"], now,
                                            Window(now - rule.window, now), samples=False)
                if self.silences.mutes(entry, now):
                    continue
                jobs.append(Job(name, [(None, entry)], refresh=True))
        for key in set(self._refreshed) - seen:  # resolved: forget
            del self._refreshed[key]
        return jobs

    def land(self, outcome: Outcome, now: float) -> None:
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
