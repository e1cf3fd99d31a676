"""Helpers for shipper tests: unique log lines, configs, counting what reached Elasticsearch."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import yaml
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch


def line(seq: int, status: int = 200, path: str = "/api/2.0/mlflow/registered-models/get") -> bytes:
    """A unique nginx line: its sequence number is in the query string (url.query)."""
    minute, second = divmod(seq // 100 % 3600, 60)
    return (f'127.0.0.1 - - [25/Nov/2026:10:{minute:02d}:{second:02d} +0000] "GET {path}?name=m{seq % 7}&seq={seq} '
            f'HTTP/1.1" {status} 10 "-" "test" rt=0.001 uct="0.000" urt="0.001"\n').encode()


def write_config(path: Path, es_url: str, namespace: str, paths: list[str], **extra) -> Path:
    config = {
        "elasticsearch": {"hosts": [es_url]},
        "namespace": namespace,
        "checkpoint_file": str(path.parent / "checkpoints.json"),
        "metrics_port": None,
        "poll_interval_s": 0.2,
        "inputs": [{"paths": paths, "format": "nginx"}],
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def transient(exc: BaseException) -> bool:
    """An answer worth asking again: the node busy, a shard of a just-rolled-over index not started
    yet (503 ``search_phase_execution_exception``), a connection that dropped."""
    if isinstance(exc, ApiError):
        return exc.status_code in TRANSIENT_STATUSES
    return isinstance(exc, TransportError)


def retrying(call, timeout: float = 60.0):
    """``call()``, asked again while Elasticsearch answers with a transient error, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (ApiError, TransportError) as exc:
            if not transient(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def indexed(es: Elasticsearch, namespace: str, kind: str = "*") -> int:
    pattern = f"logs-modelregistry.{kind}-{namespace}"

    def count() -> int:
        es.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
        return es.count(index=pattern, allow_no_indices=True, ignore_unavailable=True)["count"]

    return retrying(count)


def seq_counts(es: Elasticsearch, namespace: str) -> Counter[int]:
    """How many documents each sequence number has (composite aggregation: exact, paged)."""
    pattern = f"logs-modelregistry.*-{namespace}"
    retrying(lambda: es.indices.refresh(index=pattern, allow_no_indices=True))
    counts: Counter[int] = Counter()
    after = None
    while True:
        composite = {"size": 10000, "sources": [{"q": {"terms": {"field": "url.query"}}}]}
        if after:
            composite["after"] = after
        response = retrying(lambda composite=composite: es.search(
            index=pattern, size=0, aggs={"seq": {"composite": composite}}, allow_partial_search_results=False))
        shards = response["_shards"]
        assert shards["failed"] == 0 and shards["successful"] == shards["total"], shards  # a count of every shard
        buckets = response["aggregations"]["seq"]["buckets"]
        for bucket in buckets:
            seq = int(bucket["key"]["q"].rpartition("seq=")[2])
            counts[seq] += bucket["doc_count"]
        after = response["aggregations"]["seq"].get("after_key")
        if not buckets or after is None:
            return counts


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", every: float = 0.2,
             ignore: tuple[type[BaseException], ...] = ()):
    """Poll until ``predicate()`` is truthy; its value, or AssertionError naming ``what`` after
    ``timeout``. Exceptions of the ``ignore`` types (a server still starting) count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = predicate()
        except ignore:
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f} s (last: {last})")
        time.sleep(every)
