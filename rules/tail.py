"""The writes a cycle leaves for its end, sent together in one bulk request.

The alert history lines and the runner's heartbeat are written after the cycle's decisions and
need no answer before its end (the anomaly results still go in a bulk of their own): each stage
adds its operations with what to do with their outcomes, and the cycle sends them all at once
instead of a request each. Each stage keeps its own outcomes (a history line refused is logged;
a heartbeat refused fails the cycle, as its own request did).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from elasticsearch import Elasticsearch

# the outcomes of a stage's operations (one item each, in order), or the error of the request
Outcome = list[dict[str, Any]] | Exception


class Tail:
    def __init__(self, client: Elasticsearch) -> None:
        self.client = client
        self._parts: list[tuple[list[dict[str, Any]], Callable[[Outcome], None]]] = []

    def add(self, operations: list[dict[str, Any]], done: Callable[[Outcome], None]) -> None:
        """Queue ``operations`` (bulk action and document pairs); ``done`` is given their items,
        or the exception if the request failed as a whole."""
        if operations:
            self._parts.append((operations, done))

    def flush(self) -> None:
        """Send what was queued in one bulk request and hand each stage its outcomes. A stage
        that raises (a heartbeat not written) raises here, after every stage was told."""
        parts, self._parts = self._parts, []
        if not parts:
            return
        try:
            items: list[dict[str, Any]] = self.client.bulk(operations=[op for ops, _ in parts for op in ops])["items"]
        except Exception as exc:  # the request failed whole: each stage decides what that means
            outcomes: list[Outcome] = [exc] * len(parts)
        else:
            outcomes, at = [], 0
            for operations, _ in parts:
                outcomes.append(items[at:at + len(operations) // 2])
                at += len(operations) // 2
        first: Exception | None = None
        for (_, done), outcome in zip(parts, outcomes, strict=True):
            try:
                done(outcome)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
