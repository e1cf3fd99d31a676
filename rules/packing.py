"""A cycle's searches packed: rules that read the same indices over the same time range share one
search of the ``_msearch``, each rule's own selection a ``filter`` aggregation holding its
aggregations.

Why: a search costs the node its coordination (a task, a shard request per index, a reduce)
whatever it asks, and in a cycle of many rules most read the same streams over the same window
(the same interval and window, claimed at the same moment). Packed, a hundred rules are a search
per stream set and window instead of a hundred; the node's work per cycle falls by about as much.

Each rule is given the response its own search would have had: its aggregations, and its count
of documents (``hits.total``, exact) from its filter's. Only searches that ask for no hits are
packed (``size: 0``, a ``bool`` query of filters, aggregations): a search that reads events (a
match rule's) or asks anything else goes alone, as it was (the same search of two rules, once).
A packed search the node refuses (a rule's query string it cannot parse) is asked again
unpacked, one search per rule, in one more request: a rule that fails still fails alone (a
shard failure too, which would make the others' counts miss that shard's documents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

PACKABLE = frozenset({"size", "query", "aggs", "track_total_hits"})  # the keys a packed search may carry
Search = tuple[dict[str, Any], dict[str, Any]]  # an _msearch header and body


@dataclass(frozen=True)
class Slot:
    """Where one search's answer is: the packed search's position, and the name of its filter
    aggregation there (None: the search went alone)."""

    at: int
    name: str | None = None
    aggregates: bool = False  # the search had aggregations of its own


def _parts(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The filter shared by the searches it can be packed with (the first: the time range) and
    the search's own ones, or None if the search goes alone."""
    if not set(body) <= PACKABLE or body.get("size") != 0:
        return None
    query = body.get("query")
    if not isinstance(query, dict) or set(query) != {"bool"} or set(query["bool"]) != {"filter"}:
        return None
    filters = query["bool"]["filter"]
    if not isinstance(filters, list) or not filters:
        return None
    return filters[0], filters[1:]


def pack(searches: list[Search]) -> tuple[list[Search], list[Slot]]:
    """The searches to send (packed where they can be, in the order of their first member) and
    where each given search's answer will be."""
    keys: list[str | None] = []
    members: dict[str, list[int]] = {}
    for i, (header, body) in enumerate(searches):
        parts = _parts(body)
        if parts is None:
            keys.append(None)
            continue
        shared = {k: v for k, v in body.items() if k not in ("aggs", "query")}
        key = json.dumps([header, shared, parts[0]], sort_keys=True, default=str)
        keys.append(key)
        members.setdefault(key, []).append(i)
    out: list[Search] = []
    slots: list[Slot | None] = [None] * len(searches)
    alone: dict[str, int] = {}  # a search sent alone, by its text: the same search twice is asked once
    for i, (header, body) in enumerate(searches):
        group = keys[i]
        if slots[i] is not None:
            continue
        if group is None or len(members[group]) == 1:
            text = json.dumps([header, body], sort_keys=True, default=str)
            if text not in alone:
                alone[text] = len(out)
                out.append((header, body))
            slots[i] = Slot(alone[text])
            continue
        aggs: dict[str, Any] = {}
        for n, j in enumerate(members[group]):
            own = searches[j][1]
            parts = _parts(own)
            assert parts is not None
            rest = parts[1]
            aggregation: dict[str, Any] = {"filter": {"bool": {"filter": rest}} if rest else {"match_all": {}}}
            if own.get("aggs"):
                aggregation["aggs"] = own["aggs"]
            aggs[f"r{n}"] = aggregation
            slots[j] = Slot(len(out), f"r{n}", bool(own.get("aggs")))
        shared = {k: v for k, v in body.items() if k not in ("aggs", "query")}
        first = _parts(body)
        assert first is not None
        out.append((header, {**shared, "query": {"bool": {"filter": [first[0]]}}, "aggs": aggs}))
    return out, [slot for slot in slots if slot is not None]


def unpack(response: dict[str, Any], slot: Slot) -> dict[str, Any] | None:
    """One search's response out of its packed search's (None when the packed search failed:
    that search is to be asked alone)."""
    if slot.name is None:
        return response
    if "error" in response or response.get("_shards", {}).get("failed"):
        return None  # a shard failed for one member's query: the others' counts would miss its documents
    own: dict[str, Any] = {k: response[k] for k in ("took", "timed_out", "_shards") if k in response}
    bucket = response.get("aggregations", {}).get(slot.name)
    own["hits"] = {"total": {"value": bucket["doc_count"] if bucket else 0, "relation": "eq"},
                   "max_score": None, "hits": []}
    if bucket is not None and slot.aggregates:
        own["aggregations"] = {k: v for k, v in bucket.items() if k != "doc_count"}
    return own


def msearch(client: Elasticsearch, searches: list[Search]) -> list[dict[str, Any]]:
    """The response of each search, in order, from one ``_msearch`` of the packed searches (and
    one more, unpacked, for the members of a packed search the node refused)."""
    packed, slots = pack(searches)
    responses = client.msearch(searches=[part for search in packed for part in search])["responses"]
    out = [unpack(responses[slot.at], slot) for slot in slots]
    again = [i for i, response in enumerate(out) if response is None]
    if again:
        alone = client.msearch(searches=[part for i in again for part in searches[i]])["responses"]
        for i, response in zip(again, alone, strict=True):
            out[i] = response
    return [response for response in out if response is not None]
