"""What an alias pointed to at any moment, from the change events (``regwatch history``).

MLflow keeps no time for alias changes: the collector saw the alias at version A at one poll
(``observed_after``) and at version B at the next (``@timestamp``). Between those two moments the
answer is honestly "A or B", and is told so; outside them it is exact. The collector's interval
bounds that window (and the audit trail, where shipped, names the moment itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from contract import streams
from pipeline.inventory.model import entity_key

MAX_EVENTS = 10_000


@dataclass(frozen=True)
class AliasEvent:
    """One change of an alias: at ``at`` (epoch s) it was seen pointing at ``version`` (None:
    removed); the state before was last seen at ``after`` (None: never, the alias was first seen
    there)."""

    at: float
    version: str | None
    after: float | None
    previous: str | None = None


@dataclass(frozen=True)
class AliasAt:
    """The answer at one moment. ``exact``: ``version`` is certain. Otherwise the alias moved from
    ``before`` to ``version`` at some moment between ``window[0]`` and ``window[1]``; ``known``
    False when the moment is before the collector first saw the alias (nothing is known)."""

    version: str | None
    exact: bool
    since: float | None = None  # the change that set it was seen by then
    until: float | None = None  # the next change was seen by then (None: still in force)
    before: str | None = None
    window: tuple[float, float] | None = None
    known: bool = True


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def alias_events(sources: list[dict[str, Any]]) -> list[AliasEvent]:
    """Change documents of one alias (``alias-set``, ``alias-removed``), oldest first. Pure."""
    events = []
    for source in sources:
        action = (source.get("event") or {}).get("action")
        change = (source.get("modelregistry") or {}).get("change") or {}
        if action not in ("alias-set", "alias-removed"):
            continue
        after = change.get("observed_after")
        events.append(AliasEvent(at=seconds(source["@timestamp"]),
                                 version=change.get("current") if action == "alias-set" else None,
                                 after=seconds(after) if after else None, previous=change.get("previous")))
    return sorted(events, key=lambda e: e.at)


def alias_at(events: list[AliasEvent], moment: float) -> AliasAt:
    """The version the alias pointed to at ``moment`` (epoch s), by ``events`` (oldest first). Pure."""
    prior = [e for e in events if e.at <= moment]
    later = [e for e in events if e.at > moment]
    current = prior[-1] if prior else None
    following = later[0] if later else None
    if following is not None:
        start = following.after
        if start is None:  # first seen then: before, the collector had not looked
            if current is None:
                return AliasAt(None, False, until=following.at, known=False)
            start = current.at
        if moment > start:
            return AliasAt(following.version, False, before=current.version if current else following.previous,
                           window=(start, following.at))
    if current is None:
        return AliasAt(None, True, until=following.at if following else None)
    return AliasAt(current.version, True, since=current.at, until=following.at if following else None)


def fetch_changes(es: Elasticsearch, namespace: str, model: str, alias: str | None = None,
                  registry: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The change documents of ``model`` (of one alias of it), oldest first, at most MAX_EVENTS;
    and whether there were more."""
    filters: list[dict[str, Any]] = [{"term": {"modelregistry.model.name": model}}]
    if alias is not None:
        filters.append({"term": {"modelregistry.inventory.key": entity_key("alias", model, alias)}})
    if registry is not None:
        filters.append({"term": {"modelregistry.registry": registry}})
    try:
        answer = es.search(index=streams.data_stream_name("change", namespace), size=MAX_EVENTS,
                           query={"bool": {"filter": filters}}, sort=[{"@timestamp": "asc"}],
                           track_total_hits=MAX_EVENTS + 1)
    except NotFoundError:
        return [], False
    hits = answer["hits"]["hits"]
    return [hit["_source"] for hit in hits], answer["hits"]["total"]["value"] > MAX_EVENTS


def registries_of(sources: list[dict[str, Any]]) -> list[str]:
    return sorted({(s.get("modelregistry") or {}).get("registry", "") for s in sources})


def aliases_of(sources: list[dict[str, Any]]) -> list[str]:
    found = {((s.get("modelregistry") or {}).get("model") or {}).get("alias") for s in sources}
    return sorted(a for a in found if isinstance(a, str))


def of_alias(sources: list[dict[str, Any]], alias: str) -> list[dict[str, Any]]:
    return [s for s in sources if ((s.get("modelregistry") or {}).get("model") or {}).get("alias") == alias
            and (s.get("event") or {}).get("action") in ("alias-set", "alias-removed")]
