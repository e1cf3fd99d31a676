"""The shipper's heartbeat: one document per shipper in Elasticsearch, rewritten every few seconds.

With one shipper per registry host, nobody can log in to every host to read its checkpoint;
``regwatch status --all`` lists them all from these documents instead: each shipper's host,
files, bytes not yet acknowledged and when it last reported, like the rule runners' heartbeats.
A heartbeat that fails (Elasticsearch away) is logged and tried again next period: it never
holds up shipping.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from elasticsearch import ApiError, BadRequestError, Elasticsearch, TransportError

log = structlog.get_logger(__name__)

INDEX_PREFIX = "regwatch-shipper-state-"
STALE_AFTER_BEATS = 3  # a shipper silent for three periods is reported stale
MAPPINGS = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"}, "type": {"type": "keyword"}, "shipper_id": {"type": "keyword"},
        "host": {"properties": {"name": {"type": "keyword"}}}, "state": {"type": "keyword"},
        "updated": {"type": "double"}, "behind_bytes": {"type": "long"}, "events": {"type": "long"},
    },
}

Report = Callable[[], dict[str, Any]]


def index_name(namespace: str) -> str:
    return INDEX_PREFIX + namespace


def ensure(client: Elasticsearch, namespace: str) -> None:
    """The heartbeat index (one shard, a replica wherever there is a second node)."""
    index = index_name(namespace)
    if client.indices.exists(index=index):
        return
    try:
        client.indices.create(index=index, mappings=MAPPINGS,
                              settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
    except BadRequestError as exc:  # made meanwhile by another shipper
        if exc.error != "resource_already_exists_exception":
            raise


def shippers(client: Elasticsearch, namespace: str, limit: int = 10_000) -> list[dict[str, Any]]:
    """Every shipper's last heartbeat, sorted by shipper id; empty when none ever reported."""
    index = index_name(namespace)
    client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    response = client.search(index=index, size=limit, query={"term": {"type": "shipper"}},
                             sort=[{"shipper_id": "asc"}], ignore_unavailable=True, allow_no_indices=True)
    return [hit["_source"] for hit in response["hits"]["hits"]]


def condition(doc: dict[str, Any], now: float | None = None) -> str:
    """``running``, ``stopped`` (it said so when it stopped) or ``stale`` (silent too long)."""
    if doc.get("state") == "stopped":
        return "stopped"
    every = float(doc.get("every_s") or 10.0)
    age = (now or time.time()) - float(doc.get("updated") or 0.0)
    return "stale" if age > STALE_AFTER_BEATS * every else "running"


class Heartbeat:
    """Writes ``report()`` as the shipper's document every ``every_s`` seconds, in a thread."""

    def __init__(self, client: Elasticsearch, namespace: str, shipper_id: str, host: str, every_s: float,
                 report: Report) -> None:
        # The shipper's client does not retry (its sink does); a heartbeat, and above all the last
        # one saying "stopped", is tried on another node when the first is lost.
        self.client = client.options(max_retries=3, retry_on_timeout=True)
        self.index = index_name(namespace)
        self.namespace = namespace
        self.shipper_id = shipper_id
        self.host = host
        self.every_s = every_s
        self.report = report
        self.started = datetime.now(UTC).isoformat()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ensured = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="regwatch-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say so (a stopped shipper is not a stale one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.beat("stopped")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat("running")
            self._stop.wait(self.every_s)

    def beat(self, state: str) -> bool:
        try:
            if not self._ensured:
                ensure(self.client, self.namespace)
                self._ensured = True
            self.client.index(index=self.index, id=self.shipper_id, document=self.document(state))
            return True
        except (ApiError, TransportError) as exc:
            log.warning("heartbeat_failed", error=str(exc)[:200])
            return False

    def document(self, state: str) -> dict[str, Any]:
        now = time.time()
        return {
            "@timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
            "type": "shipper", "shipper_id": self.shipper_id, "host": {"name": self.host}, "pid": os.getpid(),
            "state": state, "started": self.started, "updated": now, "every_s": self.every_s,
            **self.report(),
        }
