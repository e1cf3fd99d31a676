"""The collector's /metrics: the registry's size (models, versions by status, aliases) as
Prometheus gauges, and the collector's own health (polls, failures, requests).

``regwatch_inventory_model_versions{status}`` has a series for MLflow's three statuses from the
first poll on, and one for any other status seen; a status no version has any more reads 0 (as
kube-state-metrics keeps a phase's series at 0), never its last count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.inventory.model import Snapshot


class InventoryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.models = Gauge("regwatch_inventory_models", "Registered models", ["registry"], registry=r)
        self.versions = Gauge("regwatch_inventory_model_versions", "Model versions by status",
                              ["registry", "status"], registry=r)
        self.aliases = Gauge("regwatch_inventory_aliases", "Aliases set", ["registry"], registry=r)
        self.up = Gauge("regwatch_inventory_registry_up", "1 when the last poll read the registry whole",
                        ["registry"], registry=r)
        self.polls = Counter("regwatch_inventory_polls", "Polls by outcome", ["registry", "outcome"], registry=r)
        self.requests = Counter("regwatch_inventory_requests", "Requests sent to the registry", ["registry"],
                                registry=r)
        self._statuses: dict[str, set[str]] = {}  # registry -> every status it has had a series for
        self.changes = Counter("regwatch_inventory_changes", "Change events written (duplicates not counted)",
                               ["registry"], registry=r)

    def observe(self, snapshot: Snapshot) -> None:
        name = snapshot.registry
        self.models.labels(name).set(len(snapshot.models))
        self.aliases.labels(name).set(sum(len(m.aliases) for m in snapshot.models.values()))
        by_status: dict[str, int] = {}
        for version in snapshot.versions.values():
            by_status[version.status or "UNKNOWN"] = by_status.get(version.status or "UNKNOWN", 0) + 1
        statuses = self._statuses.setdefault(name, {"READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"})
        statuses.update(by_status)
        for status in statuses:
            self.versions.labels(name, status).set(by_status.get(status, 0))
