"""Which model versions are in use (#30 item 3): the searches behind ``regwatch downloads``,
``regwatch stale`` and ``regwatch unused``, and the answers shaped from what they return.

What counts. A *download* of a version is a fetch of its ``MLmodel`` file through the artifact
proxy: every MLflow model has one at its root, and MLflow's client reads it exactly once each
time it downloads or loads a model (``mlflow.pyfunc.load_model``, ``download_artifacts`` of a
``models:/`` URI), so the count is the number of times the model was pulled. *Files* are every
artifact download named with the version (``pipeline/attribution.py`` names them from the
inventory: ``modelregistry.attribution``): the bytes a client pulled, whole model or not. A
download that could not be named (``unattributed``, ``ambiguous``, or shipped before the
inventory ran) is counted apart, never silently left out. The probe's own requests are left out.

When an alias moved. ``regwatch inventory`` records an alias move when a poll first sees it
(``@timestamp``) and the last time it saw the state before (``change.observed_after``): the move
happened in between. A version *left* by an alias is counted as stale only from ``@timestamp``
(plus a grace), so a pull made while the move was not yet certain is never called stale.

Pure: no I/O. The CLI sends the bodies built here and hands the responses back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract import streams
from contract.traffic import SYNTHETIC_FIELD

DOWNLOAD_ACTION = "artifact-download"
ALIAS_ACTIONS = ("alias-set", "alias-removed")
MODEL_FILE = "*/MLmodel"  # an artifact path whose file is a model's MLmodel: one per model pulled
MAX_CHANGES = 10_000
MAX_TERMS = 1_000
BY_FIELDS = {"host": "source.ip", "user": "user.name"}
NONE = "-"  # a download whose log line named no user (none behind an unauthenticated proxy)


def _clients(field: str, size: int) -> dict[str, Any]:
    """Terms of a client field; a download without a user counts as user ``-`` (an address field
    takes no such placeholder: a line without a client address has none to show)."""
    terms: dict[str, Any] = {"field": field, "size": size, "order": {"_key": "asc"}}
    if field == "user.name":
        terms["missing"] = NONE
    return {"terms": terms}


def retrieval_index(namespace: str) -> str:
    return streams.data_stream_name("retrieval", namespace)


def change_index(namespace: str) -> str:
    return streams.data_stream_name("change", namespace)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _downloads_filter(since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
    when: dict[str, Any] = {}
    if since is not None:
        when["gte"] = iso(since)
    if until is not None:
        when["lt"] = iso(until)
    return [{"term": {"event.action": DOWNLOAD_ACTION}}, {"term": {"event.outcome": "success"}},
            *([{"range": {"@timestamp": when}}] if when else [])]


def _users_only(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": filters, "must_not": [{"term": {SYNTHETIC_FIELD: True}}]}}


def _version(model: str, version: str) -> list[dict[str, Any]]:
    return [{"term": {"modelregistry.model.name": model}}, {"term": {"modelregistry.model.version": version}}]


def _counts() -> dict[str, Any]:
    """Downloads (MLmodel fetches) among a bucket's files, and the clients that pulled them."""
    return {"downloads": {"filter": {"wildcard": {"modelregistry.artifact.path": {"value": MODEL_FILE}}}},
            "hosts": {"cardinality": {"field": "source.ip"}},
            "users": {"cardinality": {"field": "user.name"}},
            "last": {"max": {"field": "@timestamp"}}}


# -- downloads per version per day -------------------------------------------------------------


