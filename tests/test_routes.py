"""The MLflow route table covers the REST API 2.0 model registry and the artifact proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parsers.routes import RouteTableError, builtin, load_table

# Every model-registry endpoint of MLflow's REST API 2.0 (mlflow/protos/model_registry.proto),
# with the kind the issue assigns it.
MLFLOW_REGISTRY_API = [
    ("POST", "registered-models/create", "registration"),
    ("POST", "registered-models/rename", "registration"),
    ("PATCH", "registered-models/update", "registration"),
    ("DELETE", "registered-models/delete", "registration"),
    ("POST", "registered-models/set-tag", "registration"),
    ("DELETE", "registered-models/delete-tag", "registration"),
    ("GET", "registered-models/get", "retrieval"),
    ("GET", "registered-models/search", "retrieval"),
    ("POST", "registered-models/get-latest-versions", "retrieval"),
    ("GET", "registered-models/get-latest-versions", "retrieval"),
    ("GET", "registered-models/alias", "retrieval"),
    ("POST", "registered-models/alias", "version"),
    ("DELETE", "registered-models/alias", "version"),
    ("POST", "model-versions/create", "version"),
    ("PATCH", "model-versions/update", "version"),
    ("DELETE", "model-versions/delete", "version"),
    ("POST", "model-versions/transition-stage", "version"),
    ("POST", "model-versions/set-tag", "version"),
    ("DELETE", "model-versions/delete-tag", "version"),
    ("GET", "model-versions/get", "retrieval"),
    ("GET", "model-versions/search", "retrieval"),
    ("GET", "model-versions/get-download-uri", "retrieval"),
]


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/"])
@pytest.mark.parametrize("method,path,kind", MLFLOW_REGISTRY_API)
def test_every_registry_endpoint_has_its_kind(prefix: str, method: str, path: str, kind: str) -> None:
    route, _ = builtin("mlflow").http(method, prefix + path)
    assert route.kind == kind
    assert route.action != "http-request"


def test_actions_are_unique_per_endpoint() -> None:
    router = builtin("mlflow")
    actions = {router.http(m, "/api/2.0/mlflow/" + p)[0].action for m, p, _ in MLFLOW_REGISTRY_API}
    assert len(actions) == len(MLFLOW_REGISTRY_API) - 1  # get-latest-versions: GET and POST


def test_artifact_proxy_and_everything_else() -> None:
    router = builtin("mlflow")
    route, artifact = router.http("GET", "/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/MLmodel")
    assert (route.kind, route.action, artifact) == ("retrieval", "artifact-download", "1/models/m-1/artifacts/MLmodel")
    assert router.http("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/x")[0].kind == "access"
    for method, path in [("POST", "/api/2.0/mlflow/runs/create"), ("GET", "/api/2.0/mlflow/experiments/get"),
                         ("GET", "/static-files/app.js"), ("GET", "/health"),
                         ("POST", "/api/2.0/mlflow/logged-models")]:
        assert router.http(method, path)[0].kind == "access"


def test_route_table_is_data_a_user_can_replace(tmp_path: Path) -> None:
    table = tmp_path / "myregistry.yaml"
    table.write_text(
        "platform: myreg\n"
        "http:\n"
        "  api_prefixes: [/v1/]\n"
        "  params: {model: name}\n"
        "  routes:\n"
        "    - {method: GET, path: models/fetch, kind: retrieval, action: model-fetch}\n"
    )
    line = '127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /v1/models/fetch?model=abc HTTP/1.1" 200 5 "-" "c"\n'
    result = subprocess.run(
        [sys.executable, "-m", "regwatch.cli", "parse", "--format", "nginx", "--routes", str(table), "-"],
        input=line.encode(), capture_output=True, check=True)
    doc = json.loads(result.stdout)
    assert doc["event"]["action"] == "model-fetch"
    assert doc["modelregistry"]["platform"] == "myreg"
    assert doc["modelregistry"]["model"] == {"name": "abc"}
    assert b"lines=1 retrieval=1" in result.stderr


def test_bad_route_table_names_the_key(tmp_path: Path) -> None:
    table = tmp_path / "bad.yaml"
    table.write_text("platform: x\nhttp:\n  routes:\n    - {method: GET, path: a, kind: downloads, action: a}\n")
    with pytest.raises(RouteTableError, match=r"http\.routes\.0\.kind"):
        load_table(table)
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "nginx", "--routes", str(table), "-"],
                            input=b"", capture_output=True)
    assert result.returncode == 2


def test_parse_cli_summary_and_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /health HTTP/1.1" 200 2 "-" "c"\n\xff garbage\n')
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "nginx", str(log)],
                            capture_output=True, check=True)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["data_stream"]["dataset"] for d in docs] == ["modelregistry.access", "modelregistry.deadletter"]
    assert b"lines=2 access=1 deadletter=1" in result.stderr
    unknown = subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "apache", str(log)],
                             capture_output=True)
    assert unknown.returncode == 2
