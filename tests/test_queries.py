"""Every query of docs/queries.md, executed on the real node over the demo data, answer checked.

The demo data is the one the Kibana tests ship (fixture ``demo_namespace``); its answers are
recounted here from the sample files with the parsers, independently of Elasticsearch.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline.datastreams import create_empty
from support.parsing import SAMPLES, parse_file

DOC = Path(__file__).parent.parent / "docs" / "queries.md"
# The samples were recorded on 2026-11-24/25: the queries' "now" is pinned to that day.
NOW = "2026-11-25T23:59:59Z||"


def queries() -> dict[str, tuple[str, dict]]:
    found = {}
    pattern = re.compile(r"<!-- query:(\S+) index:(\S+) -->\s*```json\n(.*?)```", re.S)
    for name, index, body in pattern.findall(DOC.read_text()):
        found[name] = (index, json.loads(body.replace('"now', f'"{NOW}')))
    return found


def run(es: Elasticsearch, namespace: str, name: str, body_override: dict | None = None) -> dict:
    index, body = queries()[name]
    return es.search(index=index.replace("-default", f"-{namespace}"), **(body_override or body))


def sample_docs() -> list[dict]:
    docs = parse_file("nginx", SAMPLES / "mlflow-nginx" / "nginx_access.log")
    docs += parse_file("nginx-json", SAMPLES / "mlflow-nginx-json" / "nginx_access.json")
    docs += parse_file("audit", SAMPLES / "audit" / "canonical.jsonl")
    docs += parse_file("audit", SAMPLES / "audit" / "archive.jsonl")
    docs += parse_file("databricks-audit", SAMPLES / "audit" / "databricks.jsonl")
    docs += parse_file("cloudtrail", SAMPLES / "audit" / "cloudtrail.jsonl")
    return docs


def test_the_document_has_every_question() -> None:
    assert {"top-downloads", "stage-alias-changes", "endpoint-health", "registrations", "registrations-per-minute",
            "archived-versions", "archived-loaders", "alias-at", "alias-next", "downloads-per-version-per-day",
            "alias-changes", "still-pulled", "holders-downloaded"} <= set(queries())


@pytest.mark.parametrize("name", sorted(queries()))
def test_every_query_runs_on_the_real_node(es: Elasticsearch, demo_namespace: str, name: str) -> None:
    """Each query as the document gives it: accepted by the node, every shard answering. (The
    inventory's questions are answered over a real registry's documents in test_history and
    test_usage; the demo data has no inventory, so their answers here are empty.)"""
    create_empty(es, demo_namespace)  # as `regwatch setup` leaves them: the inventory's streams there, empty
    answer = run(es, demo_namespace, name)
    assert not answer["timed_out"] and answer["_shards"]["failed"] == 0


def test_top_downloads(es: Elasticsearch, demo_namespace: str) -> None:
    buckets = run(es, demo_namespace, "top-downloads")["aggregations"]["models"]["buckets"]
    expected = Counter(d["modelregistry"]["model"]["name"] for d in sample_docs()
                       if d["event"]["action"] in ("model-version-get-download-uri", "artifact-download")
                       and d["event"]["outcome"] == "success" and d["modelregistry"].get("model", {}).get("name"))
    assert {b["key"]: b["doc_count"] for b in buckets} == dict(expected.most_common(10))
    assert all(b["clients"]["buckets"] for b in buckets)


def test_stage_and_alias_changes_today(es: Elasticsearch, demo_namespace: str) -> None:
    hits = run(es, demo_namespace, "stage-alias-changes")["hits"]["hits"]
    expected = [d for d in sample_docs() if d["event"]["action"] in (
        "model-version-transition-stage", "registered-model-alias-set", "registered-model-alias-delete")
        and d["data_stream"]["dataset"] == "modelregistry.version" and d["@timestamp"] >= "2026-11-25"]
    assert len(hits) == len(expected) > 0
    stages = {(h["_source"]["modelregistry"]["model"].get("name"), h["_source"]["modelregistry"]["model"].get("stage"))
              for h in hits if h["_source"]["event"]["action"] == "model-version-transition-stage"}
    assert ("fraud-detector", "Production") in stages and ("fraud-detector", "Archived") in stages


def test_endpoint_error_rate_and_p95(es: Elasticsearch, demo_namespace: str) -> None:
    _, body = queries()["endpoint-health"]
    body = json.loads(json.dumps(body).replace("||-1h", "||-2d"))  # the samples span more than an hour
    buckets = run(es, demo_namespace, "endpoint-health", body)["aggregations"]["endpoints"]["buckets"]
    by_path = {b["key"]: b for b in buckets}
    create = by_path["/api/2.0/mlflow/registered-models/create"]
    docs = [d for d in sample_docs() if d.get("url", {}).get("path") == "/api/2.0/mlflow/registered-models/create"]
    assert create["doc_count"] == len(docs)
    # what the error-rate rule counts: 5xx, 401, 403, 429, not the client's 400 RESOURCE_ALREADY_EXISTS
    statuses = [d["http"]["response"]["status_code"] for d in docs if d["event"]["outcome"] == "failure"]
    counted = [s for s in statuses if s >= 500 or s in (401, 403, 429)]
    assert create["errors"]["doc_count"] == len(counted)
    assert sum(d["event"]["outcome"] == "failure" for d in docs) > len(counted)
    assert create["latency"]["values"]["95.0"] > 0


def test_who_registered_or_deleted(es: Elasticsearch, demo_namespace: str) -> None:
    hits = run(es, demo_namespace, "registrations")["hits"]["hits"]
    expected = [d for d in sample_docs()
                if d["event"]["action"] in ("registered-model-create", "registered-model-delete")
                and d["event"]["outcome"] == "success"]
    assert len(hits) == len(expected)
    named = {h["_source"]["modelregistry"]["model"]["name"] for h in hits if "model" in h["_source"]["modelregistry"]}
    assert {"fraud-detector"} <= named
    assert any(h["_source"].get("user", {}).get("email") == "alice@example.com" for h in hits)


def test_registrations_per_minute_count_each_once(es: Elasticsearch, demo_namespace: str) -> None:
    """Per minute, the larger of the audit trail's and the access log's registrations: recounted
    from the sample files (both sources are among them)."""
    _, body = queries()["registrations-per-minute"]
    body = json.loads(json.dumps(body).replace("||-1d/d", "||-30d/d"))  # the samples span more than a day
    minutes = run(es, demo_namespace, "registrations-per-minute", body)["aggregations"]["minutes"]["buckets"]
    per_minute = {m["key_as_string"][:16]: max(b["doc_count"] for b in m["sources"]["buckets"].values())
                  for m in minutes}
    sources: dict[str, Counter[str]] = {}
    for d in sample_docs():
        if d["event"]["action"] == "registered-model-create" and d["event"]["outcome"] == "success":
            source = "audit_trail" if d["modelregistry"]["format"] == "audit" else "access_log"
            sources.setdefault(d["@timestamp"][:16], Counter())[source] += 1
    expected = {minute: max(counts.values()) for minute, counts in sources.items()}
    assert {k: v for k, v in per_minute.items() if v} == expected and sum(expected.values()) == 12


def test_clients_still_loading_an_archived_version(es: Elasticsearch, demo_namespace: str) -> None:
    models = run(es, demo_namespace, "archived-versions")["aggregations"]["models"]["buckets"]
    archived = [(m["key"], v["key"]) for m in models for v in m["versions"]["buckets"]
                if v["last"]["hits"]["hits"][0]["_source"]["modelregistry"]["model"].get("stage") == "Archived"]
    assert archived == [("fraud-detector", "1")]
    clients = run(es, demo_namespace, "archived-loaders")["aggregations"]["clients"]["buckets"]
    expected = Counter(d["user_agent"]["original"] for d in sample_docs()
                       if d["data_stream"]["dataset"] == "modelregistry.retrieval"
                       and d["modelregistry"].get("model", {}).get("name") == "fraud-detector"
                       and d["modelregistry"]["model"].get("version") == "1")
    assert {b["key"]: b["doc_count"] for b in clients} == dict(expected)
    assert clients and clients[0]["from"]["buckets"][0]["key"] == "127.0.0.1"
