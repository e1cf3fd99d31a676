"""The notification, typed: what an alert document's outbox holds, and the sends made of it.

An outbox entry is stored in the alert document (so it outlives the runner) and is read back as
the same shape: a :class:`OutboxEntry` around the :class:`Payload` every notifier renders. A send
(:class:`Job`) takes one entry, or a batch of them, to one target; its :class:`Outcome` says how
the target answered. A runner holds a :class:`Claim` on each alert document it is delivering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from rules.notify import DeliveryFailed
from rules.state import Versioned


class WindowSpan(TypedDict):
    start: str
    end: str
    time_field: str


class Payload(TypedDict):
    """What a notifier is given: enough to act on (the window, the query, samples, links)."""

    rule: str
    group: str
    group_by: str | list[str] | None
    state: str  # firing, resolved, fired, changed
    value: float
    threshold: float | None
    severity: str
    labels: dict[str, str]
    since: float
    at: float
    message: str
    key: str  # the idempotency key: the same notification sent twice carries the same key
    alert: str  # the alert document's id
    groups: dict[str, str]  # group_by field -> this group's value
    window: WindowSpan
    index: str
    query: dict[str, Any]
    shown: NotRequired[dict[str, str | None]]  # group, value, threshold as people read them (units, no "term:")
    dashboard: NotRequired[str]
    discover: NotRequired[str]
    event: NotRequired[dict[str, Any]]  # the event that fired (match, new term, change)
    events: NotRequired[list[dict[str, Any]]]  # the newest events behind a firing alert


class OutboxEntry(TypedDict):
    """A notification queued on its alert document until every target took it."""

    key: str
    targets: list[str]  # the targets that have not taken it yet
    payload: Payload
    attempts: int
    due: float  # not sent before (a back-off, an aggregation period)
    labels: dict[str, str]
    batch: NotRequired[str]  # sent with the rule's other notifications of the period (aggregation)
    last_error: NotRequired[str]
    errors: NotRequired[dict[str, str]]  # each target's latest error
    dropped: NotRequired[list[str]]  # targets that refused it for good


@dataclass
class Claim:
    """An alert document this runner holds the outbox lease of, and its entries as they stand.
    It is held until every send made for it answered (or timed out), which may be cycles later."""

    item: Versioned
    entries: list[OutboxEntry]
    jobs: set[int] = field(default_factory=set)  # the sends for it not answered yet (their ids)
    tried: set[str] = field(default_factory=set)  # keys of the entries that were due: sent, or silenced
    quiet: set[str] = field(default_factory=set)  # keys silenced or dropped by a target: not "sent"


@dataclass
class Job:
    """One send to one target: an outbox entry, a batch of them (a digest, an aggregation), or
    a re-post (no claim)."""

    target: str
    members: list[tuple[Claim | None, OutboxEntry]]
    batch: bool = False
    refresh: bool = False  # a re-post of a firing alert (its outcome only says when to re-post)

    def claims(self) -> list[Claim]:
        """The claims this send was made for, each once."""
        return list({id(claim): claim for claim, _entry in self.members if claim is not None}.values())


@dataclass
class Outcome:
    job: Job
    error: DeliveryFailed | None
    seconds: float = 0.0
    counted: bool = True  # an attempt that says something about the target (not: stopped, busy)
    fatal: BaseException | None = None  # not an error but a death (SystemExit...): the cycle dies of it
    answered: float = field(default_factory=time.perf_counter)  # when the target answered
