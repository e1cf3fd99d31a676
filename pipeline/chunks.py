"""The queue between the reader and the writer, its unit, and what a batch of them acknowledges.

Items travel the queue in chunks of up to :data:`QUEUE_CHUNK` lines of one file (one lock round
trip per chunk, not per line), with what the writer needs precomputed: their bytes, the counts
the sink checks its report against, and the end of each file's last line, to which the checkpoint
may advance once the batch is acknowledged.

The queue (:class:`ChunkQueue`) is bounded in bytes as well as in events: a queue bounded in
items alone holds ten times the memory when lines are ten times longer, so what a backlog or an
outage costs would depend on the log and not on the configuration.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from pipeline.reader import FileSource
from pipeline.sink import Expected, Item

_BODY = attrgetter("body")
# What the counters of a delivered line depend on: one tuple per line, counted in C.
_TALLY = attrgetter("kind", "reason", "model", "call", "verify")
QUEUE_CHUNK = 250  # items travel the queue in lists: one lock round trip per chunk, not per line


@dataclass
class Chunk:
    """Up to QUEUE_CHUNK items of one file, with what the writer needs precomputed."""

    items: list[Item]
    nbytes: int
    ends: dict[str, tuple[FileSource, int]]
    kinds: Counter[str]
    reasons: Counter[str]
    models: Counter[tuple[str, str]]  # (kind, model name) of the lines naming a model
    calls: Counter[tuple[str, str, str]]  # (kind, failure, source) of users' registry calls
    verify: bool  # some line was read again after a restart: look for it before indexing

    @classmethod
    def of(cls, items: list[Item]) -> Chunk:
        ends: dict[str, tuple[FileSource, int]] = {}
        previous: Item | None = None
        for item in items:  # lines of a file come in order, and a run of them shares its source
            if previous is not None and item.ack[0] is not previous.ack[0]:
                ends[previous.ack[0].identity.key] = previous.ack
            previous = item
        if previous is not None:
            ends[previous.ack[0].identity.key] = previous.ack
        # The reader thread counts what the writer reports once the batch is acknowledged: the
        # writer then walks no item (it waits for the node meanwhile, the node for it after).
        kinds: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        models: Counter[tuple[str, str]] = Counter()
        calls: Counter[tuple[str, str, str]] = Counter()
        verify = False
        for (kind, reason, model, call, check), count in Counter(map(_TALLY, items)).items():
            kinds[kind] += count
            if reason is not None:
                reasons[reason] += count
            if model is not None:
                models[kind, model] += count
            if call is not None:
                calls[(kind, *call)] += count
            verify = verify or check is not None
        return cls(items, sum(map(len, map(_BODY, items))), ends, kinds, reasons, models, calls, verify)


class ChunkQueue:
    """FIFO of chunks bounded by their encoded bytes and their events; markers pass freely.

    ``put`` waits while the queue is full; a chunk is always let into an empty queue, however
    large (a single over-long line must not wedge the reader). Markers (anything not a
    :class:`Chunk`: the end of reading, "nothing more ready") weigh nothing and never wait, so
    the reader can always tell the writer.
    """

    def __init__(self, max_bytes: int, max_events: int) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.bytes = 0
        self.events = 0
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Queue ``item``; False if it did not fit within ``timeout`` seconds."""
        with self._not_full:
            if isinstance(item, Chunk):
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._items and not self._fits(item):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._not_full.wait(remaining)
                self.bytes += item.nbytes
                self.events += len(item.items)
            self._items.append(item)
            self._not_empty.notify()
            return True

    def _fits(self, chunk: Chunk) -> bool:
        return (self.bytes + chunk.nbytes <= self.max_bytes
                and self.events + len(chunk.items) <= self.max_events)

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; None if nothing came within ``timeout`` seconds."""
        with self._not_empty:
            if not self._items and not self._not_empty.wait_for(lambda: bool(self._items), timeout):
                return None
            item = self._items.popleft()
            if isinstance(item, Chunk):
                self.bytes -= item.nbytes
                self.events -= len(item.items)
                self._not_full.notify()
            return item

    def empty(self) -> bool:
        with self._lock:
            return not self._items


def expected(batch: list[Chunk]) -> Expected:
    """What a batch of chunks holds, from their counts: the sink's report if it is taken whole."""
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    models: Counter[tuple[str, str]] = Counter()
    calls: Counter[tuple[str, str, str]] = Counter()
    for chunk in batch:
        kinds.update(chunk.kinds)
        reasons.update(chunk.reasons)
        models.update(chunk.models)
        calls.update(chunk.calls)
    return Expected(kinds, reasons, models, calls, any(chunk.verify for chunk in batch))


def furthest_ends(batch: list[Chunk]) -> dict[str, tuple[FileSource, int]]:
    """The furthest line end of each file in a batch."""
    ends: dict[str, tuple[FileSource, int]] = {}
    for chunk in batch:
        for key, (source, end) in chunk.ends.items():
            current = ends.get(key)
            if current is None or end > current[1]:
                ends[key] = (source, end)
    return ends
