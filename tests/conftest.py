"""Test harness: one real Elasticsearch node per test run, a fresh namespace per test.

The node comes, in order, from ES_URL, a Docker engine (testcontainers), or the local zip that
``regwatch es up`` provisions. It is started once and stopped at the end if this run started it.
Tests that use the ``es`` fixture are marked ``elasticsearch`` automatically; pure unit tests run
without a node. Provisioning failures fail the run: nothing is skipped in silence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from pipeline import templates
from regwatch import localnode
from regwatch.config import load_config
from regwatch.logging import configure
from regwatch.ship import build_shipper
from support.rules import webhook  # noqa: F401 - a fixture the rule tests share
from support.shipping import write_config

SAMPLES = Path(__file__).parent / "samples"

configure("WARNING", json=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "es" in getattr(item, "fixturenames", ()) or "es_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.elasticsearch)


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    if url := os.environ.get("ES_URL"):
        yield url
        return
    if localnode.docker_answers():
        from testcontainers.elasticsearch import ElasticSearchContainer

        with ElasticSearchContainer(localnode.DOCKER_IMAGE, mem_limit="2g") as container:
            yield container.get_url()
        return
    node = localnode.up(fresh=True)
    try:
        yield node.url
    finally:
        if node.started:
            localnode.down()


@pytest.fixture(scope="session")
def es(es_url: str) -> Elasticsearch:
    client = Elasticsearch(es_url, request_timeout=60)
    templates.install(client, replicas=0)  # one node: replicas would only sit unassigned
    return client


@pytest.fixture(scope="session")
def demo_namespace(es: Elasticsearch, es_url: str, tmp_path_factory) -> str:
    """The shared MLflow samples, audit samples and some garbage, shipped into one namespace."""
    namespace = "kibana" + os.urandom(4).hex()
    tmp = tmp_path_factory.mktemp("kibana-demo")
    config = write_config(tmp / "c.yaml", es_url, namespace, [str(SAMPLES / "mlflow-nginx" / "nginx_access.log")])
    raw = yaml.safe_load(config.read_text())
    raw["inputs"] += [
        {"paths": [str(SAMPLES / "mlflow-nginx-json" / "nginx_access.json")], "format": "nginx-json"},
        {"paths": [str(SAMPLES / "audit" / "canonical.jsonl"), str(SAMPLES / "audit" / "archive.jsonl")],
         "format": "audit"},
        {"paths": [str(SAMPLES / "audit" / "databricks.jsonl")], "format": "databricks-audit"},
        {"paths": [str(SAMPLES / "audit" / "cloudtrail.jsonl")], "format": "cloudtrail"},
    ]
    garbage = tmp / "garbage.log"
    garbage.write_bytes(b"not a log line\n\xff\xfe\n")
    raw["inputs"].append({"paths": [str(garbage)], "format": "nginx"})
    config.write_text(json.dumps(raw))
    templates.install(es, replicas=0)
    summary = build_shipper(load_config(config)).run(once=True)
    assert summary.events > 1000 and sum(summary.deadletters.values()) == 2
    es.indices.refresh(index=f"*-modelregistry.*-{namespace}")
    return namespace


class Daemons:
    """Processes a test starts; every one still running is stopped when the test ends, pass or fail."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        process = subprocess.Popen(argv, **kwargs)
        self.started.append(process)
        return process

    def stop_all(self, grace_s: float = 10.0) -> None:
        running = [p for p in self.started if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    started = Daemons()
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: its data streams are seen by no other test."""
    return "t" + uuid.uuid4().hex[:12]
