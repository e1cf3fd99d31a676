"""The inventory's documents into Elasticsearch, each created once.

Every document has a deterministic id and is created (``op_type: create``): a document another
collector (or this one, before a restart) wrote already is a 409, counted as a duplicate, never a
second copy. Elasticsearch away: the write waits with backoff (``pipeline.sink.BulkSink``) and the
collector's state does not move on until it has succeeded, so nothing observed is lost: the next
poll compares against what was last written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch
from prometheus_client import CollectorRegistry

from pipeline.metrics import ShipperMetrics
from pipeline.sink import BulkSink, make_item


@dataclass
class WriteReport:
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    complete: bool = True


class InventoryWriter:
    def __init__(self, client: Elasticsearch, registry: CollectorRegistry | None = None) -> None:
        self.sink = BulkSink(client, ShipperMetrics(registry or CollectorRegistry()), max_backoff_s=30.0)

    def write(self, documents: list[tuple[str, dict[str, Any]]], give_up: threading.Event | None = None) -> WriteReport:
        """Every document created, or already there. ``complete`` False only when ``give_up`` was set
        before Elasticsearch took them all."""
        if not documents:
            return WriteReport()
        items = [make_item(doc, doc_id, b"") for doc_id, doc in documents]
        report = self.sink.deliver(items, give_up=give_up)
        return WriteReport(written=sum(report.indexed.values()), duplicates=report.duplicates,
                           rejected=report.rejected, complete=report.complete)
