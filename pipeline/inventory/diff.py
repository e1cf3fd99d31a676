"""Two snapshots of a registry compared: what changed, as change documents. Pure.

A change the registry timestamps itself (a model or version created, a version updated) carries
the registry's time; one it does not (an alias set, moved or removed: MLflow keeps no time for
aliases; a deletion) carries the time the collector first saw it, and ``observed_after`` the last
time it saw the state before: the change happened in between. Every change of an entity names the
change before it (its chain), which makes its id; the heads of the chains are the collector's
memory, rebuilt from Elasticsearch at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.inventory.documents import Change, change_document
from pipeline.inventory.model import ModelState, Snapshot, VersionState, digest_of, entity_key

# What a change of a version names in modelregistry.change.field (tags as their digest and list)
_VERSION_FIELDS = ("status", "stage", "source", "description")


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    heads: dict[str, str] = field(default_factory=dict)  # entity key -> id of its latest change


def _tags_text(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags.items())[:1024]


def _model_changes(before: ModelState | None, after: ModelState | None, now_ms: int,
                   then_ms: int | None) -> list[Change]:
    changes: list[Change] = []
    if before is None and after is not None:
        changes.append(Change("registered-model-created", after.key, after.name, after.created or now_ms,
                              identity=str(after.created)))
    if after is not None and before is not None and before.tags != after.tags:
        changes.append(Change("registered-model-updated", after.key, after.name, after.updated or now_ms,
                              field="tags", previous=_tags_text(before.tags), current=_tags_text(after.tags),
                              observed_after_ms=then_ms, identity=digest_of(after.tags)))
    name = (after or before).name  # type: ignore[union-attr]
    old_aliases = before.aliases if before is not None else {}
    new_aliases = after.aliases if after is not None else {}
    for alias in sorted(set(old_aliases) | set(new_aliases)):
        old, new = old_aliases.get(alias), new_aliases.get(alias)
        if old == new:
            continue
        key = entity_key("alias", name, alias)
        if new is None:
            changes.append(Change("alias-removed", key, name, now_ms, version=old, alias=alias, field="alias",
                                  previous=old, previous_version=old, observed_after_ms=then_ms))
        else:
            changes.append(Change("alias-set", key, name, now_ms, version=new, alias=alias, field="alias",
                                  previous=old, current=new, previous_version=old, observed_after_ms=then_ms))
    if before is not None and after is None:
        changes.append(Change("registered-model-deleted", before.key, before.name, now_ms,
                              observed_after_ms=then_ms, identity=str(before.created)))
    return changes


def _version_changes(before: VersionState | None, after: VersionState | None, now_ms: int,
                     then_ms: int | None) -> list[Change]:
    if before is None and after is not None:
        return [Change("model-version-created", after.key, after.model, after.created or now_ms,
                       version=after.version, current=after.status or None, identity=str(after.created))]
    if before is not None and after is None:
        return [Change("model-version-deleted", before.key, before.model, now_ms, version=before.version,
                       previous=before.status or None, observed_after_ms=then_ms, identity=str(before.created))]
    assert before is not None and after is not None
    changes = []
    # the registry's own time when it moved on (a stage or description change bumps it), else first seen
    at = after.updated if after.updated and after.updated != before.updated else now_ms
    for name in _VERSION_FIELDS:
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changes.append(Change("model-version-updated", after.key, after.model, at, version=after.version,
                                  field=name, previous=old[:1024], current=new[:1024],
                                  observed_after_ms=None if at != now_ms else then_ms))
    if before.tags != after.tags:
        changes.append(Change("model-version-updated", after.key, after.model, at, version=after.version,
                              field="tags", previous=_tags_text(before.tags), current=_tags_text(after.tags),
                              observed_after_ms=None if at != now_ms else then_ms,
                              identity=digest_of(after.tags)))
    return changes


def diff(registry: str, before: Snapshot | None, after: Snapshot, namespace: str, now_ms: int,
         then_ms: int | None, heads: dict[str, str]) -> Diff:
    """The changes from ``before`` to ``after`` and their documents, each chained to the head of
    its entity (``heads``, not changed: the result holds the new heads). Without ``before`` (the
    registry never seen) models and versions are created (at the registry's times) and aliases
    set as first seen. An incomplete ``after`` infers no deletion."""
    result = Diff(heads=dict(heads))
    old_models = before.models if before is not None else {}
    old_versions = before.versions if before is not None else {}
    changes: list[Change] = []
    for name in sorted(set(old_models) | set(after.models)):
        if name not in after.models and not after.complete:
            continue
        model_changes = _model_changes(old_models.get(name), after.models.get(name), now_ms, then_ms)
        changes += [c for c in model_changes if c.action != "registered-model-deleted"]
    for key in sorted(set(old_versions) | set(after.versions)):
        if key not in after.versions and not after.complete:
            continue
        changes += _version_changes(old_versions.get(key), after.versions.get(key), now_ms, then_ms)
    for name in sorted(set(old_models) - set(after.models) if after.complete else ()):
        changes += [c for c in _model_changes(old_models[name], None, now_ms, then_ms)
                    if c.action == "registered-model-deleted"]
    for change in changes:
        doc_id, doc = change_document(registry, change, namespace, result.heads.get(change.key))
        result.heads[change.key] = doc_id
        result.changes.append(change)
        result.documents.append((doc_id, doc))
    return result
