"""The inventory's loop: every interval, each registry read, compared with what was last
written, and the differences written (regwatch inventory).

A registry that does not answer costs a backoff (2 s, 4 s, 8 s... up to ``backoff_max_s``), never
the collector: what it knew stays as it was, and the first poll that reads the registry again
compares against it, so a change made while the registry (or Elasticsearch) was away is written
when it comes back, once. The state moves on only after Elasticsearch has taken the documents.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from contract.secrets import SecretError
from pipeline.inventory.client import RegistryClient, RegistryDown
from pipeline.inventory.diff import Diff, diff
from pipeline.inventory.documents import (
    DELETED,
    model_document,
    observed_document,
    tombstone_document,
    version_document,
)
from pipeline.inventory.metrics import InventoryMetrics
from pipeline.inventory.model import ModelState, Snapshot, VersionState
from pipeline.inventory.reader import LineageCache, lineage_key, read_snapshot
from pipeline.inventory.settings import InventorySettings, RegistrySettings
from pipeline.inventory.state import load_state
from pipeline.inventory.writer import InventoryWriter

log = structlog.get_logger(__name__)


def backoff_s(failures: int, max_s: float) -> float:
    """How long to leave a registry alone after ``failures`` polls in a row failed."""
    return min(float(2 ** min(failures, 30)), max_s) if failures > 0 else 0.0


Written = dict[str, tuple[str, str]]  # entity key -> (id, digest) of its last state document


def state_documents(registry: str, snapshot: Snapshot, namespace: str, observed_ms: int,
                    written: Written, previous: Snapshot | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The state documents of the models and versions whose state is not the one last written
    (``written``), each chained to that one; a tombstone for each one of ``previous`` gone from a
    complete ``snapshot``. Pure."""
    documents = []
    if previous is not None and snapshot.complete:
        gone: list[ModelState | VersionState] = [m for n, m in previous.models.items() if n not in snapshot.models]
        gone += [v for k, v in previous.versions.items() if k not in snapshot.versions]
        for entity in gone:
            last_id, last_digest = written.get(entity.key, ("", ""))
            if last_digest != DELETED:
                documents.append(tombstone_document(registry, entity, namespace, observed_ms, last_id))
    entities: list[tuple[str, str, Any]] = [(m.key, m.digest(), m) for m in snapshot.models.values()]
    entities += [(v.key, v.digest(), v) for v in snapshot.versions.values()]
    for key, digest, entity in entities:
        last_id, last_digest = written.get(key, ("", ""))
        if digest == last_digest:
            continue
        if isinstance(entity, ModelState):
            documents.append(model_document(registry, entity, namespace, observed_ms, last_id))
        else:
            documents.append(version_document(registry, entity, namespace, observed_ms, last_id))
    return documents


@dataclass
class PollReport:
    registry: str
    outcome: str  # ok, registry_down, elasticsearch_down, incomplete, backing_off, stopped
    message: str = ""
    changes: list[str] = field(default_factory=list)  # event.action of each change written
    documents: int = 0
    written: int = 0
    duplicates: int = 0
    requests: int = 0


