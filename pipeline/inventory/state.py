"""What the collectors have written so far, read back from Elasticsearch at start: the last state
of every model and version of a registry, and the head of every entity's chain of changes. A
restarted collector (or a second one) diffs against it, so it neither repeats a change nor
misses one that happened while it was away."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elasticsearch import AuthorizationException, Elasticsearch, NotFoundError

from contract import streams
from pipeline.inventory.model import Lineage, ModelState, Snapshot, VersionState
from pipeline.inventory.values import millis


def latest_per_key(es: Elasticsearch, index: str, registry: str) -> Iterator[dict[str, Any]]:
    """The newest document of each ``modelregistry.inventory.key``, every key, page by page."""
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": 500,
                                     "sources": [{"key": {"terms": {"field": "modelregistry.inventory.key"}}}]}
        if after is not None:
            composite["after"] = after
        try:
            answer = es.search(index=index, size=0, query={"term": {"modelregistry.registry": registry}},
                               aggs={"keys": {"composite": composite, "aggs": {"last": {"top_hits": {
                                   "size": 1, "sort": [{"@timestamp": "desc"}]}}}}})
        except NotFoundError:
            return
        result = (answer.get("aggregations") or {}).get("keys") or {}
        for bucket in result.get("buckets", []):
            hits = bucket["last"]["hits"]["hits"]
            if hits:
                yield hits[0]
        after = result.get("after_key")
        if not after or not result.get("buckets"):
            return


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    from datetime import datetime

    return millis(int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))


def state_from_documents(registry: str, docs: list[dict[str, Any]]) -> Snapshot | None:
    """The snapshot the state documents describe (None when there are none). Pure."""
    if not docs:
        return None
    snapshot = Snapshot(registry)
    for source in docs:
        reg = source.get("modelregistry") or {}
        inv, model = reg.get("inventory") or {}, reg.get("model") or {}
        if inv.get("status") == "DELETED":  # gone (a tombstone): not part of the registry any more
            continue
        if inv.get("entity") == "registered_model":
            snapshot.models[model["name"]] = ModelState(
                name=model["name"], description=inv.get("description", ""), created=_ms(inv.get("created")),
                updated=_ms(inv.get("updated")), tags=inv.get("tags") or {}, aliases=inv.get("alias_versions") or {})
        elif inv.get("entity") == "model_version":
            lineage = (Lineage(metrics=inv.get("metrics") or {}, params=inv.get("params") or {},
                               artifact_uri=inv.get("artifact_uri"), final=inv.get("lineage_final", True))
                       if inv.get("lineage_read") else None)
            snapshot.versions[(model["name"], model["version"])] = VersionState(
                model=model["name"], version=model["version"], status=inv.get("status", ""),
                stage=model.get("stage", ""), source=inv.get("source", ""), run_id=inv.get("run_id"),
                model_id=inv.get("model_id"), description=inv.get("description", ""),
                created=_ms(inv.get("created")), updated=_ms(inv.get("updated")), tags=inv.get("tags") or {},
                aliases=tuple(inv.get("aliases") or ()), lineage=lineage)
    return snapshot


def load_state(es: Elasticsearch, namespace: str,
               registry: str) -> tuple[Snapshot | None, dict[str, str], dict[str, tuple[str, str]], int | None]:
    """(the last snapshot written, the heads of the change chains, the last state document of
    each entity (key -> id and digest), and when the newest state was observed (epoch ms)).

    The streams are refreshed first, so what another collector wrote a moment ago is read too (a
    key without the ``maintenance`` privilege reads what the last periodic refresh shows)."""
    names = f"{streams.data_stream_name('inventory', namespace)},{streams.data_stream_name('change', namespace)}"
    try:
        es.indices.refresh(index=names, allow_no_indices=True, ignore_unavailable=True)
    except AuthorizationException:
        pass
    states = list(latest_per_key(es, streams.data_stream_name("inventory", namespace), registry))
    changes = list(latest_per_key(es, streams.data_stream_name("change", namespace), registry))
    heads = {hit["_source"]["modelregistry"]["inventory"]["key"]: hit["_id"] for hit in changes}
    observed = [_ms(hit["_source"].get("@timestamp")) for hit in states
                if hit["_source"]["modelregistry"]["inventory"].get("entity") == "registry"]
    then = max((t for t in observed if t is not None), default=None)  # the last poll of any collector
    states = [hit for hit in states if hit["_source"]["modelregistry"]["inventory"].get("entity") != "registry"]
    written = {hit["_source"]["modelregistry"]["inventory"]["key"]:
               (hit["_id"], hit["_source"]["modelregistry"]["inventory"]["digest"]) for hit in states}
    return state_from_documents(registry, [hit["_source"] for hit in states]), heads, written, then
