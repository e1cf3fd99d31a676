"""Every regwatch data stream of a namespace, created empty by ``regwatch setup``.

A data stream normally appears with its first document. Until then a Kibana data view over it
finds no field, and each panel reading it says "field not found" rather than showing an empty
chart: the availability and alert streams stay that way until a probe or a rule runner writes.
Creating the streams at setup gives every panel its fields from the first minute.

``PUT _data_stream/<name>`` does that on a full node. The integ-test zip has no data-stream REST
API; there one document with a fixed id is created in the stream and deleted again, which leaves
the stream with its backing index and mapping and no document.
"""

from __future__ import annotations

import structlog
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from contract.streams import all_kinds, data_stream_name
from contract.timestamps import now_iso

log = structlog.get_logger(__name__)

PLACEHOLDER_ID = "regwatch-setup-placeholder"
_NO_API = (404, 405)  # the endpoint is missing (integ-test zip) rather than the request refused


def _exists(client: Elasticsearch, name: str) -> bool:
    try:
        resolved = client.indices.resolve_index(name=name, expand_wildcards="all")
    except NotFoundError:
        return False
    return any(stream["name"] == name for stream in resolved.get("data_streams", []))


def _remove_placeholder(client: Elasticsearch, name: str) -> None:
    """A setup that died between create and delete leaves its placeholder: take it out."""
    found = client.search(index=name, query={"ids": {"values": [PLACEHOLDER_ID]}}, size=10, source=False)
    for hit in found["hits"]["hits"]:
        client.delete(index=hit["_index"], id=hit["_id"], refresh=True)


def _create(client: Elasticsearch, name: str) -> None:
    try:
        client.indices.create_data_stream(name=name)
        return
    except ApiError as exc:
        if exc.status_code not in _NO_API:
            raise
    created = client.create(index=name, id=PLACEHOLDER_ID,
                            document={"@timestamp": now_iso(), "event": {"kind": "placeholder"}})
    client.delete(index=created["_index"], id=PLACEHOLDER_ID, refresh=True)


def create_empty(client: Elasticsearch, namespace: str) -> list[str]:
    """Create each stream of the namespace that does not exist yet; the names created."""
    created = []
    for _, kind in all_kinds():
        name = data_stream_name(kind, namespace)
        if _exists(client, name):
            _remove_placeholder(client, name)
            continue
        _create(client, name)
        created.append(name)
    log.info("data_streams_created", namespace=namespace, created=len(created))
    return created
