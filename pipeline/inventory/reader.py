"""A registry read through its REST API into a :class:`Snapshot` (MLflow 2.x and 3.x).

Two listings, paginated: ``registered-models/search`` (models, their tags and aliases) and
``model-versions/search`` (every version: status, stage, source, run, MLflow 3's logged model,
tags). Then the lineage of versions not read before: ``runs/get`` (metrics, params) or, for a
version made from an MLflow 3 logged model, ``logged-models/<id>``. Lineage is incremental: a run
that has ended is read once (its metrics are final), one still running is read each poll, and what
the poll's budget does not cover is read on the next (the version keeps what was known).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import structlog

from pipeline.inventory.client import BudgetSpent, NotFound, RegistryClient
from pipeline.inventory.model import FINAL_RUN_STATES, Lineage, ModelState, Snapshot, VersionState
from pipeline.inventory.values import NAME_BYTES, VALUE_BYTES, bounded, metric_values, millis, pairs

log = structlog.get_logger(__name__)
# MLflow 3: a version registered from a logged model has source models:/m-<hex> (and model_id)
_LOGGED_MODEL = re.compile(r"^models:/(m-[0-9a-f]+)(?:/|$)")
LineageCache = dict[tuple[str, str], Lineage]  # ("run", id) or ("logged_model", id) -> lineage


def _text(item: dict[str, Any], key: str, limit: int = NAME_BYTES) -> str:
    value = item.get(key)
    return "" if value is None else bounded(value, limit)


def model_state(item: dict[str, Any]) -> ModelState | None:
    if item.get("name") is None:
        return None
    aliases: dict[str, str] = {}
    for entry in item.get("aliases") or []:
        if isinstance(entry, dict) and entry.get("alias") is not None and entry.get("version") is not None:
            aliases[bounded(entry["alias"])] = bounded(entry["version"])
    return ModelState(name=bounded(item["name"]), description=_text(item, "description", VALUE_BYTES),
                      created=millis(item.get("creation_timestamp")),
                      updated=millis(item.get("last_updated_timestamp")),
                      tags=pairs(item.get("tags")), aliases=dict(sorted(aliases.items())))


def version_state(item: dict[str, Any]) -> VersionState | None:
    if item.get("name") is None or item.get("version") is None:
        return None
    source = _text(item, "source", VALUE_BYTES)
    model_id = item.get("model_id")
    if not model_id and (found := _LOGGED_MODEL.match(source)):
        model_id = found.group(1)
    return VersionState(model=bounded(item["name"]), version=bounded(item["version"]),
                        status=_text(item, "status"), stage=_text(item, "current_stage"), source=source,
                        run_id=bounded(item["run_id"]) if item.get("run_id") else None,
                        model_id=bounded(model_id) if model_id else None,
                        description=_text(item, "description", VALUE_BYTES),
                        created=millis(item.get("creation_timestamp")),
                        updated=millis(item.get("last_updated_timestamp")), tags=pairs(item.get("tags")))


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _lineage(answer: dict[str, Any], key: str, final: Any) -> Lineage:
    """``runs/get``'s ``run`` or ``logged-models/<id>``'s ``model``: both hold ``info`` (its
    artifact root and status) and ``data`` (metrics, params)."""
    entity = _object(answer, key)
    info, data = _object(entity, "info"), _object(entity, "data")
    uri = info.get("artifact_uri")
    return Lineage(metrics=metric_values(data.get("metrics")), params=pairs(data.get("params")),
                   artifact_uri=bounded(uri, VALUE_BYTES) if uri else None, final=final(info.get("status")))


def lineage_of_run(answer: dict[str, Any]) -> Lineage:
    return _lineage(answer, "run", lambda status: status in FINAL_RUN_STATES)


def lineage_of_logged_model(answer: dict[str, Any]) -> Lineage:
    return _lineage(answer, "model", lambda status: status not in ("LOGGED_MODEL_PENDING", "PENDING"))


def lineage_key(version: VersionState) -> tuple[str, str] | None:
    if version.model_id:
        return ("logged_model", version.model_id)
    if version.run_id:
        return ("run", version.run_id)
    return None


def _fetch_lineage(client: RegistryClient, key: tuple[str, str]) -> Lineage | None:
    kind, ident = key
    try:
        if kind == "logged_model":
            return lineage_of_logged_model(client.get(f"logged-models/{ident}"))
        return lineage_of_run(client.get("runs/get", {"run_id": ident}))
    except NotFound:
        return Lineage()  # deleted since (or an MLflow without logged models): nothing to read, ever


def read_snapshot(client: RegistryClient, registry: str, cache: LineageCache,
                  previous: Snapshot | None = None) -> Snapshot:
    """The registry now. RegistryDown propagates (the poll fails whole); a budget spent while
    listing gives a snapshot marked incomplete, one spent while reading lineage leaves the rest
    of the lineage as it was known (``cache``, updated in place)."""
    snapshot = Snapshot(registry)
    try:
        for item in client.pages("registered-models/search", "registered_models"):
            if (model := model_state(item)) is not None:
                snapshot.models[model.name] = model
        for item in client.pages("model-versions/search", "model_versions"):
            if (version := version_state(item)) is not None:
                snapshot.versions[(version.model, version.version)] = version
    except BudgetSpent:
        log.warning("inventory_budget_too_small", registry=registry, requests=client.sent,
                    hint="raise max_requests_per_poll (or page_size): the registry could not be listed in one poll")
        snapshot.complete = False
        return snapshot
    wanted = {k for v in snapshot.versions.values() if (k := lineage_key(v)) is not None}
    for key in sorted(wanted):
        if key in cache and cache[key].final:
            continue
        try:
            found = _fetch_lineage(client, key)
        except BudgetSpent:
            log.info("inventory_lineage_deferred", registry=registry, left=len(wanted - cache.keys()))
            break
        if found is not None:
            cache[key] = found
    for (name, number), version in list(snapshot.versions.items()):
        aliases = tuple(sorted(a for a, v in snapshot.models.get(name, ModelState(name)).aliases.items()
                               if v == number))
        wanted_key = lineage_key(version)
        lineage = cache.get(wanted_key) if wanted_key is not None else None
        if lineage is None and previous is not None and (known := previous.versions.get((name, number))):
            lineage = known.lineage
        snapshot.versions[(name, number)] = replace(version, aliases=aliases, lineage=lineage)
    return snapshot
