"""Replay a rule over stored history: when would it have fired and resolved?

The same queries and the same state machine (:mod:`rules.states`) as the runner, on windows
stepping by the rule's interval from ``start`` to ``end``, in memory: nothing is written, nobody is
notified. Windows go to Elasticsearch 200 at a time in one ``_msearch``.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch

from rules.model import Rule
from rules.query import NO_GROUP, header
from rules.states import ACTIVE, changed, step
from rules.types import measure, request, rule_type

BATCH = 200


@dataclass(frozen=True)
class Transition:
    at: float  # end of the window that decided it
    group: str
    state: str
    value: float


def backtest(client: Elasticsearch, rule: Rule, namespace: str, start: float, end: float) -> list[Transition]:
    kind = rule_type(rule)
    windows = []
    at = start + rule.interval
    while at <= end:
        windows.append(kind.window_at(rule, at))
        at += rule.interval
    out: list[Transition] = []
    states: dict[str, tuple[str, float | None]] = {}  # group -> (state, since)
    last_values: dict[str, str] = {}
    fired: set[str] = set()
    for offset in range(0, len(windows), BATCH):
        batch = windows[offset:offset + BATCH]
        searches = []
        for window in batch:
            searches += [header(rule, namespace), request(rule, window)]
        for window, response in zip(batch, client.msearch(searches=searches)["responses"], strict=True):
            measured = measure(rule, response, window)
            if kind.mode == "event":  # once per event, as the runner's create-once alerts
                for m in measured:
                    if m.group not in fired:
                        fired.add(m.group)
                        out.append(Transition(window.end, m.group, "fired", m.value))
                continue
            if kind.mode == "change":
                for m in measured:
                    value = m.events[0]["value"]
                    if changed(last_values.get(m.group), value):
                        out.append(Transition(window.end, m.group, "changed", 0.0))
                    last_values[m.group] = value
                continue
            values = {m.group: m.value for m in measured}
            if not rule.group_by:
                values.setdefault(NO_GROUP, 0.0)
            for group in set(values) | {g for g, (s, _) in states.items() if s in ACTIVE}:
                value = values.get(group, 0.0)
                state, since = states.get(group, ("ok", None))
                decided = step(kind, rule, state, since, None, value, window.end)
                if decided.state != state:
                    out.append(Transition(window.end, group, decided.state, value))
                states[group] = (decided.state, decided.since)
    return out


@dataclass(frozen=True)
class Reading:
    """A rule's value now, for an outside monitor: per group, and whether its condition holds."""

    group: str
    value: float
    breached: bool


def read_now(client: Elasticsearch, rule: Rule, namespace: str, at: float) -> list[Reading]:
    """The rule's window ending at ``at``, measured once: no state, no ``for``, nothing written.
    Event rules read as the number of matching events (breached when there is one); change rules
    as how many groups have a value."""
    kind = rule_type(rule)
    window = kind.window_at(rule, at)
    search = [header(rule, namespace), request(rule, window)]
    response = client.msearch(searches=search)["responses"][0]
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: search failed: {str(response['error'])[:300]}")
    measured = measure(rule, response, window)
    if kind.mode == "event":
        return [Reading(NO_GROUP, float(len(measured)), bool(measured))]
    if kind.mode == "change":
        return [Reading(NO_GROUP, float(len(measured)), False)]
    readings = [Reading(m.group, m.value, kind.breached(rule, m.value)) for m in measured]
    return readings or [Reading(NO_GROUP, 0.0, kind.breached(rule, 0.0))]  # no event, no group: a zero
