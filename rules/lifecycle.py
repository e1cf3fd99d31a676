"""What a rule's measurements do to its alerts: the three lifecycles a rule type can have.

A rule type says what to ask and how to read the answer (:mod:`rules.types`); its lifecycle says
what the answer means for the rule's alerts, and is the same wherever a rule is evaluated: the
runner writes the decisions, the backtest replays them in memory, the dry run shows them, the
outside monitor reads the rule's value now. So each question is answered once, here, by the
lifecycle, and none of those places asks which kind of rule it holds.

- :class:`Stateful` (thresholds, ratios, absences, series, consecutive checks): an alert per group
  goes ``ok -> pending -> firing -> resolved`` (:mod:`rules.states`).
- :class:`PerEvent` (match, new terms): each event fires once, and that is the alert's whole life.
- :class:`OnChange` (change): a group's value differing from the last one seen fires once.

Every method is pure: the alerts as stored go in (``stored``: group -> the alert's fields), the
decisions come out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rules.model import RuleBase
from rules.query import NO_GROUP, Measurement
from rules.states import ACTIVE, changed, step

Stored = Mapping[str, Mapping[str, Any]]  # group -> the alert's fields as stored


class Bounds(Protocol):
    """What a lifecycle asks of the rule type: whether a value breaches, whether it recovered."""

    def breached(self, rule: Any, value: float) -> bool: ...

    def recovered(self, rule: Any, value: float) -> bool: ...


@dataclass(frozen=True)
class Decision:
    """What to store of one alert (one rule, one group) and what to tell about it."""

    group: str
    fields: dict[str, Any]  # the alert's fields to store: state, since, value, ...
    value: float
    since: float  # when the episode began: it names the notification and the history line
    notify: str | None = None  # the notification to queue: firing, resolved, fired, changed
    transition: str | None = None  # the new state when it changed: a history line, a count
    reminder: bool = False  # a firing alert reminded, its state unchanged
    event: dict[str, Any] | None = None  # the event the notification carries
    once: bool = False  # the alert is created once and never updated: a second runner writes nothing


@dataclass(frozen=True)
class Reading:
    """A rule's value now, for an outside monitor: per group, and whether its condition holds."""

    group: str
    value: float
    breached: bool


@dataclass(frozen=True)
class TrialRow:
    group: str
    value: float
    state: str  # the alert's stored state
    next_state: str  # the state this window would give it
    notify: str | None  # the notification it would queue (firing, resolved, fired, changed)
    # what the measurement says of its value where it explains it (the anomaly rule: observed,
    # expected, lower, upper, score), as the alert and the notification carry it
    detail: dict[str, Any] | None = None


EXPLANATION = ("observed", "expected", "lower", "upper", "score")  # the keys of an explained value


def _explained(measured: list[Measurement]) -> dict[str, dict[str, Any]]:
    """Each group's explanation: its measurement's first event, when it carries one."""
    return {m.group: dict(m.events[0]) for m in measured
            if m.events and all(key in m.events[0] for key in EXPLANATION)}


@dataclass(frozen=True)
class Lifecycle:
    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        """The alerts to write for what was measured at ``now``; nothing for what stays as it is."""
        raise NotImplementedError

    def trial(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
              now: float) -> list[TrialRow]:
        """Each group's value and the transition it would make from ``stored`` (a dry run)."""
        raise NotImplementedError

    def readings(self, bounds: Bounds, rule: RuleBase, measured: list[Measurement]) -> list[Reading]:
        """The rule's value now, per group, with no state (an outside monitor's question)."""
        raise NotImplementedError


def _values(rule: RuleBase, stored: Stored, measured: list[Measurement]) -> dict[str, float]:
    """Each group's value: the groups measured, a zero for the one group of an ungrouped rule,
    and a zero for each group whose alert is active but was not measured (it went quiet)."""
    values = {m.group: m.value for m in measured}
    if not rule.group_by:
        values.setdefault(NO_GROUP, 0.0)
    for group, doc in stored.items():
        if doc.get("state") in ACTIVE:
            values.setdefault(group, 0.0)
    return values


