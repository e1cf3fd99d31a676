"""Claiming rule cycles: which windows of which rules this runner evaluates now.

Each rule's ``cycle:<rule>`` document holds the end of its last evaluated window. Runners side by
side claim a due rule by writing it with optimistic concurrency: one wins and evaluates, the
other skips until the rule is due again. Windows missed while the runner (or Elasticsearch) was
away are evaluated oldest first, at most :data:`MAX_CATCH_UP`. A rule that fails gives its claim
back from the failed window, so the next cycle evaluates that window again.
"""

from __future__ import annotations

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError

from rules.model import Rule
from rules.query import Window
from rules.state import StateStore, Versioned
from rules.types import rule_type

log = structlog.get_logger(__name__)

SETTLE_S = 1.0  # an event ingested this recently may not be searchable yet: the window ends before it
MAX_CATCH_UP = 60  # windows re-evaluated, oldest first, after the runner (or Elasticsearch) was away


class RuleClaims:
    def __init__(self, store: StateStore, rules: list[Rule], runner_id: str) -> None:
        self.store = store
        self.rules = rules
        self.runner_id = runner_id
        self._claims: dict[str, tuple[Versioned, float]] = {}  # rule -> its cycle document, last_end before
        self._due: dict[str, float] = {}  # rule -> when it is due next, as last seen
        self._mine: dict[str, Versioned] = {}  # rule -> its cycle document as this runner last wrote it
        self.refreshed = False  # the last claim wrote, and its bulk refreshed the state index

    def use(self, rules: list[Rule]) -> None:
        """Claim ``rules`` from now on (rules reloaded): a rule that stays keeps its last window."""
        self.rules = rules
        names = {rule.name for rule in rules}
        self._due = {name: due for name, due in self._due.items() if name in names}
        self._mine = {name: item for name, item in self._mine.items() if name in names}

    def moments(self) -> list[float]:
        return [self._due.get(rule.name, 0.0) for rule in self.rules]

    def claim(self, now: float) -> dict[str, list[Window]]:
        """Claim every due rule's cycle in one bulk: the windows each one won.

        A rule's cycle document as this runner last wrote it is not read again: if another
        runner wrote it since, the claim's ``if_seq_no`` finds out (that runner has the window)
        and the document is read the next time. The others (at the start, or lost to another
        runner) are read in one mget. The bulk refreshes the state index: the cycle's one search,
        next, reads every write made before it, this runner's and the others'."""
        end = now - SETTLE_S
        unknown = [rule.name for rule in self.rules if rule.name not in self._mine]
        read = dict(zip(unknown, self.store.get_many([f"cycle:{name}" for name in unknown]), strict=True))
        writes, wanted = [], []
        for rule in self.rules:
            cycle = self._mine.get(rule.name) or read[rule.name]
            last_end = cycle.doc.get("last_end", end - rule.interval)
            if cycle.seq_no is not None and end - last_end < rule.interval:
                self._due[rule.name] = last_end + rule.interval + SETTLE_S
                continue
            writes.append((cycle, {"type": "cycle", "rule": rule.name, "last_end": end, "updated": now,
                                   "runner": self.runner_id}))
            wanted.append((rule, last_end))
        claimed: dict[str, list[Window]] = {}
        self._claims = {}
        self.refreshed = bool(writes)
        try:
            outcomes = self.store.write_many(writes, refresh=True) if writes else []
        except Exception:
            self._mine.clear()  # some may be written: each is read again before it is claimed
            raise
        for (rule, last_end), written in zip(wanted, outcomes, strict=True):
            if written is not None:  # else another runner claimed it: due alike, an interval on
                claimed[rule.name] = rule_type(rule).windows(rule, last_end, end, MAX_CATCH_UP)
                self._claims[rule.name] = (written, last_end)
                self._mine[rule.name] = written
            else:
                self._mine.pop(rule.name, None)
            self._due[rule.name] = end + rule.interval + SETTLE_S
        return claimed

    def give_back(self, rule: Rule, window: Window) -> None:
        """Give the claim back from ``window`` on: the next cycle evaluates it (and the rule's
        later windows) again."""
        claimed = self._claims.get(rule.name)
        if claimed is None:
            return
        cycle, before = claimed
        windows = rule_type(rule).windows(rule, before, cycle.doc["last_end"], MAX_CATCH_UP)
        earlier = [w.end for w in windows if w.end < window.end]
        back = max(earlier) if earlier else before
        self._mine.pop(rule.name, None)  # read again before the next claim, whatever happens now
        try:
            written = self.store.write(cycle, cycle.doc | {"last_end": back})
        except (ApiError, TransportError) as err:
            log.warning("rule_claim_not_returned", rule=rule.name, error=type(err).__name__)
            return
        if written is not None:
            self._claims[rule.name] = (written, before)
            self._mine[rule.name] = written
