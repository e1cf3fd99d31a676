"""Availability and resource documents of the ``availability`` metrics stream (docs/events.md)."""

from __future__ import annotations

from typing import Any

from contract import streams
from contract.ecs import ECS
from contract.secrets import redact_userinfo
from contract.timestamps import iso_from_epoch, now_iso
from pipeline.docid import keyed_id
from pipeline.probe.check import CheckResult

KIND = "availability"
_observers: dict[str, dict[str, str]] = {}


def observer(host_name: str) -> dict[str, str]:
    """ECS ``observer.*``: where the checks are made from (the probe's host), as Heartbeat says
    where it monitors from. One shared object per host."""
    found = _observers.get(host_name)
    if found is None:
        found = _observers[host_name] = {"hostname": host_name, "name": host_name, "type": "probe",
                                         "product": "regwatch"}
    return found


def _base(namespace: str, started: float, host_name: str | None) -> dict[str, Any]:
    dataset = streams.dataset(KIND)
    doc: dict[str, Any] = {
        "@timestamp": iso_from_epoch(started),
        "ecs": ECS,
        "data_stream": {"type": streams.stream_type(KIND), "dataset": dataset, "namespace": namespace},
        "event": {"kind": "metric", "dataset": dataset, "ingested": now_iso()},
    }
    if host_name:
        doc["host"] = {"name": host_name}
        doc["observer"] = observer(host_name)
    return doc


def check_message(result: CheckResult) -> str:
    """The line Discover shows for a check: ``prod-registry health up 200 in 0.012 s``."""
    text = f"{result.target} {result.step} {'up' if result.up else 'down'}"
    if result.status is not None:
        text += f" {result.status}"
    if not result.up and (result.reason or result.message):
        text += f": {result.message or result.reason}"
    return f"{text} in {result.duration_s:.3f} s"


def availability_document(result: CheckResult, namespace: str, host_name: str | None) -> tuple[str, dict[str, Any]]:
    doc = _base(namespace, result.started, host_name)
    # ECS: an HTTP check of the registry is web; one that failed is an error
    doc["event"].update(duration=int(result.duration_s * 1e9), outcome="success" if result.up else "failure",
                        action=result.step, category=["web"], type=["info" if result.up else "error"])
    doc["url"] = {"full": redact_userinfo(result.url)}  # a user name or password is never stored
    doc["service"] = {"name": result.target, "environment": result.environment}
    doc["modelregistry"] = {"probe": {"up": result.up, "check": result.step, "target": result.target}}
    doc["message"] = check_message(result)
    if result.status is not None:
        doc["http"] = {"response": {"status_code": result.status}}
    if not result.up:
        doc["error"] = {"type": result.reason or "unknown", "message": result.message or result.reason or ""}
    return keyed_id(result.target, result.step, f"{result.started:.6f}"), doc


def resource_document(fields: dict[str, Any], namespace: str, host_name: str | None,
                      started: float) -> tuple[str, dict[str, Any]]:
    doc = _base(namespace, started, host_name)
    for key, value in fields.items():
        if key == "host":
            doc.setdefault("host", {}).update(value)
        else:
            doc[key] = value
    doc["event"].update(action="resources", category=["host"], type=["info"])  # ECS: the host's metrics
    doc["modelregistry"] = {"probe": {"check": "resources"}}
    doc["message"] = f"resources of {host_name or 'the probe host'}"
    mount = fields.get("system", {}).get("filesystem", {}).get("mount_point", "")
    return keyed_id("resources", host_name or "", mount, f"{started:.6f}"), doc
