"""The names of the event contract (docs/events.md): kinds, datasets, data streams.

Every room names streams through this module, so a name is spelt once: parsers route lines to a
kind, the pipeline installs templates and indexes into the stream of a document's dataset, rules
query streams by kind, Kibana's data views point at their patterns.
"""

from __future__ import annotations

from typing import Literal

# Kinds a log line becomes (the parsers' output) and what the rule runner adds.
EVENT_KINDS: tuple[EventKind, ...] = ("registration", "retrieval", "version", "error", "access")
LINE_KINDS = (*EVENT_KINDS, "deadletter")
# What the inventory collector writes (regwatch inventory, docs/inventory.md): the registry's state
# as it changes (one document per model version and per registered model) and its change events.
INVENTORY_KINDS = ("inventory", "change")
# What the rule runner's anomaly rules found, bucket by bucket (rules/results.py): as Elastic ML's
# results index, actual against expected and the band, and the score.
RESULT_KINDS = ("anomaly",)
LOG_KINDS = (*LINE_KINDS, "alert", *INVENTORY_KINDS, *RESULT_KINDS)
METRIC_KINDS = ("availability",)
PRODUCT = "modelregistry"

EventKind = Literal["registration", "retrieval", "version", "error", "access"]
LineKind = Literal["registration", "retrieval", "version", "error", "access", "deadletter"]
# Every stream a rule may read: what lines become, the alert history, the probe's availability.
StreamKind = Literal["registration", "retrieval", "version", "error", "access", "deadletter", "alert", "availability",
                     "inventory", "change"]


def stream_type(kind: str) -> str:
    """``logs`` or ``metrics``: the data stream type of a kind."""
    return "metrics" if kind in METRIC_KINDS else "logs"


def dataset(kind: str) -> str:
    """``modelregistry.<kind>``: ``data_stream.dataset`` and ``event.dataset`` of the kind's documents."""
    return f"{PRODUCT}.{kind}"


def kind_of_dataset(name: str) -> str:
    return name.removeprefix(PRODUCT + ".")


def data_stream_name(kind: str, namespace: str) -> str:
    """``logs-modelregistry.<kind>-<namespace>``: where a kind's documents of a namespace live."""
    return f"{stream_type(kind)}-{dataset(kind)}-{namespace}"


def pattern(namespace: str = "*", kind: str = "*", kind_type: str = "logs") -> str:
    """An index pattern over streams: ``logs-modelregistry.*-prod``, ``logs-modelregistry.error-*``."""
    return f"{kind_type}-{PRODUCT}.{kind}-{namespace}"


def all_kinds() -> list[tuple[str, str]]:
    """(type, kind) of every data stream regwatch writes."""
    return [("logs", k) for k in LOG_KINDS] + [("metrics", k) for k in METRIC_KINDS]
