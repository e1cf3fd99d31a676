"""regwatch on a real three-node cluster (``regwatch es up --nodes 3``), with nodes lost.

Three shippers on three host names ship 60,000 lines, still being written, while a node that is
not the master is killed (kill -9) once a quarter of them are indexed (half of them are written
after the kill), and in another run the elected master: every line is one event, none twice.
Two rule runners pointed at different nodes send each notification and each resolution once
while the node holding the alert state dies; the probe writes every check once while the node
it names dies. Each lost node comes back and its replicas recover.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elasticsearch import ApiError, TransportError

from pipeline import templates
from pipeline.probe.runner import Probe
from pipeline.probe.settings import ProbeSettings
from regwatch import localnode
from regwatch.config import Config, ElasticsearchConfig
from regwatch.esclient import client_from_config
from rules.model import load_rules
from rules.notify import WebhookTarget
from rules.runner import Runner
from support.cluster import HOSTS, NODES, Cluster, ship_through_node_loss, start_cluster, stop_cluster
from support.rules import THRESHOLD

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow, pytest.mark.cluster]

# The writers write half their lines (paced over WRITE_S in all) and hold the rest until the
# kill, which comes once a quarter is indexed: however fast or busy the machine, lines are still
# being written when the node dies and half of them or more are shipped after it.
TOTAL = 60_000
WRITE_S = 15.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        health = cluster.client.cluster.health()
        assert health["number_of_nodes"] == NODES and health["status"] == "green"
        templates.install(cluster.client, replicas=templates.replicas_for(templates.data_nodes(cluster.client)))
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(autouse=True)
def whole_cluster(cluster: Cluster) -> Iterator[None]:
    """Every test ends with all three nodes running: one that fails after killing a node, before
    it brings it back, must not leave the next test a cluster of two (whose next loss is quorum)."""
    yield
    if cluster.nodes_answering() < NODES:
        cluster.bring_back()


def test_es_up_status_and_down_manage_exactly_the_clusters_nodes(cluster: Cluster, monkeypatch) -> None:
    monkeypatch.delenv("ES_URL", raising=False)  # `es status` would describe that node instead
    status = localnode.status(base=cluster.base)
    assert status["health"]["number_of_nodes"] == NODES
    assert sorted(n["name"] for n in status["nodes"]) == [f"regwatch-local-{i}" for i in range(NODES)]
    assert all(n["running"] and n["roles"] and "m" in n["roles"] and "d" in n["roles"] for n in status["nodes"])
    assert sum(n["master"] for n in status["nodes"]) == 1
    assert templates.replicas_for(templates.data_nodes(cluster.client)) == 1


def test_setup_on_three_nodes_chooses_one_replica_and_gives_existing_indices_theirs(cluster: Cluster,
                                                                                    tmp_path: Path) -> None:
    namespace = f"setup{int(time.time())}"
    stream = f"logs-modelregistry.access-{namespace}"
    cluster.client.index(index=stream, document={"@timestamp": "2026-11-25T00:00:00Z"}, refresh=True)
    cluster.client.indices.put_settings(index=stream, settings={"index.number_of_replicas": 0})  # made before
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": cluster.urls}, "namespace": namespace}))
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "setup", "-c", str(config)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 data node(s): 1 primary shard(s) and 1 replica(s) per backing index (3 data nodes)" in result.stderr
    backing = cluster.client.indices.get_settings(index=stream, name="index.number_of_replicas")
    assert [s["settings"]["index"]["number_of_replicas"] for s in backing.values()] == ["1"]
    health = cluster.client.cluster.health(index=stream, wait_for_status="green", timeout="60s")
    assert health["status"] == "green" and health["active_shards"] == 2


@pytest.mark.parametrize("victim", ["data", "master"])
def test_three_shippers_ship_every_line_exactly_once_while_a_node_is_killed(
        cluster: Cluster, tmp_path: Path, victim: str) -> None:
    namespace = f"loss{victim}{int(time.time())}"
    run = ship_through_node_loss(cluster, tmp_path, namespace, victim, total=TOTAL, write_s=WRITE_S, hold_at=0.5)
    # The kill landed mid-shipping: half the lines or more were indexed after it, and the writers
    # were still writing.
    assert TOTAL // 4 <= run.indexed_at_kill <= TOTAL // 2, (run.indexed_at_kill, run.written_at_kill)
    assert run.written_at_kill < TOTAL, (run.indexed_at_kill, run.written_at_kill)
    assert run.exit_codes == [0, 0, 0]
    missing = sorted(set(range(TOTAL)) - set(run.counts))
    twice = sorted(seq for seq, n in run.counts.items() if n > 1)
    assert (missing, twice) == ([], []), (len(missing), missing[:5], len(twice), twice[:5], run.diagnose(missing))
    assert run.per_host == {host: len(range(i, TOTAL, len(HOSTS))) for i, host in enumerate(HOSTS)}
    health = cluster.client.cluster.health(wait_for_status="yellow", timeout="60s")
    assert health["status"] in ("yellow", "green") and health["number_of_nodes"] == NODES - 1
    # Every shipper's heartbeat, read from the cluster: three hosts, nothing left behind, stopped.
    beats = {doc["host"]["name"]: doc for doc in run.heartbeats}
    assert set(beats) == set(HOSTS)
    assert all(doc["condition"] == "stopped" and doc["behind_bytes"] == 0 for doc in beats.values())
    # A bulk request cut by the loss is sent again: its lines indexed the first time answer 409
    # and are counted as duplicates skipped, not as events indexed twice.
    assert sum(doc["events"] + doc["duplicates_skipped"] for doc in beats.values()) == TOTAL
    # The node comes back: its replicas recover (green), and nothing is indexed twice.
    cluster.bring_back()
    shards = cluster.client.cat.shards(index=f"*-modelregistry.*-{namespace}", format="json", h="state,prirep")
    assert shards and all(row["state"] == "STARTED" for row in shards)
    assert sum(row["prirep"] == "r" for row in shards) == sum(row["prirep"] == "p" for row in shards)
    again = cluster.client.count(index=f"logs-modelregistry.*-{namespace}")["count"]
    assert again == TOTAL
    print(f"victim={victim} node={run.victim} pause={run.pause_s:.1f}s rate={run.rate:.0f}/s")


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


RULES = THRESHOLD.replace("interval: 60s", "interval: 10s").replace("for: 120s", "for: 0s")


def test_two_runners_on_different_nodes_notify_and_resolve_once_while_a_node_dies(
        cluster: Cluster, tmp_path: Path, monkeypatch) -> None:
    namespace = f"runners{int(time.time())}"
    monkeypatch.setenv("REGWATCH_TEST_HOOK_SECRET", "s")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = {"hook": WebhookTarget(url=f"http://127.0.0.1:{server.server_address[1]}/",
                                  secret_env="REGWATCH_TEST_HOOK_SECRET")}
    (tmp_path / "rules.yaml").write_text(RULES)
    rules = load_rules(tmp_path)
    t0 = time.time() - 3600  # a synthetic clock an hour back: windows are closed, late data impossible
    cluster.client.bulk(refresh=True, operations=[op for _ in range(10) for op in (
        {"create": {"_index": f"logs-modelregistry.error-{namespace}"}},
        {"@timestamp": int((t0 + 30) * 1000), "event": {"ingested": int((t0 + 30) * 1000), "outcome": "failure"}})])
    # The first cycle makes the state index; the runner pointed at the node holding its primary
    # is the one whose node dies.
    probe = Runner(cluster.client, rules, namespace, {}, "probe")
    probe.store.ensure()
    cluster.settle(namespace)
    victim = cluster.node_of_primary(probe.store.index)
    other = (victim + 1) % NODES

    def runner(node: int, name: str) -> Runner:
        client = client_from_config(_config(cluster.urls[node]))
        return Runner(client, rules, namespace, hook, name)

    runners = [runner(victim, "on-victim"), runner(other, "on-other")]
    failures: list[str] = []
    steps = threading.Event()
    done = threading.Event()

    def loop(r: Runner) -> None:
        for k in range(120):
            if done.is_set():
                return
            try:
                r.cycle(now=t0 + 61 + 5 * k)
            except (ApiError, TransportError) as exc:
                failures.append(f"{r.runner_id}: {type(exc).__name__}")
            steps.set()
            time.sleep(0.5)

    threads = [threading.Thread(target=loop, args=(r,)) for r in runners]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while not Receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p["state"] for p in Receiver.received] == ["firing"]
        cluster.settle(namespace)  # the alert stream the firing made has its replica too
        cluster.kill(victim)
        deadline = time.monotonic() + 90
        while [p["state"] for p in Receiver.received] != ["firing", "resolved"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)  # more cycles of both: nothing sent again
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        server.shutdown()
    assert [p["state"] for p in Receiver.received] == ["firing", "resolved"], (Receiver.received, failures)
    assert len({p["key"] for p in Receiver.received}) == 2  # two notifications, not one sent twice
    cluster.bring_back()


def _config(url: str) -> Config:
    """A runner's configuration of the cluster: one node named, the others learned by sniffing."""
    return Config(elasticsearch=ElasticsearchConfig(hosts=[url], sniff=True, request_timeout_s=10))


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def test_the_probe_writes_every_check_once_while_the_node_it_names_dies(cluster: Cluster) -> None:
    """The probe knows one node (and sniffs the others); that node, holding the availability
    stream's primary, is killed mid-run: every check is one document, none lost, none twice."""
    namespace = f"probe{int(time.time())}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = ProbeSettings.model_validate({"metrics_port": None, "targets": [
        {"name": "reg", "url": f"http://127.0.0.1:{server.server_address[1]}/health"}]})
    checks = 0
    warm = Probe(settings, cluster.client, namespace, "probe-host")
    try:
        checks += len(warm.cycle().results)
        assert warm.writer.flush(30)
    finally:
        warm.writer.close()
    stream = f"metrics-modelregistry.availability-{namespace}"
    cluster.settle(namespace)
    victim = cluster.node_of_primary(stream)
    probe = Probe(settings, client_from_config(_config(cluster.urls[victim]), bulk=True), namespace, "probe-host")
    try:
        for k in range(40):
            checks += len(probe.cycle().results)
            if k == 10:
                cluster.kill(victim)
            time.sleep(0.2)
        assert probe.writer.flush(90), f"{len(probe.writer.buffer)} documents still buffered"
    finally:
        probe.writer.close()
        server.shutdown()
    cluster.client.indices.refresh(index=stream)
    ids = [hit["_id"] for hit in cluster.client.search(index=stream, size=1000, source=False)["hits"]["hits"]]
    assert len(ids) == checks == 41 and len(set(ids)) == checks
    cluster.bring_back()
