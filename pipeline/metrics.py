"""Prometheus metrics of the shipper, in a registry of its own (one per shipper instance).

Model names come from log lines, that is from anyone who can send the registry a request: the
per-model series are capped (``max_models``); later names are counted under ``model="_other"``
so a flood of invented names cannot grow the series without bound, and a name is cut to
``MODEL_LABEL_CHARS`` characters so a megabyte-long one cannot make one series that large.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER_MODELS = "_other"
MODEL_LABEL_CHARS = 200


class ShipperMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, max_models: int = 1000) -> None:
        self.registry = registry or CollectorRegistry()
        self.max_models = max_models
        self._models: set[str] = set()
        self._refused_seen: dict[str, int] = {}
        r = self.registry
        self.lines_read = Counter("regwatch_lines_read", "Lines read from log files", ["input"], registry=r)
        self.events_indexed = Counter("regwatch_events_indexed", "Documents acknowledged by Elasticsearch",
                                      ["kind"], registry=r)
        self.deadletters = Counter("regwatch_deadletters", "Lines sent to the dead-letter stream",
                                   ["reason"], registry=r)
        self.duplicates = Counter("regwatch_duplicates_skipped",
                                  "Lines Elasticsearch already held (409 on create): replays", registry=r)
        self.bulk_retries = Counter("regwatch_bulk_retries", "Bulk attempts retried (429, 5xx, connection)",
                                    registry=r)
        self.rejected = Counter("regwatch_rejected_deadletters",
                                "Dead-letters that Elasticsearch refused too (logged with their line)",
                                registry=r)
        self.bulk_latency = Histogram("regwatch_bulk_latency_seconds", "Latency of one bulk request",
                                      registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.queue_depth = Gauge("regwatch_queue_depth", "Events waiting to be indexed", registry=r)
        self.bytes_behind = Gauge("regwatch_bytes_behind", "Bytes of a file not read yet", ["path"], registry=r)
        self.registry_events = Counter("regwatch_registry_events",
                                       "Registry events indexed, per kind and model (registration, retrieval, "
                                       "version, error...), each counted once", ["kind", "model"], registry=r)
        self.registry_calls = Counter("regwatch_registry_calls",
                                      "Users' registry calls indexed (the probe's left out), per kind, failure kind "
                                      "(empty when it succeeded) and source (audit_trail or others): an action "
                                      "both sources record is one, as max by (kind) (sum by (kind, source) (...))",
                                      ["kind", "failure", "source"], registry=r)
        self.files_refused = Counter("regwatch_files_refused",
                                     "Files matching an input that were not read (a FIFO or device, a link, a "
                                     "file swapped after it was checked), by reason", ["reason"], registry=r)
        self.without_duration = Counter("regwatch_events_without_duration",
                                        "Access lines of an input that carry no response time (event.duration): "
                                        "the log format records none, so latency panels and rules see nothing",
                                        ["input"], registry=r)
        # result: attributed (named by the inventory) or unattributed (ambiguous included)
        self.retrievals_attributed = Counter("regwatch_retrievals_attributed",
                                             "Artifact downloads and alias lookups the inventory was asked to name, "
                                             "by result: attributed (model and version named) or unattributed "
                                             "(no registered version's files, or ambiguous)", ["result"], registry=r)
        for result in ("attributed", "unattributed"):
            self.retrievals_attributed.labels(result)

    def count_refused(self, totals: Mapping[str, int]) -> None:
        """Bring ``regwatch_files_refused_total`` up to the tailer's running totals per reason."""
        for reason, total in totals.items():
            seen = self._refused_seen.get(reason, 0)
            if total > seen:
                self.files_refused.labels(reason).inc(total - seen)
                self._refused_seen[reason] = total

    def count_calls(self, counts: Counter_[tuple[str, str, str]]) -> None:
        for (kind, failure, source), count in counts.items():
            self.registry_calls.labels(kind, failure, source).inc(count)

    def count_models(self, counts: Counter_[tuple[str, str]]) -> None:
        for (kind, name), count in counts.items():
            model = name[:MODEL_LABEL_CHARS]
            if model not in self._models:
                if len(self._models) >= self.max_models:
                    model = OTHER_MODELS
                else:
                    self._models.add(model)
            self.registry_events.labels(kind, model).inc(count)
