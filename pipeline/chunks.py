"""The queue's unit between the reader and the writer, and what a batch of them acknowledges.

Items travel the queue in chunks of up to :data:`QUEUE_CHUNK` lines of one file (one lock round
trip per chunk, not per line), with what the writer needs precomputed: their bytes, the counts
the sink checks its report against, and the end of each file's last line, to which the checkpoint
may advance once the batch is acknowledged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pipeline.reader import FileSource
from pipeline.sink import Item

QUEUE_CHUNK = 250  # items travel the queue in lists: one lock round trip per chunk, not per line


@dataclass
class Chunk:
    """Up to QUEUE_CHUNK items of one file, with what the writer needs precomputed."""

    items: list[Item]
    nbytes: int
    ends: dict[str, tuple[FileSource, int]]
    kinds: Counter[str]
    reasons: Counter[str]

    @classmethod
    def of(cls, items: list[Item]) -> Chunk:
        ends: dict[str, tuple[FileSource, int]] = {}
        for item in items:
            source, end = item.ack
            ends[source.identity.key] = (source, end)  # lines of a file come in order
        return cls(items, sum(len(i.body) for i in items), ends, Counter(i.kind for i in items),
                   Counter(i.reason for i in items if i.reason is not None))



def furthest_ends(batch: list[Chunk]) -> dict[str, tuple[FileSource, int]]:
    """The furthest line end of each file in a batch."""
    ends: dict[str, tuple[FileSource, int]] = {}
    for chunk in batch:
        for key, (source, end) in chunk.ends.items():
            current = ends.get(key)
            if current is None or end > current[1]:
                ends[key] = (source, end)
    return ends
