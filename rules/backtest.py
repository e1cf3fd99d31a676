"""Replay a rule over stored history: when would it have fired and resolved?

The same queries and the same state machine as the runner, on windows stepping by the rule's
interval from ``start`` to ``end``, in memory: nothing is written, nobody is notified. Windows go
to Elasticsearch 200 at a time in one ``_msearch``.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch

from rules.model import ChangeRule, MatchRule, NewTermRule, Rule
from rules.query import NO_GROUP, Window, indices, measurements, request
from rules.runner import _breached, _recovered

BATCH = 200


@dataclass(frozen=True)
class Transition:
    at: float  # end of the window that decided it
    group: str
    state: str
    value: float


def backtest(client: Elasticsearch, rule: Rule, namespace: str, start: float, end: float) -> list[Transition]:
    windows = []
    at = start + rule.interval
    while at <= end:
        windows.append(Window(at - rule.window if not isinstance(rule, MatchRule) else at - rule.interval, at))
        at += rule.interval
    out: list[Transition] = []
    states: dict[str, tuple[str, float]] = {}  # group -> (state, since)
    last_values: dict[str, str] = {}
    for offset in range(0, len(windows), BATCH):
        batch = windows[offset:offset + BATCH]
        searches = []
        for window in batch:
            searches += [{"index": indices(rule, namespace), "ignore_unavailable": True, "allow_no_indices": True},
                         request(rule, window)]
        for window, response in zip(batch, client.msearch(searches=searches)["responses"], strict=True):
            measured = measurements(rule, response, window)
            if isinstance(rule, (MatchRule, NewTermRule)):
                out += [Transition(window.end, m.group, "fired", m.value) for m in measured]
                continue
            if isinstance(rule, ChangeRule):
                for m in measured:
                    value = m.events[0]["value"]
                    if m.group in last_values and last_values[m.group] != value:
                        out.append(Transition(window.end, m.group, "changed", 0.0))
                    last_values[m.group] = value
                continue
            values = {m.group: m.value for m in measured}
            if not rule.group_by:
                values.setdefault(NO_GROUP, 0.0)
            for group in set(values) | {g for g, (s, _) in states.items() if s in ("pending", "firing")}:
                value = values.get(group, 0.0)
                state, since = states.get(group, ("ok", window.end))
                new = state
                if state == "ok" and _breached(rule, value):
                    new, since = ("firing" if rule.for_ == 0 else "pending"), window.end
                elif state == "pending":
                    new = "ok" if not _breached(rule, value) else ("firing" if window.end - since >= rule.for_ else state)
                elif state == "firing" and _recovered(rule, value):
                    new = "resolved"
                if new != state:
                    out.append(Transition(window.end, group, new, value))
                states[group] = ("ok" if new == "resolved" else new, since)
    return out
