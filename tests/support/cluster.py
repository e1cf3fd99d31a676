"""A real three-node cluster of the local distribution, and what tests and benchmarks do to it:
ship from several hosts while a node is killed, measure the pause, bring the node back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import ApiError, Elasticsearch, TransportError

from regwatch import localnode
from regwatch.localnode.common import _port_in_use, cluster_health, cluster_nodes
from regwatch.localnode.process import local_up, start_time
from support.shipping import line, seq_counts, wait_for, write_config

REGWATCH = [sys.executable, "-m", "regwatch.cli"]
NODES = 3
HOSTS = ("registry-a", "registry-b", "registry-c")


@dataclass
class Cluster:
    base: int
    urls: list[str]
    client: Elasticsearch

    def node_index(self, role: str) -> int:
        """``master``: the elected master; ``data``: a node that is not the master."""
        nodes = cluster_nodes(self.urls[0]) or cluster_nodes(self.urls[1])
        for node in nodes:
            if node["master"] == (role == "master"):
                return int(str(node["name"]).rsplit("-", 1)[1])
        raise AssertionError(f"no {role} node among {nodes}")

    def node_of_primary(self, index: str) -> int:
        rows = self.client.cat.shards(index=index, format="json", h="prirep,node")
        return next(int(row["node"].rsplit("-", 1)[1]) for row in rows if row["prirep"] == "p")

    def kill(self, index: int) -> float:
        """kill -9 of one node's process group; the time it happened."""
        localnode.stop_node(index, signal.SIGKILL, base=self.base)
        return time.monotonic()

    def bring_back(self) -> None:
        """Start the lost node again (``regwatch es up --nodes 3``) and wait for green."""
        local_up(None, nodes=NODES, base=self.base)
        self.client.options(request_timeout=130).cluster.health(wait_for_status="green", timeout="120s")

    def nodes_answering(self) -> int:
        """How many nodes the cluster has, as any node that answers sees it (0: none answers)."""
        for url in self.urls:
            if (health := cluster_health(url)) is not None:
                return int(health.get("number_of_nodes", 0))
        return 0

    def settle(self, namespace: str, timeout_s: float = 120.0) -> dict:
        """Wait until every shard of the namespace's indices has all its copies started.

        A replica made moments ago is still copying its primary: kill the primary's node then and
        the only complete copy goes with it, and Elasticsearch holds every write to that shard
        until the node returns (seen on a loaded machine: a stream created five seconds before the
        kill, every bulk timing out for six minutes). That is the cluster's rule, not regwatch's
        behaviour under test, so a test kills a node only once its namespace is green."""
        health = self.client.options(request_timeout=timeout_s + 10, ignore_status=408).cluster.health(
            index=f"*{namespace}*", expand_wildcards="all", wait_for_status="green",
            wait_for_no_initializing_shards=True, wait_for_no_relocating_shards=True, timeout=f"{timeout_s:.0f}s")
        assert health["status"] == "green" and not health["timed_out"], health
        return dict(health)


def free_base(start: int = 19400) -> int:
    """A base port with its three HTTP and three transport ports free."""
    for base in range(start, start + 500, 10):
        ports = [base + i for i in range(NODES)] + [base + 100 + i for i in range(NODES)]
        if not any(_port_in_use(p) for p in ports):
            return base
    raise AssertionError("no free ports for a local cluster")


def start_cluster() -> Cluster:
    base = free_base()
    local_up(None, fresh=True, nodes=NODES, base=base)  # the local distribution, even where ES_URL is set
    urls = [f"http://127.0.0.1:{base + i}" for i in range(NODES)]
    return Cluster(base, urls, Elasticsearch(urls, request_timeout=30, retry_on_timeout=True, max_retries=5))


def stop_cluster(cluster: Cluster) -> None:
    """``regwatch es down``: every node of this cluster stopped, its ports closed."""
    from regwatch.localnode.process import recorded_members
    from regwatch.localnode.trust import read_state

    pids = [int(node["pid"]) for node in recorded_members(read_state(cluster.base))]
    localnode.down(base=cluster.base)
    alive = [pid for pid in pids if start_time(pid) is not None]  # None: gone, or a zombie
    ports = [p for i in range(NODES) for p in (cluster.base + i, cluster.base + 100 + i) if _port_in_use(p)]
    assert (alive, ports) == ([], []), f"left running: pids {alive}, ports {ports}"


def cluster_line(seq: int) -> bytes:
    """Lines of several kinds (retrievals, versions, errors), so shards of several data streams
    sit on every node."""
    if seq % 10 == 0:
        return line(seq, status=500)
    if seq % 10 == 1:
        return line(seq, path="/api/2.0/mlflow/model-versions/get")
    return line(seq)


