"""Which model version a retrieval retrieved, where the inventory can tell (#30 item 2).

An artifact download names a path, not a model: ``<experiment>/<run id>/artifacts/model/...``
(a run's artifacts) or ``<experiment>/models/<m-id>/artifacts/...`` (an MLflow 3 logged model).
The inventory (``regwatch inventory``) knows which version was registered from which run path or
logged model; an alias lookup names the model and alias, and the inventory's change events say
which version the alias pointed to at that moment.

:class:`AttributionTable` is pure: built from the inventory's documents, it answers both questions.
:class:`Attributor` keeps a table refreshed from Elasticsearch in a thread of its own: ``table``
never waits for Elasticsearch (the shipper never holds a line back for it), and what cannot be
attributed says why (``modelregistry.attribution``), counted, never silently unnamed.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from contract import streams
from pipeline.inventory.history import AliasEvent, alias_at, alias_events, seconds
from pipeline.metrics import ShipperMetrics

log = structlog.get_logger(__name__)

# modelregistry.attribution: how the model and version of a retrieval were named
BY_RUN = "artifact-run"  # the download's run id and path are a registered version's source
BY_LOGGED_MODEL = "artifact-logged-model"  # the download's logged model is a version's source
BY_ALIAS = "alias"  # the alias pointed to that version at that moment
BY_ALIAS_LATEST = "alias-latest"  # after the inventory's last look: the version it last saw
AMBIGUOUS = "ambiguous"  # several versions share these files, or the alias moved around then
UNATTRIBUTED = "unattributed"  # no registered version's files (a run's other artifacts, or unknown yet)
NAMED = frozenset({BY_RUN, BY_LOGGED_MODEL, BY_ALIAS, BY_ALIAS_LATEST})  # a version was named


def result_of(how: str) -> str:
    """``attributed`` or ``unattributed`` (ambiguous too: nothing was named), the counter's label."""
    return "attributed" if how in NAMED else "unattributed"

_RUN_SOURCE = re.compile(r"^runs:/([^/]+)/?(.*)$")
_LOGGED_MODEL_SOURCE = re.compile(r"^models:/(m-[0-9a-f]+)/?$")
# an artifact URI as a source: <scheme>:/<...>/<experiment>/<run id>/artifacts/<path>
_ARTIFACT_SOURCE = re.compile(r"/([0-9a-f]{32})/artifacts/?(.*)$")
_LOGGED_MODEL_PATH = re.compile(r"/models/(m-[0-9a-f]+)/artifacts/?")


@dataclass(frozen=True)
class Attribution:
    how: str
    model: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class _Entry:
    subpath: str  # within the run's artifacts ("" for a whole logged model)
    model: str
    version: str


ArtifactKey = tuple[tuple[str, str], str]  # (("run", id) or ("logged_model", id), a path within its artifacts)


def artifact_key(source: str, run_id: str | None = None, model_id: str | None = None) -> ArtifactKey | None:
    """(("run", id) or ("logged_model", id), the path within its artifacts) of a version's source. Pure."""
    if found := _LOGGED_MODEL_SOURCE.match(source):
        return ("logged_model", found.group(1)), ""
    if model_id:
        return ("logged_model", model_id), ""
    if found := _RUN_SOURCE.match(source):
        return ("run", found.group(1)), found.group(2).strip("/")
    if found := _LOGGED_MODEL_PATH.search(source):
        return ("logged_model", found.group(1)), ""
    if found := _ARTIFACT_SOURCE.search(source):
        return ("run", found.group(1)), found.group(2).strip("/")
    if run_id:
        return ("run", run_id), ""
    return None


