"""The node under the tests is a real Elasticsearch, and `regwatch setup` is idempotent."""

from __future__ import annotations

import subprocess
import sys

from elasticsearch import Elasticsearch

from contract import streams


def test_node_is_real_elasticsearch(es: Elasticsearch) -> None:
    nodes = es.nodes.info()["nodes"]
    (node,) = nodes.values()
    major = int(node["version"].split(".")[0])
    assert major >= 8
    assert es.cluster.health(wait_for_status="yellow", timeout="30s")["status"] in ("yellow", "green")


def test_data_stream_round_trip(es: Elasticsearch, namespace: str) -> None:
    stream = streams.data_stream_name("access", namespace)
    doc = {"@timestamp": "2026-11-24T23:55:40Z", "event": {"action": "health-check"}, "url": {"path": "/health"}}
    created = es.create(index=stream, id="round-trip-1", document=doc, refresh=True)
    assert created["result"] == "created"
    assert created["_index"].startswith(f".ds-{stream}-")
    resolved = es.indices.resolve_index(name=stream)
    assert [ds["name"] for ds in resolved["data_streams"]] == [stream]
    hits = es.search(index=stream, query={"term": {"url.path": "/health"}})["hits"]["hits"]
    assert [hit["_source"]["event"]["action"] for hit in hits] == ["health-check"]
    # The mapping comes from our template, not from dynamic guessing.
    mapping = es.indices.get_mapping(index=stream)[created["_index"]]["mappings"]
    assert mapping["properties"]["url"]["properties"]["path"]["type"] == "keyword"
    assert mapping["dynamic"] == "false"


def _all_templates(es: Elasticsearch) -> dict:
    index = {
        t["name"]: t["index_template"]
        for t in es.indices.get_index_template(name="*-modelregistry.*")["index_templates"]
    }
    component = {
        t["name"]: t["component_template"]
        for t in es.cluster.get_component_template(name="modelregistry@*")["component_templates"]
    }
    return {"index": index, "component": component}


def test_setup_twice_leaves_identical_templates(es: Elasticsearch, es_url: str) -> None:
    env = {"ES_URL": es_url, "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-m", "regwatch.cli", "setup"], env=env, check=True, capture_output=True)
        snapshot = _all_templates(es)
        if _ == 0:
            first = snapshot
    assert snapshot == first
    assert set(snapshot["index"]) == {
        f"logs-modelregistry.{k}" for k in streams.LOG_KINDS
    } | {"metrics-modelregistry.availability"}
    assert snapshot["index"]["logs-modelregistry.error"]["template"]["lifecycle"]["data_retention"] == "90d"


def test_setup_on_one_node_chooses_no_replicas_says_so_and_fixes_existing_indices(es: Elasticsearch, es_url: str,
                                                                                   namespace: str) -> None:
    """One data node: a replica could never be assigned (the cluster would stay yellow). setup says
    what it chose, writes it in the template and sets it on backing indices made before."""
    es.indices.put_settings(index="*", settings={"index.number_of_replicas": 0})  # nothing else yellow
    es.index(index=f"logs-modelregistry.access-{namespace}", document={"@timestamp": "2026-11-25T00:00:00Z"},
             refresh=True)
    es.indices.put_settings(index=f"logs-modelregistry.access-{namespace}", settings={"index.number_of_replicas": 1})
    assert es.cluster.health(index=f"logs-modelregistry.access-{namespace}")["status"] == "yellow"
    env = {"ES_URL": es_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "setup", "--namespace", namespace], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 data node(s): 1 primary shard(s) and 0 replica(s) per backing index (one data node)" in result.stderr
    settings = _all_templates(es)["component"]["modelregistry@settings"]["template"]["settings"]["index"]
    assert (settings["number_of_replicas"], settings["number_of_shards"]) == ("0", "1")
    assert es.cluster.health(index=f"logs-modelregistry.access-{namespace}", wait_for_status="green",
                             timeout="30s")["status"] == "green"
    assert es.indices.exists(index=f"regwatch-shipper-state-{namespace}")