def downloads_search(since: float, model: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Per day (UTC), model and version (and host or user, with ``by``): downloads, files and
    clients since ``since``; and the downloads since then that name no version, by why."""
    per_version: dict[str, Any] = {"terms": {"field": "modelregistry.model.version", "size": MAX_TERMS,
                                             "order": {"_key": "asc"}}, "aggs": _counts()}
    if by is not None:
        per_version["aggs"]["by"] = {**_clients(BY_FIELDS[by], MAX_TERMS), "aggs": _counts()}
    named = [{"exists": {"field": "modelregistry.model.version"}}]
    if model is not None:
        named.append({"term": {"modelregistry.model.name": model}})
    return {"size": 0, "query": _users_only(_downloads_filter(since)), "aggs": {
        "named": {"filter": {"bool": {"filter": named}}, "aggs": {"days": {
            "date_histogram": {"field": "@timestamp", "calendar_interval": "1d", "time_zone": "UTC",
                               "format": "yyyy-MM-dd", "min_doc_count": 1},
            "aggs": {"models": {"terms": {"field": "modelregistry.model.name", "size": MAX_TERMS,
                                          "order": {"_key": "asc"}},
                                "aggs": {"versions": per_version}}}}}},
        "unnamed": {"filter": {"bool": {"must_not": [{"exists": {"field": "modelregistry.model.version"}}]}},
                    "aggs": {"why": {"terms": {"field": "modelregistry.attribution", "size": 20,
                                               "missing": "not named"}}}}}}


@dataclass(frozen=True)
class DayRow:
    day: str  # YYYY-MM-DD, UTC
    model: str
    version: str
    downloads: int  # whole models pulled (MLmodel fetches)
    files: int
    hosts: int
    users: int
    client: str | None = None  # with --by: the host or user

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"day": self.day, "model": self.model, "version": self.version,
                               "downloads": self.downloads, "files": self.files}
        if self.client is None:
            row.update(hosts=self.hosts, users=self.users)
        return row


def downloads_rows(response: dict[str, Any], by: str | None = None) -> tuple[list[DayRow], dict[str, int]]:
    """The rows of :func:`downloads_search`'s response, oldest day first, then model, version (and
    client); and the unnamed downloads by why (``unattributed``, ``ambiguous``, ``not named``)."""
    aggs = response["aggregations"]
    rows = []
    for day in aggs["named"]["days"]["buckets"]:
        for model in day["models"]["buckets"]:
            for version in model["versions"]["buckets"]:
                buckets = version["by"]["buckets"] if by is not None else [version]
                for bucket in buckets:
                    rows.append(DayRow(day["key_as_string"], str(model["key"]), str(version["key"]),
                                       bucket["downloads"]["doc_count"], bucket["doc_count"],
                                       bucket["hosts"]["value"], bucket["users"]["value"],
                                       str(bucket["key"]) if by is not None else None))
    unnamed = {str(b["key"]): b["doc_count"] for b in aggs["unnamed"]["why"]["buckets"]}
    return rows, unnamed


# -- aliases: who held what, when --------------------------------------------------------------


def alias_changes_search(model: str | None = None, alias: str | None = None) -> dict[str, Any]:
    """Every alias change the inventory recorded (of one model, one alias), oldest first."""
    filters: list[dict[str, Any]] = [{"terms": {"event.action": list(ALIAS_ACTIONS)}}]
    if model is not None:
        filters.append({"term": {"modelregistry.model.name": model}})
    if alias is not None:
        filters.append({"term": {"modelregistry.model.alias": alias}})
    return {"size": MAX_CHANGES, "query": {"bool": {"filter": filters}},
            "sort": [{"@timestamp": "asc"}, {"_doc": "asc"}], "track_total_hits": MAX_CHANGES + 1,
            "_source": ["@timestamp", "event.action", "modelregistry.model", "modelregistry.change"]}


@dataclass(frozen=True)
class Left:
    """``alias`` of ``model`` moved away from ``version`` (to ``to``; None: removed), seen at
    ``at`` (epoch s); it came back to it at ``back`` (None: not since)."""

    model: str
    alias: str
    version: str
    at: float
    to: str | None
    back: float | None = None


@dataclass(frozen=True)
class Holder:
    """``alias`` of ``model`` points to ``version``, as first seen at ``since`` (epoch s)."""

    model: str
    alias: str
    version: str
    since: float


def _moves(changes: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[float, str | None]]]:
    """(model, alias) -> [(seen at, version or None)], oldest first."""
    moves: dict[tuple[str, str], list[tuple[float, str | None]]] = {}
    for doc in changes:
        registry = doc.get("modelregistry") or {}
        model, change = registry.get("model") or {}, registry.get("change") or {}
        action = (doc.get("event") or {}).get("action")
        if action not in ALIAS_ACTIONS or not model.get("name") or not model.get("alias"):
            continue
        version = change.get("current") if action == "alias-set" else None
        moves.setdefault((model["name"], model["alias"]), []).append((epoch(doc["@timestamp"]), version))
    return {key: sorted(value, key=lambda m: m[0]) for key, value in moves.items()}


def versions_left(changes: list[dict[str, Any]]) -> list[Left]:
    """Each time an alias moved away from a version (or was removed), and when (if ever) it came
    back to it, from the alias change documents. Pure."""
    found: list[Left] = []
    for (model, alias), moves in sorted(_moves(changes).items()):
        spans: list[Left] = []
        current: str | None = None
        for at, version in moves:
            if current is not None and version != current:
                spans.append(Left(model, alias, current, at, version))
            if version is not None:
                for i, span in enumerate(spans):
                    if span.version == version and span.back is None:
                        spans[i] = Left(span.model, span.alias, span.version, span.at, span.to, at)
            current = version
        found += spans
    return found


def holders(changes: list[dict[str, Any]]) -> list[Holder]:
    """The version each alias points to now (its last change set it), from the alias change
    documents. Pure."""
    found = []
    for (model, alias), moves in sorted(_moves(changes).items()):
        at, version = moves[-1]
        if version is not None:
            found.append(Holder(model, alias, version, at))
    return found


# -- stale: still pulled after its alias moved on ------------------------------------------------


def stale_search(left: list[Left], grace_s: float = 0.0) -> dict[str, Any]:
    """For each version an alias left: the downloads of it from ``grace_s`` after the move until
    the alias came back to it (or now), with the clients that made them."""
    spans = {str(i): {"bool": {"filter": _version(span.model, span.version) + [{"range": {"@timestamp": {
        "gte": iso(span.at + grace_s), **({"lt": iso(span.back)} if span.back is not None else {})}}}]}}
        for i, span in enumerate(left)}
    clients = {name: _clients(field, 10) for name, field in (("by_host", "source.ip"), ("by_user", "user.name"))}
    return {"size": 0, "query": _users_only(_downloads_filter()),
            "aggs": {"spans": {"filters": {"filters": spans or {"none": {"match_none": {}}}},
                               "aggs": {**_counts(), **clients}}}}


@dataclass(frozen=True)
class StaleRow:
    model: str
    alias: str
    version: str
    moved_at: str  # when the inventory saw the alias leave it
    now_points_to: str | None
    downloads: int
    files: int
    hosts: tuple[str, ...]
    users: tuple[str, ...]
    last: str  # the latest of those downloads
    held_by: tuple[str, ...] = ()  # other aliases that point to the version now: their clients may pull it

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "alias": self.alias, "version": self.version, "moved_at": self.moved_at,
                "alias_now": self.now_points_to, "downloads": self.downloads, "files": self.files,
                "hosts": list(self.hosts), "users": list(self.users), "last_download": self.last,
                "held_by": list(self.held_by)}


def stale_rows(left: list[Left], response: dict[str, Any], held: list[Holder] | None = None) -> list[StaleRow]:
    """The versions pulled after their alias left them, in the order of ``left``; each with the
    other aliases that point to it now (``held``: :func:`holders` of the same changes), since a
    client of those pulls it rightly. Pure."""
    buckets = response["aggregations"]["spans"]["buckets"]
    rows = []
    for i, span in enumerate(left):
        bucket = buckets.get(str(i))
        if not bucket or not bucket["doc_count"]:
            continue
        others = tuple(h.alias for h in held or [] if (h.model, h.version) == (span.model, span.version)
                       and h.alias != span.alias)
        rows.append(StaleRow(span.model, span.alias, span.version, iso(span.at), span.to,
                             bucket["downloads"]["doc_count"], bucket["doc_count"],
                             tuple(str(b["key"]) for b in bucket["by_host"]["buckets"]),
                             tuple(str(b["key"]) for b in bucket["by_user"]["buckets"]),
                             bucket["last"]["value_as_string"], others))
    return rows


@dataclass(frozen=True)
class VersionTotal:
    model: str
    version: str
    downloads: int
    files: int


def per_version(rows: list[DayRow]) -> list[VersionTotal]:
    """:func:`downloads_rows`'s rows summed over days (and clients), per model and version. Pure."""
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for row in rows:
        downloads, files = totals.get((row.model, row.version), (0, 0))
        totals[(row.model, row.version)] = (downloads + row.downloads, files + row.files)
    return [VersionTotal(model, version, downloads, files)
            for (model, version), (downloads, files) in sorted(totals.items())]


