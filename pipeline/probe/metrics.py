"""Prometheus series of the probe, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.probe.check import CheckResult

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ProbeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.availability = Gauge("platform_availability", "1 when the target's last health check was up, else 0",
                                  ["target", "environment"], registry=r)
        self.duration = Histogram("regwatch_probe_duration_seconds", "Duration of one probe step",
                                  ["target", "step"], buckets=LATENCY_BUCKETS, registry=r)
        self.checks = Counter("regwatch_probe_checks", "Probe steps run, by result", ["target", "step", "result"],
                              registry=r)
        self.failures = Counter("regwatch_probe_failures", "Probe steps down, by reason", ["target", "step", "reason"],
                                registry=r)
        self.dropped = Counter("regwatch_probe_documents_dropped",
                               "Documents dropped from a full buffer while Elasticsearch was away", registry=r)
        self.skipped = Counter("regwatch_probe_checks_skipped",
                               "Checks not started because the target's previous check was still running",
                               ["target"], registry=r)
        self.buffered = Gauge("regwatch_probe_buffered_documents", "Documents waiting to be indexed", registry=r)

    def record(self, result: CheckResult) -> None:
        self.duration.labels(result.target, result.step).observe(result.duration_s)
        self.checks.labels(result.target, result.step, "up" if result.up else "down").inc()
        if not result.up:
            self.failures.labels(result.target, result.step, result.reason or "unknown").inc()
        if result.step == "health":
            self.availability.labels(result.target, result.environment).set(1 if result.up else 0)
