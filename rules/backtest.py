"""Replay a rule over stored history: when would it have fired and resolved?

The same queries and the same state machine (:mod:`rules.states`) as the runner, on windows
stepping by the rule's interval from ``start`` to ``end``, in memory: nothing is written, nobody is
notified. Windows go to Elasticsearch 200 at a time in one ``_msearch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from rules.model import Rule
from rules.query import NO_GROUP, header, indices
from rules.states import ACTIVE, changed, step
from rules.types import measure, request, rule_type

BATCH = 200
# Windows one backtest replays: a year of one-hour windows, a week of one-minute ones. A range of
# centuries at a one-minute interval would otherwise be built in memory before the first search.
MAX_WINDOWS = 10_000


class RangeTooLong(ValueError):
    """More windows than :data:`MAX_WINDOWS` between ``start`` and ``end`` at the rule's interval."""


@dataclass(frozen=True)
class Transition:
    at: float  # end of the window that decided it
    group: str
    state: str
    value: float


def window_count(rule: Rule, start: float, end: float) -> int:
    """How many windows a backtest from ``start`` to ``end`` replays (each ends one interval on)."""
    return max(int((end - start) // rule.interval), 0)


def backtest(client: Elasticsearch, rule: Rule, namespace: str, start: float, end: float) -> list[Transition]:
    """Transitions of ``rule`` from ``start`` to ``end``; RangeTooLong beyond :data:`MAX_WINDOWS`."""
    if (count := window_count(rule, start, end)) > MAX_WINDOWS:
        raise RangeTooLong(f"rule {rule.name!r}: {count} windows of {rule.interval:g} s from {start:.0f} to "
                           f"{end:.0f}; at most {MAX_WINDOWS} per backtest")
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


@dataclass(frozen=True)
class Trial:
    """What the runner would do with a rule's window now, found without doing it."""

    window_start: float
    window_end: float
    index: str
    query: dict[str, Any]
    threshold: float | None
    rows: list[TrialRow]


@dataclass(frozen=True)
class TrialRow:
    group: str
    value: float
    state: str  # the alert's stored state
    next_state: str  # the state this window would give it
    notify: str | None  # the notification it would queue (firing, resolved, fired, changed)


def dry_run(client: Elasticsearch, rule: Rule, namespace: str, at: float) -> Trial:
    """The rule's window ending at ``at``: its query, each group's value and the transition it
    would make from the alert state stored now. Reads only: nothing is written, nobody notified
    (like ElastAlert's ``elastalert-test-rule``)."""
    from rules.state import StateStore

    kind = rule_type(rule)
    window = kind.window_at(rule, at)
    body = request(rule, window)
    response = client.msearch(searches=[header(rule, namespace), body])["responses"][0]
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: search failed: {str(response['error'])[:300]}")
    measured = measure(rule, response, window)
    store = StateStore(client, namespace)
    stored = {item.doc["group"]: item.doc for item in store.alerts_of(rule.name)} if client.indices.exists(
        index=store.index) else {}
    rows: list[TrialRow] = []
    if kind.mode == "event":
        for m in measured:
            seen = m.group in stored
            rows.append(TrialRow(m.group, m.value, "fired" if seen else "new", "fired", None if seen else "fired"))
    elif kind.mode == "change":
        for m in measured:
            value = m.events[0]["value"]
            last = stored.get(m.group, {}).get("last_value")
            rows.append(TrialRow(m.group, 0.0, f"last={last}", f"now={value}",
                                 "changed" if changed(last, value) else None))
    else:
        values = {m.group: m.value for m in measured}
        if not rule.group_by:
            values.setdefault(NO_GROUP, 0.0)
        for group in sorted(set(values) | {g for g, d in stored.items() if d.get("state") in ACTIVE}):
            doc = stored.get(group, {})
            state = doc.get("state", "ok")
            decided = step(kind, rule, state, doc.get("since"), doc.get("notified"), values.get(group, 0.0), at)
            rows.append(TrialRow(group, values.get(group, 0.0), state, decided.state, decided.notify))
    return Trial(window.start, window.end, indices(rule, namespace), body, kind.threshold(rule), rows)