class RegistryPoller:
    """One registry: its client, what was last written, its backoff."""

    def __init__(self, settings: RegistrySettings, es: Elasticsearch, namespace: str, writer: InventoryWriter,
                 metrics: InventoryMetrics, backoff_max_s: float) -> None:
        self.settings = settings
        self.name = settings.name
        self.es = es
        self.namespace = namespace
        self.writer = writer
        self.metrics = metrics
        self.backoff_max_s = backoff_max_s
        self.client = RegistryClient(settings)
        self.cache: LineageCache = {}
        self.previous: Snapshot | None = None
        self.heads: dict[str, str] = {}
        self.written: Written = {}
        self.then_ms: int | None = None
        self.loaded = False
        self.failures = 0
        self.next_at = 0.0  # monotonic: no poll before

    def _load(self) -> None:
        snapshot, heads, written, then_ms = load_state(self.es, self.namespace, self.name)
        self.previous, self.heads, self.written, self.then_ms = snapshot, heads, written, then_ms
        if snapshot is not None:
            for version in snapshot.versions.values():
                key = lineage_key(version)
                if key is not None and version.lineage is not None and version.lineage.final:
                    self.cache[key] = version.lineage
        self.loaded = True
        log.info("inventory_state_loaded", registry=self.name, states=len(written), chains=len(heads))

    def _failed(self, outcome: str, message: str) -> PollReport:
        self.failures += 1
        wait = backoff_s(self.failures, self.backoff_max_s)
        self.next_at = time.monotonic() + wait
        self.metrics.up.labels(self.name).set(0)
        self.metrics.polls.labels(self.name, outcome).inc()
        log.warning("inventory_poll_failed", registry=self.name, outcome=outcome, error=message,
                    failures=self.failures, retry_in_s=wait)
        return PollReport(self.name, outcome, message, requests=self.client.sent)

    def poll(self, stop: threading.Event | None = None) -> PollReport:
        if time.monotonic() < self.next_at:
            return PollReport(self.name, "backing_off")
        try:
            if not self.loaded:
                self._load()
        except (TransportError, ApiError) as exc:
            return self._failed("elasticsearch_down", f"{type(exc).__name__}: {str(exc)[:200]}")
        self.client.new_poll()
        try:
            snapshot = read_snapshot(self.client, self.name, self.cache, self.previous)
        except RegistryDown as exc:
            return self._failed("registry_down", str(exc))
        except SecretError as exc:
            return self._failed("credentials", str(exc))
        finally:
            self.metrics.requests.labels(self.name).inc(self.client.sent)
        now_ms = int(time.time() * 1000)
        if not snapshot.complete:
            self.metrics.polls.labels(self.name, "incomplete").inc()
            return PollReport(self.name, "incomplete", "the request budget ran out while listing",
                              requests=self.client.sent)
        changes: Diff = diff(self.name, self.previous, snapshot, self.namespace, now_ms, self.then_ms, self.heads)
        states = state_documents(self.name, snapshot, self.namespace, now_ms, self.written, self.previous)
        documents = changes.documents + states + [observed_document(self.name, snapshot, self.namespace, now_ms)]
        try:
            report = self.writer.write(documents, give_up=stop)
        except (TransportError, ApiError) as exc:
            return self._failed("elasticsearch_down", f"{type(exc).__name__}: {str(exc)[:200]}")
        if not report.complete:
            return PollReport(self.name, "stopped", requests=self.client.sent)
        self.previous, self.heads, self.then_ms = snapshot, changes.heads, now_ms
        for doc_id, doc in states:  # (the registry-observed document is not a state of its chains)
            inventory = doc["modelregistry"]["inventory"]
            self.written[inventory["key"]] = (doc_id, inventory["digest"])
        self.failures = 0
        self.metrics.up.labels(self.name).set(1)
        self.metrics.polls.labels(self.name, "ok").inc()
        self.metrics.observe(snapshot)
        self.metrics.changes.labels(self.name).inc(len(changes.documents))
        if changes.changes:
            log.info("inventory_changes", registry=self.name, changes=len(changes.changes),
                     written=report.written, duplicates=report.duplicates)
        return PollReport(self.name, "ok", changes=[c.action for c in changes.changes], documents=len(documents),
                          written=report.written, duplicates=report.duplicates, requests=self.client.sent)

    def close(self) -> None:
        self.client.close()


class Collector:
    def __init__(self, settings: InventorySettings, es: Elasticsearch, namespace: str,
                 metrics: InventoryMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or InventoryMetrics()
        self.writer = InventoryWriter(es)
        self.pollers = [RegistryPoller(r, es, namespace, self.writer, self.metrics, settings.backoff_max_s)
                        for r in settings.registries]

    def cycle(self, stop: threading.Event | None = None) -> list[PollReport]:
        """Each registry polled once (unless backing off), in order."""
        reports = []
        for poller in self.pollers:
            if stop is not None and stop.is_set():
                break
            try:
                reports.append(poller.poll(stop))
            except Exception as exc:  # a bug on one registry's answer must not stop the others
                log.exception("inventory_poll_crashed", registry=poller.name)
                reports.append(poller._failed("collector_error", f"{type(exc).__name__}: {str(exc)[:200]}"))
        return reports

    def run(self, stop: threading.Event, once: bool = False) -> list[PollReport]:
        """Poll every ``interval_s`` until ``stop`` (one cycle with ``once``); the last cycle's reports."""
        reports: list[PollReport] = []
        try:
            while not stop.is_set():
                started = time.monotonic()
                reports = self.cycle(stop)
                if once:
                    break
                waits = [self.settings.interval_s - (time.monotonic() - started)]
                waits += [p.next_at - time.monotonic() for p in self.pollers if p.failures]
                stop.wait(max(0.5, min(waits)))
        finally:
            for poller in self.pollers:
                poller.close()
        return reports
