"""The alert state machine, pure: the runner and the backtest take the same steps.

``ok -> pending`` (while ``for`` has not elapsed) ``-> firing -> resolved`` (when the recovery
bound holds, else when the condition no longer does); ``resolved`` behaves as ``ok``. A firing
alert is reminded every ``renotify`` seconds. Event rules (match, new terms) fire once per event;
change rules fire when a group's value differs from the last one seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.model import RuleBase

ACTIVE = ("pending", "firing")


@dataclass(frozen=True)
class Step:
    state: str  # the new state
    since: float  # when the current episode began (pending or firing)
    notify: str | None = None  # "firing" or "resolved": a notification to queue
    reminder: bool = False  # a firing alert reminded, its state unchanged

    @property
    def changed(self) -> bool:
        return self.notify is not None and not self.reminder


def step(rule: RuleBase, state: str, since: float | None, notified: float | None, breached: bool,
         recovered: bool, now: float) -> Step:
    """The next state of one alert (one rule, one group), given whether the value measured ``now``
    breaches the rule's bound and whether it meets its recovery bound."""
    since = now if since is None else since
    if state in ("ok", "resolved"):
        if not breached:
            return Step(state, since)
        if rule.for_ == 0:
            return Step("firing", now, "firing")
        return Step("pending", now)
    if state == "pending":
        if not breached:
            return Step("ok", since)
        if now - since >= rule.for_:
            return Step("firing", since, "firing")
        return Step("pending", since)
    if state == "firing":
        if recovered:
            return Step("resolved", since, "resolved")
        if rule.renotify and now - (since if notified is None else notified) >= rule.renotify:
            return Step("firing", since, "firing", reminder=True)
    return Step(state, since)


def changed(previous: str | None, value: str) -> bool:
    """A change rule fires when a value differs from the last one seen (the first is a baseline)."""
    return previous is not None and previous != value
