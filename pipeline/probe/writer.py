"""The probe's documents on their way to Elasticsearch, held while it is away.

Checks go on while Elasticsearch is down: their documents wait in a bounded buffer and are
written when it answers again (``pipeline.sink.BulkSink``: create with a deterministic id, so a
retried batch cannot duplicate, backoff on 429/5xx/connection errors). Beyond the bound the
oldest documents are dropped, counted and logged: the probe's memory stays bounded in a long
outage, and the newest state of the registry is what is kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import structlog
from elasticsearch import Elasticsearch

from pipeline.metrics import ShipperMetrics
from pipeline.probe.metrics import ProbeMetrics
from pipeline.sink import BulkSink, Item, make_item

log = structlog.get_logger(__name__)
BATCH = 500


class DocumentWriter:
    def __init__(self, client: Elasticsearch, metrics: ProbeMetrics, capacity: int) -> None:
        self.sink = BulkSink(client, ShipperMetrics(metrics.registry))
        self.metrics = metrics
        self.capacity = capacity
        self.buffer: deque[Item] = deque()
        self.lock = threading.Condition()
        self.stop_event = threading.Event()
        self.dropped = 0
        self.indexed = 0
        self.thread = threading.Thread(target=self._run, name="probe-writer", daemon=True)
        self.thread.start()

    def add(self, documents: list[tuple[str, dict[str, Any]]]) -> None:
        with self.lock:
            for doc_id, doc in documents:
                self.buffer.append(make_item(doc, doc_id, b""))
            while len(self.buffer) > self.capacity:
                self.buffer.popleft()
                self.dropped += 1
                self.metrics.dropped.inc()
                log.warning("probe_document_dropped", capacity=self.capacity, dropped=self.dropped)
            self.metrics.buffered.set(len(self.buffer))
            self.lock.notify()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            with self.lock:
                while not self.buffer and not self.stop_event.is_set():
                    self.lock.wait(timeout=1.0)
                batch = list(self.buffer)[:BATCH]
            if not batch:
                continue
            try:
                report = self.sink.deliver(batch, give_up=self.stop_event)
            except Exception:  # the writer outlives any one failure; the batch stays buffered
                log.exception("probe_write_failed")
                self.stop_event.wait(1.0)
                continue
            if not report.complete:
                continue
            sent = {id(item) for item in batch}
            with self.lock:
                self.buffer = deque(item for item in self.buffer if id(item) not in sent)
                self.indexed += sum(report.indexed.values()) + report.duplicates
                self.metrics.buffered.set(len(self.buffer))
                self.lock.notify_all()

    def flush(self, timeout_s: float, give_up: threading.Event | None = None) -> bool:
        """Wait until every buffered document is written; False when the time ran out or
        ``give_up`` was set (a stop signal during a long flush)."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or (give_up is not None and give_up.is_set()):
                    return False
                self.lock.wait(timeout=min(left, 0.2))
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop writing. A bulk request still in flight (Elasticsearch not answering) is left to
        its daemon thread after ``timeout_s``: a stopping probe does not wait out its timeout."""
        self.stop_event.set()
        with self.lock:
            self.lock.notify_all()
        self.thread.join(timeout=timeout_s)
