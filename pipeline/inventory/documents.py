"""The inventory's documents: the state of a model or version (``inventory`` stream) and a change
(``change`` stream), with ids made of what they say, so two collectors write each once.

docs/events.md describes the fields; docs/inventory.md what each stream answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract import streams
from contract.ecs import ECS
from contract.timestamps import iso_from_epoch, now_iso
from pipeline.docid import keyed_id
from pipeline.inventory.model import Lineage, ModelState, Snapshot, VersionState, digest_of, entity_key

STATE = "inventory"
CHANGE = "change"


def _base(kind: str, namespace: str, at_ms: int | float, event_kind: str, action: str) -> dict[str, Any]:
    dataset = streams.dataset(kind)
    return {
        "@timestamp": iso_from_epoch(at_ms / 1000),
        "ecs": ECS,
        "data_stream": {"type": streams.stream_type(kind), "dataset": dataset, "namespace": namespace},
        "event": {"kind": event_kind, "dataset": dataset, "action": action, "ingested": now_iso()},
    }


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_from_epoch(ms / 1000)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != [] and v != {}}


def version_document(registry: str, version: VersionState, namespace: str, observed_ms: int,
                     previous_id: str = "") -> tuple[str, dict[str, Any]]:
    """The state of one version as observed. Its id is the state's digest and ``previous_id``, the
    id of the version's state document before (a chain): two collectors that see the same states
    write one document each, and a state that comes back (an alias moved away and back) is a
    new document, not a duplicate of the first."""
    doc = _base(STATE, namespace, observed_ms, "state", "model-version-observed")
    lineage = version.lineage or Lineage()
    digest = version.digest()
    doc["modelregistry"] = {
        "registry": registry,
        "model": _drop_none({"name": version.model, "version": version.version, "stage": version.stage or None}),
        "inventory": _drop_none({
            "key": version.key, "entity": "model_version", "status": version.status or None,
            "source": version.source or None, "run_id": version.run_id, "model_id": version.model_id,
            "artifact_uri": lineage.artifact_uri, "aliases": list(version.aliases),
            "created": _iso(version.created), "updated": _iso(version.updated), "tags": version.tags,
            "params": lineage.params, "metrics": lineage.metrics, "digest": digest,
            "description": version.description or None,
            "lineage_read": version.lineage is not None, "lineage_final": lineage.final,
        }),
    }
    return keyed_id(STATE, registry, version.key, digest, previous_id), doc


def observed_document(registry: str, snapshot: Snapshot, namespace: str,
                      observed_ms: int) -> tuple[str, dict[str, Any]]:
    """That the registry was read whole at ``observed_ms``, and what it held: written every poll,
    so the time a state was last seen survives a restart (a change's ``observed_after``), and so
    the registry's size is a series (models, versions, aliases)."""
    doc = _base(STATE, namespace, observed_ms, "state", "registry-observed")
    digest = digest_of(sorted([m.digest() for m in snapshot.models.values()]
                              + [v.digest() for v in snapshot.versions.values()]))
    doc["modelregistry"] = {"registry": registry, "inventory": {
        "key": entity_key("registry", registry), "entity": "registry", "digest": digest,
        "models": len(snapshot.models), "versions": len(snapshot.versions),
        "alias_count": sum(len(m.aliases) for m in snapshot.models.values())}}
    return keyed_id(STATE, registry, "observed", observed_ms, digest), doc


DELETED = "deleted"  # the digest of an entity's last state document once it is gone


def tombstone_document(registry: str, entity: ModelState | VersionState, namespace: str, observed_ms: int,
                       previous_id: str) -> tuple[str, dict[str, Any]]:
    """A model or version gone from the registry: the last state of its chain, so a collector
    started later knows it is gone (and does not report its deletion again)."""
    if isinstance(entity, VersionState):
        doc = _base(STATE, namespace, observed_ms, "state", "model-version-observed")
        model = {"name": entity.model, "version": entity.version}
        kind = "model_version"
    else:
        doc = _base(STATE, namespace, observed_ms, "state", "registered-model-observed")
        model, kind = {"name": entity.name}, "registered_model"
    doc["modelregistry"] = {"registry": registry, "model": model, "inventory": {
        "key": entity.key, "entity": kind, "status": "DELETED", "digest": DELETED}}
    return keyed_id(STATE, registry, entity.key, DELETED, previous_id), doc


def model_document(registry: str, model: ModelState, namespace: str, observed_ms: int,
                   previous_id: str = "") -> tuple[str, dict[str, Any]]:
    """The state of one registered model (its tags and aliases), chained as versions' are."""
    doc = _base(STATE, namespace, observed_ms, "state", "registered-model-observed")
    digest = model.digest()
    doc["modelregistry"] = {
        "registry": registry,
        "model": {"name": model.name},
        "inventory": _drop_none({
            "key": model.key, "entity": "registered_model", "aliases": sorted(model.aliases),
            "alias_versions": model.aliases, "created": _iso(model.created), "updated": _iso(model.updated),
            "tags": model.tags, "digest": digest, "description": model.description or None,
        }),
    }
    return keyed_id(STATE, registry, model.key, digest, previous_id), doc


@dataclass(frozen=True)
class Change:
    """One change between two snapshots, before it is a document."""

    action: str  # registered-model-created, model-version-created, model-version-updated, alias-set, ...
    key: str  # the entity key the chain of changes follows
    model: str
    at_ms: int  # when it happened (the registry's own time) or was first seen
    version: str | None = None
    alias: str | None = None
    field: str | None = None
    previous: str | None = None
    current: str | None = None
    previous_version: str | None = None
    observed_after_ms: int | None = None  # the last time the state before it was seen
    identity: str = ""  # what makes this change this one, besides the chain (a creation time)


def change_id(registry: str, change: Change, previous_id: str | None) -> str:
    """The same change, seen by any collector after the same history, has the same id: the
    registry, the entity, what changed to what, and the id of the change before it on the same
    entity (an alias moved 1 -> 2 -> 1 -> 2 makes two different 1 -> 2 events)."""
    return keyed_id(CHANGE, registry, change.key, change.action, change.field, change.previous, change.current,
                    change.version, change.alias, change.identity, previous_id or "")


def change_document(registry: str, change: Change, namespace: str,
                    previous_id: str | None) -> tuple[str, dict[str, Any]]:
    doc = _base(CHANGE, namespace, change.at_ms, "event", change.action)
    doc["modelregistry"] = {
        "registry": registry,
        "model": _drop_none({"name": change.model, "version": change.version, "alias": change.alias}),
        "inventory": {"key": change.key},
        "change": _drop_none({"field": change.field, "previous": change.previous, "current": change.current,
                              "previous_version": change.previous_version,
                              "observed_after": _iso(change.observed_after_ms), "previous_id": previous_id}),
    }
    if not doc["modelregistry"]["change"]:
        del doc["modelregistry"]["change"]
    return change_id(registry, change, previous_id), doc
