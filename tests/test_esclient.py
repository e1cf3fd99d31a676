"""The client factory: a daemon started while the nodes it names are down keeps its client.

With ``sniff: true`` the official client learns the cluster's nodes when it is built and raises if
none answers, which killed a shipper started during an outage (seen under load in the cluster
test). Here the one node named is a port nobody listens on when the client is built; later a
forwarder to the real node opens there, and the same client answers and learns the node.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import structlog
from elasticsearch import Elasticsearch

from regwatch.config import Config, ElasticsearchConfig
from regwatch.esclient import client_from_config

pytestmark = pytest.mark.elasticsearch


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            end.close()


class Forwarder:
    """A TCP port that forwards every connection to ``target`` (host, port) once opened."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self.listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


@pytest.fixture
def closed_port_forwarder(es_url: str) -> Iterator[Forwarder]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = urlsplit(es_url)
    forwarder = Forwarder(port, (node.hostname or "127.0.0.1", node.port or 9200))
    try:
        yield forwarder
    finally:
        forwarder.close()


def test_a_client_built_while_its_node_is_down_waits_for_it_and_learns_the_cluster(
    es: Elasticsearch, es_url: str, closed_port_forwarder: Forwarder
) -> None:
    scheme = urlsplit(es_url).scheme
    config = Config(elasticsearch=ElasticsearchConfig(
        hosts=[f"{scheme}://127.0.0.1:{closed_port_forwarder.port}"], sniff=True, request_timeout_s=5))

    with structlog.testing.capture_logs() as logged:
        client = client_from_config(config, bulk=True)
    assert logged == [{
        "event": "elasticsearch_nodes_not_learned_at_start",
        "then": "looking again before requests",
        "hosts": [f"{scheme}://127.0.0.1:{closed_port_forwarder.port}"],
        "reason": "SniffingError",
        "log_level": "warning",
    }]

    closed_port_forwarder.open()
    assert client.cluster.health()["status"] in ("green", "yellow")
    published = {info["http"]["publish_address"].rpartition("/")[2]
                 for info in es.nodes.info(metric="http")["nodes"].values()}
    pooled = {f"{node.config.host}:{node.config.port}" for node in client.transport.node_pool.all()}
    assert published <= pooled


def test_a_client_whose_node_answers_learns_the_cluster_when_built(es: Elasticsearch, es_url: str) -> None:
    config = Config(elasticsearch=ElasticsearchConfig(hosts=[es_url], sniff=True, request_timeout_s=5))

    with structlog.testing.capture_logs() as logged:
        client = client_from_config(config)
    assert logged == []
    published = {info["http"]["publish_address"].rpartition("/")[2]
                 for info in es.nodes.info(metric="http")["nodes"].values()}
    pooled = {f"{node.config.host}:{node.config.port}" for node in client.transport.node_pool.all()}
    assert published <= pooled
