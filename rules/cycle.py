"""What a cycle carries from stage to stage: its clock, what it did, and what is known of the
state index.

The runner reads the whole state of its rules in one search per cycle (alerts, silences,
heartbeats, notifier health); every stage reads it from :class:`Known` and puts what it writes
back, so a later stage of the same cycle sees the earlier one's writes without asking again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.state import Versioned

# The runner's own rules: about regwatch, not about the data (no query, no samples, no links).
STALE_RULE = "regwatch-runner-stale"
NOTIFIER_RULE = "regwatch-notifier-failing"
SYNTHETIC = (STALE_RULE, NOTIFIER_RULE)

@dataclass
class CycleReport:
    evaluated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not due, or claimed by another runner
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # rule, group, new state
    sent: list[str] = field(default_factory=list)  # idempotency keys delivered
    failed: list[str] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # a target refused for good (not retried)
    rule_failures: list[str] = field(default_factory=list)  # rules that failed this cycle (tried again)
    idle: bool = False  # nothing was due: no request was sent


@dataclass(frozen=True)
class Cycle:
    """One cycle (or the stop's last look): ``now`` on the cycles' clock (a test may set it),
    ``started`` on the monotonic one (leases and deadlines run on it), and its report."""

    now: float
    started: float
    report: CycleReport


class Known:
    """The state documents the last search read, with this runner's writes since (by id)."""

    def __init__(self) -> None:
        self._docs: dict[str, Versioned] = {}
        self._alerts: dict[str, dict[str, Versioned]] = {}  # rule -> alert document id -> document

    def reset(self, documents: list[Versioned]) -> None:
        self._docs, self._alerts = {}, {}
        for item in documents:
            self.put(item)

    def put(self, item: Versioned) -> None:
        """Keep a state document as read or as just written."""
        self._docs[item.id] = item
        if item.doc.get("type") == "alert":
            self._alerts.setdefault(item.doc["rule"], {})[item.id] = item

    def get(self, doc_id: str) -> Versioned | None:
        return self._docs.get(doc_id)

    def of_type(self, kind: str) -> list[Versioned]:
        return [item for item in self._docs.values() if item.doc.get("type") == kind]

    def with_outbox(self) -> list[Versioned]:
        return [item for item in self._docs.values() if item.doc.get("outbox")]

    def alerts_of(self, rule: str) -> dict[str, Versioned]:
        """A rule's alerts by group."""
        return {item.doc["group"]: item for item in self._alerts.get(rule, {}).values()}

    def failing_since(self, target: str) -> float | None:
        """Since when a target has had no success (None: it is fine)."""
        item = self._docs.get(f"notifier:{target}")
        return item.doc.get("failing_since") if item is not None else None