@dataclass
class LossRun:
    """What one node-loss run measured."""

    total: int
    victim: int
    cluster: Cluster
    pattern: str
    killed_at: float = 0.0
    indexed_at_kill: int = 0  # events indexed when the node was killed
    written_at_kill: int = 0  # lines the writers had written by then
    done_at: float = 0.0
    started_at: float = 0.0
    samples: list[tuple[float, int | None]] = field(default_factory=list)
    per_host: Counter[str] = field(default_factory=Counter)
    counts: Counter[int] = field(default_factory=Counter)
    exit_codes: list[int] = field(default_factory=list)
    heartbeats: list[dict] = field(default_factory=list)

    @property
    def pause_s(self) -> float:
        """The longest time after the kill in which the number of indexed events did not grow."""
        longest, last_growth, last = 0.0, self.killed_at, -1
        for at, count in self.samples:
            if at < self.killed_at or at > self.done_at:
                continue
            if count is not None and count > last:
                longest = max(longest, at - last_growth)
                last_growth, last = at, count
        return longest

    def diagnose(self, missing: list[int]) -> dict:
        """Where a missing line is not (for an assertion message)."""
        if not missing:
            return {}
        query = {"term": {"url.query": cluster_line(missing[0]).split(b"?")[1].split(b" ")[0].decode()}}
        found = {}
        for url in self.cluster.urls:
            try:
                client = Elasticsearch(url)
                found[url] = (client.count(index=self.pattern, preference="_local", query=query)["count"],
                              client.count(index=self.pattern, preference="_local")["count"])
            except (ApiError, TransportError) as exc:
                found[url] = type(exc).__name__
        return {"count": self.cluster.client.count(index=self.pattern)["count"], "per_node": found,
                "shards": self.cluster.client.cat.shards(index=self.pattern, h="index,shard,prirep,state,docs,node")}

    @property
    def rate(self) -> float:
        return self.total / max(1e-9, self.done_at - self.started_at)


def ship_through_node_loss(cluster: Cluster, tmp: Path, namespace: str, victim: str | None,
                           total: int = 200_000, kill_at: float = 0.25, write_s: float = 20.0,
                           hold_at: float | None = None) -> LossRun:
    """Three shippers (three host names, three files) ship ``total`` lines between them while
    the ``victim`` node (``data``: not the master; ``master``: the elected one; None: none) is
    killed with SIGKILL once ``kill_at`` of the lines are indexed. ``hold_at``: the writers stop
    at that share of their lines until the kill, so that the rest is written, and shipped, after
    it however fast or slow the machine."""
    files = [tmp / f"{host}.log" for host in HOSTS]
    configs = []
    for i, (host, path) in enumerate(zip(HOSTS, files, strict=True)):
        path.write_bytes(b"")
        folder = tmp / host
        folder.mkdir()
        # Each shipper knows the cluster differently: one node and sniffing, or all three in
        # another order. None of them has a failover of its own: the client's node pool.
        hosts = [cluster.urls[i]] if i == 0 else [cluster.urls[(i + k) % NODES] for k in range(NODES)]
        configs.append(write_config(folder / "c.yaml", hosts[0], namespace, [str(path)], host_name=host,
                                    elasticsearch={"hosts": hosts, "sniff": i == 0, "request_timeout_s": 10},
                                    heartbeat_every_s=1.0))
    pattern = f"logs-modelregistry.*-{namespace}"
    run = LossRun(total=total, victim=-1, cluster=cluster, pattern=pattern)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    shippers = [subprocess.Popen([*REGWATCH, "ship", "-c", str(c), "--log-json"], stdout=subprocess.DEVNULL,
                                 stderr=(c.parent / "stderr.log").open("wb"), env=env) for c in configs]
    stop = threading.Event()

    def count() -> int | None:
        try:
            cluster.client.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
            return cluster.client.count(index=pattern, allow_no_indices=True, ignore_unavailable=True)["count"]
        except (ApiError, TransportError):
            return None

    def sample() -> None:
        while not stop.is_set():
            run.samples.append((time.monotonic(), count()))
            stop.wait(0.25)

    written = [0] * len(files)
    killed = threading.Event()

    def write(index: int) -> None:
        seqs = range(index, total, len(files))
        step = 1000
        with files[index].open("ab") as handle:
            for start in range(0, len(seqs), step):
                if hold_at is not None and start >= len(seqs) * hold_at:
                    killed.wait(timeout=180)
                chunk = seqs[start:start + step]
                handle.write(b"".join(cluster_line(s) for s in chunk))
                handle.flush()
                written[index] += len(chunk)
                time.sleep(write_s * step / len(seqs))

    writers = [threading.Thread(target=write, args=(i,)) for i in range(len(files))]
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        run.started_at = time.monotonic()
        for thread in [*writers, sampler]:
            thread.start()
        if victim is not None:
            run.indexed_at_kill = wait_for(lambda: (n := count() or 0) >= total * kill_at and n, timeout=120,
                                           every=0.1, what=f"{kill_at:.0%} indexed")
            cluster.settle(namespace)
            # what is indexed only grows: a count taken while a replica just started is still
            # being refreshed can read a few hundred less than the one before it (seen under load)
            run.indexed_at_kill = max(count() or 0, run.indexed_at_kill)
            run.victim = cluster.node_index(victim)
            run.written_at_kill = sum(written)
            run.killed_at = cluster.kill(run.victim)
        killed.set()
        for thread in writers:
            thread.join()
        wait_for(lambda: count() == total, timeout=300, every=0.5, what=f"{total} events indexed")
        run.done_at = time.monotonic()
    finally:
        stop.set()
        killed.set()
        for shipper in shippers:
            shipper.send_signal(signal.SIGTERM)
        run.exit_codes = [shipper.wait(timeout=60) for shipper in shippers]
    run.counts = seq_counts(cluster.client, namespace)
    aggs = cluster.client.search(index=pattern, size=0, aggs={"h": {"terms": {"field": "host.name", "size": 10}}})
    run.per_host = Counter({b["key"]: b["doc_count"] for b in aggs["aggregations"]["h"]["buckets"]})
    # From a shipper's configuration that lists every node (the first lists one, maybe the lost one).
    status = subprocess.run([*REGWATCH, "status", "--all", "--json", "-c", str(configs[1])], capture_output=True,
                            text=True, env=env, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    run.heartbeats = [json.loads(row) for row in status.stdout.splitlines() if row.strip()]
    return run
