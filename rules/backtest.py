"""Replay a rule over stored history: when would it have fired and resolved?

The same queries and the same lifecycles (:mod:`rules.lifecycle`) as the runner, on windows
stepping by the rule's interval from ``start`` to ``end``, in memory: nothing is written, nobody is
notified. Windows go to Elasticsearch 200 at a time in one ``_msearch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from rules.lifecycle import Reading, TrialRow
from rules.model import AnomalyRule, Rule
from rules.query import Measurement, Window, header, indices
from rules.types import measure, request, rule_type

BATCH = 200
# Windows one backtest replays: a year of one-hour windows, a week of one-minute ones. A range of
# centuries at a one-minute interval would otherwise be built in memory before the first search.
MAX_WINDOWS = 10_000


# An anomaly rule's search brings its whole history per group: fewer windows per _msearch.
BUCKETS_PER_MSEARCH = 200_000


def batch_size(rule: Rule) -> int:
    """Windows per ``_msearch``: :data:`BATCH`, fewer for a rule whose search brings a history."""
    if isinstance(rule, AnomalyRule) and not rule.legacy:
        return max(1, min(BATCH, BUCKETS_PER_MSEARCH // (rule.points * (rule.max_groups if rule.group_by else 1))))
    return BATCH


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
    stored: dict[str, dict[str, Any]] = {}  # group -> the alert's fields, as the runner would store them
    size = batch_size(rule)
    for offset in range(0, len(windows), size):
        batch = windows[offset:offset + size]
        # Windows that ask the same (an anomaly rule's windows within one bucket) are asked once.
        bodies = [request(rule, window) for window in batch]
        distinct: dict[str, int] = {}
        searches = []
        for body in bodies:
            key = json.dumps(body, sort_keys=True)
            if key not in distinct:
                distinct[key] = len(distinct)
                searches += [header(rule, namespace), body]
        answers = client.msearch(searches=searches)["responses"]
        responses = [answers[distinct[json.dumps(body, sort_keys=True)]] for body in bodies]
        for window, response in zip(batch, responses, strict=True):
            for decision in kind.lifecycle.decide(kind, rule, stored, measure(rule, response, window), window.end):
                if decision.transition is not None:
                    out.append(Transition(window.end, decision.group, decision.transition, decision.value))
                stored[decision.group] = decision.fields
    return out


def read_now(client: Elasticsearch, rule: Rule, namespace: str, at: float) -> list[Reading]:
    """The rule's window ending at ``at``, measured once: no state, no ``for``, nothing written.
    Event rules read as the number of matching events (breached when there is one); change rules
    as how many groups have a value."""
    kind = rule_type(rule)
    _window, _body, measured = _measure_at(client, rule, namespace, at)
    return kind.lifecycle.readings(kind, rule, measured)


def _measure_at(client: Elasticsearch, rule: Rule, namespace: str,
                at: float) -> tuple[Window, dict[str, Any], list[Measurement]]:
    """The rule's window ending at ``at``, its search body and what it measured."""
    window = rule_type(rule).window_at(rule, at)
    body = request(rule, window)
    response = client.msearch(searches=[header(rule, namespace), body])["responses"][0]
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: search failed: {str(response['error'])[:300]}")
    return window, body, measure(rule, response, window)


@dataclass(frozen=True)
class Trial:
    """What the runner would do with a rule's window now, found without doing it."""

    window_start: float
    window_end: float
    index: str
    query: dict[str, Any]
    threshold: float | None
    rows: list[TrialRow]


def dry_run(client: Elasticsearch, rule: Rule, namespace: str, at: float) -> Trial:
    """The rule's window ending at ``at``: its query, each group's value and the transition it
    would make from the alert state stored now. Reads only: nothing is written, nobody notified
    (like ElastAlert's ``elastalert-test-rule``)."""
    from rules.state import StateStore

    kind = rule_type(rule)
    window, body, measured = _measure_at(client, rule, namespace, at)
    store = StateStore(client, namespace)
    stored = {item.doc["group"]: item.doc for item in store.alerts_of(rule.name)} if client.indices.exists(
        index=store.index) else {}
    rows = kind.lifecycle.trial(kind, rule, stored, measured, at)
    return Trial(window.start, window.end, indices(rule, namespace), body, kind.threshold(rule), rows)