# -- unused: holding an alias, downloaded by nobody -----------------------------------------------


def unused_search(held: list[Holder], since: float) -> dict[str, Any]:
    """For each alias holder: its downloads since ``since`` (or since it took the alias, if
    later), and the last download of it ever."""
    recent = {str(i): {"bool": {"filter": _version(h.model, h.version) + [
        {"range": {"@timestamp": {"gte": iso(max(since, h.since))}}}]}} for i, h in enumerate(held)}
    ever = {str(i): {"bool": {"filter": _version(h.model, h.version)}} for i, h in enumerate(held)}
    none: dict[str, Any] = {"none": {"match_none": {}}}
    return {"size": 0, "query": _users_only(_downloads_filter()), "aggs": {
        "recent": {"filters": {"filters": recent or none}},
        "ever": {"filters": {"filters": ever or none}, "aggs": {"last": {"max": {"field": "@timestamp"}}}}}}


@dataclass(frozen=True)
class UnusedRow:
    model: str
    alias: str
    version: str
    since: str  # when the inventory first saw the alias point to it
    last: str | None  # the last download of the version ever (None: never)

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "alias": self.alias, "version": self.version, "alias_since": self.since,
                "last_download": self.last}


def unused_rows(held: list[Holder], response: dict[str, Any]) -> list[UnusedRow]:
    """The alias holders nobody downloaded in the window, in the order of ``held``. Pure."""
    recent = response["aggregations"]["recent"]["buckets"]
    ever = response["aggregations"]["ever"]["buckets"]
    rows = []
    for i, holder in enumerate(held):
        if recent.get(str(i), {}).get("doc_count"):
            continue
        last = ever.get(str(i), {})
        rows.append(UnusedRow(holder.model, holder.alias, holder.version, iso(holder.since),
                              last["last"].get("value_as_string") if last.get("doc_count") else None))
    return rows
