"""The capacity bench's cluster: three nodes of the local distribution on free ports
(``regwatch es up --nodes 3``), and the pause in indexing when one of them is lost.

The bench's own. tests/test_cluster.py asserts the same scenario with its own helpers: a test
asserts, a benchmark times, and neither imports the other.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import ApiError, Elasticsearch, TransportError
from workload import ship_config, write_log

from regwatch import localnode
from regwatch.localnode.process import local_up

NODES = 3
SHIPPERS = 3


@dataclass
class Cluster:
    base: int
    urls: list[str]
    client: Elasticsearch

    def node(self, role: str) -> int:
        """The index of the elected master (``master``) or of a node that is not it (``data``)."""
        rows = self.client.cat.nodes(format="json", h="name,master")
        return next(int(row["name"].rsplit("-", 1)[1]) for row in rows if (row["master"] == "*") == (role == "master"))

    def bring_back(self) -> None:
        """``regwatch es up --nodes 3`` again starts the lost node; then wait for green."""
        local_up(None, nodes=NODES, base=self.base)
        self.client.options(request_timeout=130).cluster.health(wait_for_status="green", timeout="120s")


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_cluster(lowest: int = 19400) -> Cluster:
    """A fresh cluster on the first base port from ``lowest`` whose HTTP (base + i) and transport
    (base + 100 + i) ports are all free."""
    base = next(b for b in range(lowest, lowest + 500, 10)
                if all(_closed(b + offset + i) for offset in (0, 100) for i in range(NODES)))
    local_up(None, fresh=True, nodes=NODES, base=base)  # the local distribution, even where ES_URL is set
    urls = [f"http://127.0.0.1:{base + i}" for i in range(NODES)]
    return Cluster(base, urls, Elasticsearch(urls, request_timeout=30, retry_on_timeout=True, max_retries=5))


def stop_cluster(cluster: Cluster) -> None:
    localnode.down(base=cluster.base)


def _visible(client: Elasticsearch, pattern: str) -> int | None:
    """Events searchable now (after a refresh); None while the cluster cannot say."""
    try:
        client.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
        return int(client.count(index=pattern, allow_no_indices=True, ignore_unavailable=True)["count"])
    except (ApiError, TransportError):
        return None


def _distinct_lines(client: Elasticsearch, pattern: str) -> int:
    """How many different lines were indexed (each has its own ``seq=`` in url.query): exact, paged."""
    distinct, page = 0, {"size": 10000, "sources": [{"query": {"terms": {"field": "url.query"}}}]}
    while True:
        agg = client.search(index=pattern, size=0, aggs={"lines": {"composite": page}})["aggregations"]["lines"]
        distinct += len(agg["buckets"])
        if not agg["buckets"] or "after_key" not in agg:
            return distinct
        page = {**page, "after": agg["after_key"]}


def indexing_pause(cluster: Cluster, workdir: Path, namespace: str, victim: str, lines: int = 200_000,
                   kill_at: float = 0.25, timeout_s: float = 600) -> float:
    """Seconds of the longest pause in indexing after a node is lost.

    Three shippers (three files, three host names, each listing the nodes from another one) ship
    ``lines`` between them; once ``kill_at`` of them are searchable, the ``victim`` node (``data``:
    one that is not the master; ``master``: the elected one) gets SIGKILL. The count is sampled
    every 0.25 s after a refresh; the pause is the longest time after the kill in which it did not
    grow. Every line indexed exactly once (as many documents as distinct lines as lines written),
    or this raises.
    """
    share = -(-lines // SHIPPERS)
    configs = []
    for i in range(SHIPPERS):
        log = workdir / f"registry-{i}.log"
        write_log(log, min(share, lines - i * share), i * share)
        configs.append(ship_config(workdir / f"shipper-{i}", cluster.urls, namespace, log, f"registry-{i}", i))
    pattern = f"logs-modelregistry.*-{namespace}"
    shippers = [subprocess.Popen([sys.executable, "-m", "regwatch.cli", "ship", "--once", "-c", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for config in configs]
    killed_at = grew_at = 0.0
    seen, pause = -1, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < lines:
            if time.monotonic() > deadline or any(shipper.poll() for shipper in shippers):
                raise AssertionError(f"{seen} of {lines} lines searchable; shippers {[s.poll() for s in shippers]}")
            count, now = _visible(cluster.client, pattern), time.monotonic()
            if count is not None and count > seen:
                pause = max(pause, now - grew_at) if killed_at else 0.0
                grew_at, seen = now, count
            if not killed_at and seen >= lines * kill_at:
                localnode.stop_node(cluster.node(victim), signal.SIGKILL, base=cluster.base)
                killed_at = grew_at = time.monotonic()
            time.sleep(0.25)
        codes = [shipper.wait(timeout=60) for shipper in shippers]
    finally:
        for shipper in shippers:
            if shipper.poll() is None:
                shipper.kill()
    documents, distinct = cluster.client.count(index=pattern)["count"], _distinct_lines(cluster.client, pattern)
    if codes != [0] * SHIPPERS or not documents == distinct == lines:
        raise AssertionError(f"shippers exited {codes}; {documents} documents of {distinct} distinct lines, "
                             f"{lines} written")
    return pause