def download_key(path: str) -> ArtifactKey | None:
    """The same of a download's ``modelregistry.artifact.path``:
    ``1/<run>/artifacts/model/MLmodel`` -> (("run", run), "model/MLmodel");
    ``1/models/m-ab/artifacts/MLmodel`` -> (("logged_model", "m-ab"), "MLmodel"). Pure."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        return ("logged_model", parts[2]), "/".join(parts[4:])
    if len(parts) >= 3 and parts[2] == "artifacts":
        return ("run", parts[1]), "/".join(parts[3:])
    return None


@dataclass
class AttributionTable:
    """Artifacts and aliases as the inventory last recorded them. Pure: no I/O."""

    artifacts: dict[tuple[str, str], list[_Entry]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], list[AliasEvent]] = field(default_factory=dict)
    observed_until: float | None = None  # the inventory's last look at the registry (epoch s)

    @classmethod
    def from_documents(cls, states: list[dict[str, Any]], changes: list[dict[str, Any]],
                       observed_until: float | None = None) -> AttributionTable:
        """From the latest state document of each version and the alias change documents."""
        table = cls(observed_until=observed_until)
        for source in states:
            registry = source.get("modelregistry") or {}
            inventory, model = registry.get("inventory") or {}, registry.get("model") or {}
            if inventory.get("entity") != "model_version" or inventory.get("status") == "DELETED":
                continue
            key = artifact_key(inventory.get("source") or "", inventory.get("run_id"), inventory.get("model_id"))
            if key is not None and model.get("name") and model.get("version"):
                table.artifacts.setdefault(key[0], []).append(_Entry(key[1], model["name"], model["version"]))
        by_alias: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for source in changes:
            model = (source.get("modelregistry") or {}).get("model") or {}
            if model.get("name") and model.get("alias"):
                by_alias.setdefault((model["name"], model["alias"]), []).append(source)
        table.aliases = {key: alias_events(sources) for key, sources in by_alias.items()}
        return table

    def artifact(self, path: str) -> Attribution:
        """The version whose registered files ``path`` is one of: the longest source path that
        holds it; two versions registered from the same files are ambiguous."""
        key = download_key(path)
        if key is None:
            return Attribution(UNATTRIBUTED)
        (kind, _), within = key
        best: list[_Entry] = []
        for entry in self.artifacts.get(key[0], []):
            if entry.subpath and within != entry.subpath and not within.startswith(entry.subpath + "/"):
                continue
            if not best or len(entry.subpath) > len(best[0].subpath):
                best = [entry]
            elif len(entry.subpath) == len(best[0].subpath):
                best.append(entry)
        if not best:
            return Attribution(UNATTRIBUTED)
        if len({(e.model, e.version) for e in best}) > 1:
            return Attribution(AMBIGUOUS)
        return Attribution(BY_LOGGED_MODEL if kind == "logged_model" else BY_RUN, best[0].model, best[0].version)

    def alias(self, model: str, alias: str, at: float) -> Attribution:
        """The version ``alias`` of ``model`` pointed to at ``at`` (epoch s)."""
        events = self.aliases.get((model, alias))
        if not events:
            return Attribution(UNATTRIBUTED)
        answer = alias_at(events, at)
        if not answer.exact or not answer.known:
            return Attribution(AMBIGUOUS, model)
        if answer.version is None:
            return Attribution(UNATTRIBUTED, model)
        latest = self.observed_until is None or at > self.observed_until
        return Attribution(BY_ALIAS_LATEST if latest else BY_ALIAS, model, answer.version)

    def enrich(self, doc: dict[str, Any]) -> str | None:
        """Name the model and version of a retrieval document, in place; what was done
        (``modelregistry.attribution``), or None for a document this does not concern (one that
        names its version already, or is no artifact download or alias lookup)."""
        registry = doc.get("modelregistry")
        if not isinstance(registry, dict):
            return None
        named_before = registry.get("model")
        model: dict[str, Any] = named_before if isinstance(named_before, dict) else {}
        if model.get("version"):
            return None
        action = (doc.get("event") or {}).get("action")
        artifact = registry.get("artifact")
        path = artifact.get("path") if isinstance(artifact, dict) else None
        if action == "artifact-download" and isinstance(path, str):
            found = self.artifact(path)
        elif action == "registered-model-alias-get" and model.get("name") and model.get("alias"):
            try:
                at = datetime.fromisoformat(str(doc.get("@timestamp")).replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
            found = self.alias(model["name"], model["alias"], at)
        else:
            return None
        if found.model is not None:
            named = {"name": found.model, **({"version": found.version} if found.version else {})}
            registry["model"] = {**model, **named}
        registry["attribution"] = found.how
        return found.how


def load_table(es: Elasticsearch, namespace: str, max_versions: int = 10_000,
               max_alias_changes: int = 10_000) -> AttributionTable:
    """The table from the inventory's streams: every version's latest state, every alias change."""
    from pipeline.inventory.state import latest_per_key

    inventory = streams.data_stream_name("inventory", namespace)
    states, observed = [], None
    try:
        answer = es.search(index=inventory, size=1, sort=[{"@timestamp": "desc"}],
                           query={"term": {"event.action": "registry-observed"}})
        if answer["hits"]["hits"]:
            observed = seconds(answer["hits"]["hits"][0]["_source"]["@timestamp"])
    except NotFoundError:
        return AttributionTable()
    for registry in _registries(es, inventory):
        states += [hit["_source"] for hit in latest_per_key(es, inventory, registry)][:max_versions]
    try:
        answer = es.search(index=streams.data_stream_name("change", namespace), size=max_alias_changes,
                           query={"terms": {"event.action": ["alias-set", "alias-removed"]}},
                           sort=[{"@timestamp": "asc"}])
        changes = [hit["_source"] for hit in answer["hits"]["hits"]]
    except NotFoundError:
        changes = []
    return AttributionTable.from_documents(states, changes, observed)


def _registries(es: Elasticsearch, index: str) -> list[str]:
    answer = es.search(index=index, size=0, aggs={"r": {"terms": {"field": "modelregistry.registry", "size": 100}}})
    return [bucket["key"] for bucket in answer["aggregations"]["r"]["buckets"]]


class Attributor:
    """A table refreshed from Elasticsearch every ``refresh_s`` in a thread of its own; reading
    ``table`` never waits. Elasticsearch away: the last table stays, and is retried."""

    def __init__(self, es: Elasticsearch, namespace: str, refresh_s: float = 30.0,
                 metrics: ShipperMetrics | None = None) -> None:
        """``metrics``: the shipper's, whose ``regwatch_retrievals_attributed_total`` counts each
        retrieval this was asked to name, by result."""
        self.es = es
        self.metrics = metrics
        self.namespace = namespace
        self.refresh_s = refresh_s
        self.table = AttributionTable()
        self.loaded_at: float | None = None
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        try:
            self.table = load_table(self.es, self.namespace)
        except (TransportError, ApiError) as exc:
            log.warning("attribution_table_not_refreshed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return False
        self.loaded_at = time.time()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="attribution-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_s)

    def enrich(self, doc: dict[str, Any]) -> None:
        """Name what ``doc`` retrieved, by the table as it is now (never waits), and count how."""
        how = self.table.enrich(doc)
        if how is not None:
            self.counts[how] = self.counts.get(how, 0) + 1
            if self.metrics is not None:
                self.metrics.retrievals_attributed.labels(result_of(how)).inc()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def attribution_counts(es: Elasticsearch, namespace: str, since_s: float = 86400.0) -> dict[str, int]:
    """How the artifact downloads and alias lookups of the last ``since_s`` were named, by
    ``modelregistry.attribution`` (one search; empty when there is no retrieval stream yet)."""
    try:
        answer = es.search(index=streams.data_stream_name("retrieval", namespace), size=0, ignore_unavailable=True,
                           allow_no_indices=True, query={"bool": {"filter": [
                               {"exists": {"field": "modelregistry.attribution"}},
                               {"range": {"@timestamp": {"gte": f"now-{int(since_s)}s"}}}]}},
                           aggs={"how": {"terms": {"field": "modelregistry.attribution", "size": 20}}})
    except NotFoundError:
        return {}
    return {str(b["key"]): int(b["doc_count"]) for b in (answer.get("aggregations") or {}).get("how", {}).get(
        "buckets", [])}


def unnamed_line(counts: dict[str, int], since: str = "24h") -> str:
    """One line for ``regwatch status``: how many retrievals of the last ``since`` could not be
    named, and why. Pure."""
    named = sum(n for how, n in counts.items() if how in NAMED)
    unnamed = {how: n for how, n in sorted(counts.items()) if how not in NAMED and n}
    total = named + sum(unnamed.values())
    if not total:
        return f"retrievals named by the inventory (last {since}): none to name yet"
    why = ", ".join(f"{n} {how}" for how, n in unnamed.items())
    return (f"retrievals named by the inventory (last {since}): {named} of {total}; "
            f"{sum(unnamed.values())} could not be named" + (f" ({why})" if why else ""))
