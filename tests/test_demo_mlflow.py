"""End to end with a real MLflow server and the real MLflow client: `regwatch demo`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

pytestmark = pytest.mark.slow


def test_demo_ships_what_the_mlflow_client_did(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "regwatch.cli", "demo", "--workdir", str(workdir), "--namespace", namespace, "--loads", "2"],
        env={"ES_URL": es_url, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    truth = [json.loads(line) for line in (workdir / "truth.jsonl").read_text().splitlines()]
    ops = Counter((t["op"], t["ok"]) for t in truth)
    lines = (workdir / "mlflow_access.log").read_bytes().count(b"\n")
    assert f"lines_read={lines} events={lines} deadletters=0" in result.stdout

    pattern = f"logs-modelregistry.*-{namespace}"
    es.indices.refresh(index=pattern)
    buckets = es.search(index=pattern, size=0, aggs={"a": {"terms": {"field": "event.action", "size": 100}, "aggs": {
        "o": {"terms": {"field": "event.outcome"}}}}})["aggregations"]["a"]["buckets"]
    actions = {(b["key"], o["key"]): o["doc_count"] for b in buckets for o in b["o"]["buckets"]}
    assert es.count(index=pattern)["count"] == lines
    assert actions[("model-version-create", "success")] == ops[("register_model", True)]
    assert actions[("registered-model-alias-set", "success")] == ops[("set_alias", True)]
    # Every load resolves a download URI too.
    assert actions[("model-version-get-download-uri", "success")] == ops[("get_download_uri", True)] + ops[("load_model", True)]
    assert actions[("registered-model-get", "failure")] == ops[("get_model", False)] == 1
    assert actions[("model-version-get", "failure")] == ops[("get_version", False)] == 1
    assert actions[("model-version-transition-stage", "success")] == 1
    assert actions[("registered-model-rename", "success")] == 1
    assert actions[("model-version-delete", "success")] == 1
    assert not [a for a, _ in actions if any(c.isdigit() for c in a)], "actions must not carry ids"
    loads = es.search(index=f"logs-modelregistry.retrieval-{namespace}", size=0,
                      query={"term": {"event.action": "model-version-get-download-uri"}},
                      aggs={"m": {"terms": {"field": "modelregistry.model.name"}}})["aggregations"]["m"]["buckets"]
    assert {b["key"] for b in loads} == {"fraud-detector", "churn-predictor", "recsys-ranker"}