@dataclass(frozen=True)
class Stateful(Lifecycle):
    def _step(self, bounds: Bounds, rule: RuleBase, doc: Mapping[str, Any], value: float, now: float) -> Any:
        return step(rule, doc.get("state", "ok"), doc.get("since"), doc.get("notified"),
                    bounds.breached(rule, value), bounds.recovered(rule, value), now)

    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        out = []
        for group, value in sorted(_values(rule, stored, measured).items()):
            doc = stored.get(group, {})
            state = doc.get("state", "ok")
            decided = self._step(bounds, rule, doc, value, now)
            # Nothing to store: no change, or a group never seen that is and stays ok (no document
            # per quiet rule and group: writes happen on transitions, not per cycle).
            unchanged = decided.state == state and not decided.notify and (
                group not in stored if state == "ok" else state not in ACTIVE or doc.get("value") == value)
            if unchanged:
                continue
            notified = now if decided.notify else doc.get("notified", decided.since)
            out.append(Decision(group, {"state": decided.state, "since": decided.since, "value": value,
                                        "notified": notified},
                                value, decided.since, decided.notify,
                                decided.state if decided.state != state else None, decided.reminder))
        return out

    def trial(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
              now: float) -> list[TrialRow]:
        rows = []
        details = _explained(measured)
        for group, value in sorted(_values(rule, stored, measured).items()):
            doc = stored.get(group, {})
            decided = self._step(bounds, rule, doc, value, now)
            rows.append(TrialRow(group, value, doc.get("state", "ok"), decided.state, decided.notify,
                                 details.get(group)))
        return rows

    def readings(self, bounds: Bounds, rule: RuleBase, measured: list[Measurement]) -> list[Reading]:
        readings = [Reading(m.group, m.value, bounds.breached(rule, m.value)) for m in measured]
        return readings or [Reading(NO_GROUP, 0.0, bounds.breached(rule, 0.0))]  # no event, no group: a zero


@dataclass(frozen=True)
class PerEvent(Lifecycle):
    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        return [Decision(event["_id"], {"state": "fired", "since": now, "value": 1.0}, 1.0, now, "fired", "fired",
                         event=event, once=True)
                for m in measured for event in m.events if event["_id"] not in stored]

    def trial(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
              now: float) -> list[TrialRow]:
        return [TrialRow(m.group, m.value, "fired" if m.group in stored else "new", "fired",
                         None if m.group in stored else "fired") for m in measured]

    def readings(self, bounds: Bounds, rule: RuleBase, measured: list[Measurement]) -> list[Reading]:
        return [Reading(NO_GROUP, float(len(measured)), bool(measured))]  # how many events match


@dataclass(frozen=True)
class OnChange(Lifecycle):
    """Reads measurements whose one event is ``{"value": <the group's latest value>, "field": <its
    field>}``."""

    @staticmethod
    def _seen(stored: Stored, measured: list[Measurement]) -> Iterator[tuple[str, str, str | None, str]]:
        """(group, value now, the last value stored, the field) of each group measured."""
        for m in measured:
            event = m.events[0]
            yield m.group, event["value"], stored.get(m.group, {}).get("last_value"), event["field"]

    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        out = []
        for group, value, previous, name in self._seen(stored, measured):
            if previous == value:
                continue
            fired = changed(previous, value)  # the first value seen is a baseline, not a change
            event = {"_id": "", name: value, "previous": previous} if fired else None
            out.append(Decision(group, {"state": "changed", "since": now, "value": 0.0, "last_value": value},
                                0.0, now, "changed" if fired else None, "changed" if fired else None, event=event))
        return out

    def trial(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
              now: float) -> list[TrialRow]:
        return [TrialRow(group, 0.0, f"last={last}", f"now={value}", "changed" if changed(last, value) else None)
                for group, value, last, _name in self._seen(stored, measured)]

    def readings(self, bounds: Bounds, rule: RuleBase, measured: list[Measurement]) -> list[Reading]:
        return [Reading(NO_GROUP, float(len(measured)), False)]  # how many groups have a value
