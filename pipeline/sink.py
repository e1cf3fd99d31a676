"""Bulk indexing into data streams, exactly once, for as long as it takes.

Every document is created (``op_type: create``) with a deterministic ``_id``, so a replay is a
409, counted as already indexed. 429, 5xx and connection errors are retried with exponential
backoff and jitter without limit; a document Elasticsearch will never take (a mapping error) is
turned into a dead-letter carrying its raw line and Elasticsearch's reason.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import Elasticsearch, helpers

from pipeline.metrics import ShipperMetrics

log = structlog.get_logger(__name__)

# The bulk response without what we never read (_shards, _version, _seq_no...): a third of the
# parsing cost of a large bulk response.
_BULK_FILTER = "errors,items.*.status,items.*.error,items.*._id,items.*._index"

DeadLetterFn = Callable[[bytes, str, str], dict[str, Any]]


@dataclass
class Item:
    index: str
    id: str
    source: dict[str, Any]
    kind: str
    raw: bytes
    dead_letter: DeadLetterFn | None = None
    ack: Any = None  # opaque to the sink: what to checkpoint once acknowledged


@dataclass
class DeliveryReport:
    indexed: Counter[str] = field(default_factory=Counter)
    deadletters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rejected: int = 0
    complete: bool = True


def index_of(doc: dict[str, Any]) -> str:
    stream = doc["data_stream"]
    return f"{stream['type']}-{stream['dataset']}-{stream['namespace']}"


class BulkSink:
    def __init__(self, client: Elasticsearch, metrics: ShipperMetrics, *, max_chunk_bytes: int = 10 * 1024 * 1024,
                 initial_backoff_s: float = 0.2, max_backoff_s: float = 5.0) -> None:
        self.client = client
        self.metrics = metrics
        self.max_chunk_bytes = max_chunk_bytes
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s

    def deliver(self, items: list[Item], give_up: threading.Event | None = None) -> DeliveryReport:
        """Index every item, retrying until each is created, a duplicate, or a dead-letter.

        Returns early (``complete=False``) only when ``give_up`` is set: then nothing of this
        batch may be checkpointed.
        """
        report = DeliveryReport()
        pending = items
        attempt = 0
        while pending:
            retry, transient = self._attempt(pending, report)
            pending = retry
            if not pending:
                break
            if transient:
                attempt += 1
                self.metrics.bulk_retries.inc()
                delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(attempt, 10))
                delay *= random.uniform(0.5, 1.0)
                if give_up is not None:
                    if give_up.wait(delay):
                        report.complete = False
                        return report
                else:
                    time.sleep(delay)
        return report

    def _attempt(self, pending: list[Item], report: DeliveryReport) -> tuple[list[Item], bool]:
        actions = ({"_op_type": "create", "_index": i.index, "_id": i.id, "_source": i.source} for i in pending)
        started = time.perf_counter()
        try:
            results = list(helpers.streaming_bulk(
                self.client, actions, chunk_size=len(pending), max_chunk_bytes=self.max_chunk_bytes,
                raise_on_error=False, raise_on_exception=False, max_retries=0, yield_ok=True,
                filter_path=_BULK_FILTER))
        except TransportError as exc:
            log.warning("bulk_failed", error=type(exc).__name__, detail=str(exc)[:200], docs=len(pending))
            return pending, True
        finally:
            self.metrics.bulk_latency.observe(time.perf_counter() - started)
        retry: list[Item] = []
        transient = False
        indexed: Counter[str] = Counter()
        deadletters: Counter[str] = Counter()
        duplicates = 0
        for item, (ok, info) in zip(pending, results, strict=True):
            result = next(iter(info.values()))
            status = result.get("status")
            if ok:
                indexed[item.kind] += 1
                if item.kind == "deadletter":
                    deadletters[item.source.get("error", {}).get("type", "unknown")] += 1
            elif status == 409:
                duplicates += 1
            elif status is None or status == 429 or status >= 500:
                retry.append(item)
                transient = True
            else:
                replacement = self._reject(item, result)
                if replacement is not None:
                    retry.append(replacement)
                else:
                    report.rejected += 1
        report.indexed.update(indexed)
        report.deadletters.update(deadletters)
        report.duplicates += duplicates
        for kind, count in indexed.items():
            self.metrics.events_indexed.labels(kind).inc(count)
        for reason, count in deadletters.items():
            self.metrics.deadletters.labels(reason).inc(count)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        return retry, transient

    def _reject(self, item: Item, result: dict[str, Any]) -> Item | None:
        error = result.get("error") or {}
        if isinstance(error, dict):
            reason = f"{error.get('type', 'rejected')}: {error.get('reason', '')}"
        else:
            reason = str(error)
        if item.kind == "deadletter" or item.dead_letter is None:
            # Nothing further to fall back to: say so loudly, with the line.
            self.metrics.rejected.inc()
            log.error("deadletter_rejected", index=item.index, id=item.id, reason=reason[:500],
                      raw=item.raw[:2048].decode("utf-8", "backslashreplace"))
            return None
        doc = item.dead_letter(item.raw, f"rejected by Elasticsearch: {reason}"[:2000], "index_rejected")
        for key in ("log",):
            if key in item.source:
                doc[key] = item.source[key]
        return Item(index=index_of(doc), id=item.id, source=doc, kind="deadletter", raw=item.raw, ack=item.ack)
