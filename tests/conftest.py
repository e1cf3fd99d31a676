"""Test harness: one real Elasticsearch node per test run, a fresh namespace per test.

The node comes, in order, from ES_URL, a Docker engine (testcontainers), or the local zip that
``regwatch es up`` provisions. It is started once and stopped at the end if this run started it.
Tests that use the ``es`` fixture are marked ``elasticsearch`` automatically; pure unit tests run
without a node. Provisioning failures fail the run: nothing is skipped in silence.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline import templates
from regwatch import localnode
from regwatch.logging import configure

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
    node = localnode.up()
    try:
        yield node.url
    finally:
        if node.started:
            localnode.down()


@pytest.fixture(scope="session")
def es(es_url: str) -> Elasticsearch:
    client = Elasticsearch(es_url, request_timeout=60)
    templates.install(client)
    return client


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: its data streams are seen by no other test."""
    return "t" + uuid.uuid4().hex[:12]
