"""Access-log formats parse real MLflow traffic exactly, field by field."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from support.parsing import SAMPLES, kinds, parse_file, parse_lines

NGINX = SAMPLES / "mlflow-nginx" / "nginx_access.log"
GUNICORN = SAMPLES / "mlflow-nginx" / "gunicorn_access.log"
NGINX_JSON = SAMPLES / "mlflow-nginx-json" / "nginx_access.json"


def test_nginx_combined_with_timing_exact_document() -> None:
    line = (b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "POST /api/2.0/mlflow/registered-models/create '
            b'HTTP/1.1" 200 183 "-" "mlflow-python-client/3.17.2" rt=0.126 uct="0.001" urt="0.127"\n')
    (doc,) = parse_lines("nginx", [line])
    assert doc == {
        "@timestamp": "2026-11-24T23:55:40.000Z",
        "data_stream": {"type": "logs", "dataset": "modelregistry.registration", "namespace": "default"},
        "event": {"kind": "event", "category": ["api"], "type": ["creation"], "dataset": "modelregistry.registration",
                  "action": "registered-model-create", "outcome": "success", "duration": 126_000_000},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200, "body": {"bytes": 183}},
                 "version": "1.1"},
        "url": {"path": "/api/2.0/mlflow/registered-models/create"},
        "source": {"ip": "127.0.0.1"},
        "user_agent": {"original": "mlflow-python-client/3.17.2"},
        "modelregistry": {"operation": "registration", "platform": "mlflow", "format": "nginx"},
        "service": {"name": "mlflow"},
        "ecs": {"version": "9.4.0"},
        "message": "POST /api/2.0/mlflow/registered-models/create 200",
    }


def test_nginx_failed_retrieval_is_an_error_that_keeps_its_operation() -> None:
    line = (b'10.1.2.3 - alice [24/Nov/2026:23:56:17 +0100] "GET /api/2.0/mlflow/model-versions/get-download-uri'
            b'?name=fraud-detector&version=1 HTTP/1.1" 404 170 "https://ui/" "mlflow-python-client/3.17.2" '
            b'rt=0.003 uct="0.000" urt="0.002"')
    (doc,) = parse_lines("nginx", [line], service_environment="prod", host_name="reg-1")
    assert doc["@timestamp"] == "2026-11-24T22:56:17.000Z"  # +0100 converted to UTC
    assert doc["data_stream"]["dataset"] == "modelregistry.error"
    assert doc["event"] == {"kind": "event", "category": ["api"], "type": ["access"], "dataset": "modelregistry.error",
                            "action": "model-version-get-download-uri", "outcome": "failure",
                            "duration": 3_000_000}
    assert doc["modelregistry"]["operation"] == "retrieval"
    assert doc["modelregistry"]["model"] == {"name": "fraud-detector", "version": "1"}
    assert doc["error"] == {"message": "HTTP 404", "type": "client_error"}
    assert doc["user"] == {"name": "alice"}
    assert doc["http"]["request"] == {"method": "GET", "referrer": "https://ui/"}
    assert doc["url"] == {"path": "/api/2.0/mlflow/model-versions/get-download-uri",
                          "query": "name=fraud-detector&version=1"}
    assert doc["service"] == {"name": "mlflow", "environment": "prod"}
    assert doc["host"] == {"name": "reg-1"}


def test_nginx_artifact_download_through_the_proxy() -> None:
    line = (b'127.0.0.1 - - [24/Nov/2026:23:56:15 +0000] "GET /api/2.0/mlflow-artifacts/artifacts/1/models/'
            b'm-92f2/artifacts/MLmodel HTTP/1.1" 200 563 "-" "mlflow-python-client/3.17.2" '
            b'rt=0.002 uct="0.000" urt="0.002"')
    (doc,) = parse_lines("nginx", [line])
    assert doc["data_stream"]["dataset"] == "modelregistry.retrieval"
    assert doc["event"]["action"] == "artifact-download"
    assert doc["modelregistry"]["artifact"] == {"path": "1/models/m-92f2/artifacts/MLmodel"}


def test_nginx_502_from_nginx_itself_is_a_server_error() -> None:
    (doc,) = parse_lines("nginx", [b'127.0.0.1 - - [24/Nov/2026:23:55:28 +0000] "GET /health HTTP/1.1" 502 157 "-" '
                                   b'"curl/7.88.1" rt=0.000 uct="-" urt="0.000"'])
    assert doc["event"]["action"] == "health-check"
    assert doc["error"] == {"message": "HTTP 502", "type": "server_error"}
    assert doc["modelregistry"]["operation"] == "other"
    assert doc["event"]["duration"] == 0


def test_gunicorn_default_access_log_exact() -> None:
    line = (b'127.0.0.1 - - [24/Nov/2026:23:55:47 +0000] "PUT /api/2.0/mlflow-artifacts/artifacts/1/models/m-d2/'
            b'artifacts/requirements.txt HTTP/1.0" 200 2 "-" "mlflow-python-client/3.17.2"\n')
    (doc,) = parse_lines("gunicorn", [line])
    assert doc["data_stream"]["dataset"] == "modelregistry.access"
    assert doc["event"]["action"] == "artifact-upload"
    assert "duration" not in doc["event"]
    assert doc["http"] == {"request": {"method": "PUT"}, "response": {"status_code": 200, "body": {"bytes": 2}},
                           "version": "1.0"}
    assert doc["modelregistry"]["format"] == "gunicorn"


def test_unknown_api_path_is_access_with_a_bounded_action() -> None:
    docs = parse_lines("nginx", [
        b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /api/2.0/mlflow/logged-models/m-fd55 HTTP/1.1" 200 10 '
        b'"-" "x"',
        b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "BREW /coffee HTTP/1.1" 418 0 "-" "x"',
        b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01" 400 157 "-" "-"',
    ])
    assert [d["event"]["action"] for d in docs] == ["mlflow-logged-models", "http-request", "invalid-request"]
    assert [d["data_stream"]["dataset"] for d in docs] == ["modelregistry.access", "modelregistry.error",
                                                           "modelregistry.error"]
    # a request line that is no HTTP request is not a URL (#28): it stays under modelregistry.*
    assert "url" not in docs[2]
    assert docs[2]["modelregistry"]["request_line"] == "\\x16\\x03\\x01\\x02\\x00\\x01"
    assert docs[2]["message"] == "\\x16\\x03\\x01\\x02\\x00\\x01 400"


@pytest.mark.parametrize("path,fmt,expected", [
    (NGINX, "nginx", {"access": 205, "error": 19, "registration": 5, "retrieval": 247, "version": 15}),
    (GUNICORN, "gunicorn", {"access": 205, "error": 14, "registration": 5, "retrieval": 247, "version": 15}),
    (NGINX_JSON, "nginx-json", {"access": 205, "error": 20, "registration": 7, "retrieval": 256, "version": 19}),
])
def test_every_sample_line_is_exactly_one_event(path, fmt, expected) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    docs = parse_file(fmt, path)
    assert len(docs) == len(lines)
    assert dict(kinds(docs)) == expected  # no dead-letters in real traffic


def _truth(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nginx_json_bodies_name_every_write_the_client_made() -> None:
    docs = parse_file("nginx-json", NGINX_JSON)
    truth = _truth(SAMPLES / "mlflow-nginx-json" / "truth.jsonl")

    def events(action):
        return Counter(d["modelregistry"]["model"]["name"] for d in docs
                       if d["event"]["action"] == action and d["event"]["outcome"] == "success")

    def ops(op):
        return Counter(t["model"] for t in truth if t["op"] == op and t["ok"])

    assert events("model-version-create") == ops("create_version")
    assert events("registered-model-alias-set") == ops("set_alias")
    assert events("model-version-delete") == ops("delete_version")
    assert events("model-version-transition-stage") == ops("transition_stage")
    assert events("registered-model-rename") == ops("rename_model")
    assert events("registered-model-alias-delete") == ops("delete_alias")
    assert events("model-version-set-tag") == ops("set_version_tag")
    # load_model resolves a download URI too: one per get_download_uri and per load_model.
    assert sum(events("model-version-get-download-uri").values()) == len(
        [t for t in truth if t["op"] in ("get_download_uri", "load_model") and t["ok"]])
    (stage,) = [d for d in docs if d["event"]["action"] == "model-version-transition-stage"]
    assert stage["modelregistry"]["model"] == {"name": "fraud-detector", "version": "2", "stage": "Production"}
    (tag,) = [d for d in docs if d["event"]["action"] == "model-version-set-tag"]
    assert tag["modelregistry"]["model"]["tag"] == {"key": "validated", "value": "yes"}
    (rename,) = [d for d in docs if d["event"]["action"] == "registered-model-rename"]
    assert rename["modelregistry"]["model"] == {"name": "ad-ctr", "new_name": "ad-ctr-v2"}


def test_nginx_json_exact_document_and_custom_keys() -> None:
    line = (b'{"time_iso8601":"2026-11-25T20:07:06+01:00","remote_addr":"10.0.0.9","remote_user":"bob",'
            b'"request":"POST /api/2.0/mlflow/registered-models/alias HTTP/1.1","status":200,"body_bytes_sent":2,'
            b'"request_time":0.012,"upstream_response_time":"0.011","http_referer":"","http_user_agent":"ua/1",'
            b'"request_body":"{\\"name\\": \\"fraud-detector\\", \\"alias\\": \\"champion\\", '
            b'\\"version\\": \\"2\\"}"}')
    (doc,) = parse_lines("nginx-json", [line])
    assert doc == {
        "@timestamp": "2026-11-25T19:07:06.000Z",
        "data_stream": {"type": "logs", "dataset": "modelregistry.version", "namespace": "default"},
        "event": {"kind": "event", "category": ["api"], "type": ["change"], "dataset": "modelregistry.version",
                  "action": "registered-model-alias-set", "outcome": "success", "duration": 12_000_000},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200, "body": {"bytes": 2}},
                 "version": "1.1"},
        "url": {"path": "/api/2.0/mlflow/registered-models/alias"},
        "source": {"ip": "10.0.0.9"},
        "user": {"name": "bob"},
        "user_agent": {"original": "ua/1"},
        "modelregistry": {"operation": "version", "platform": "mlflow", "format": "nginx-json",
                          "model": {"name": "fraud-detector", "alias": "champion", "version": "2"}},
        "service": {"name": "mlflow"},
        "ecs": {"version": "9.4.0"},
        "message": "POST /api/2.0/mlflow/registered-models/alias 200",
    }
    other_site = (b'{"ts":"2026-11-25T20:07:06Z","client":"10.0.0.9","method":"get",'
                  b'"path":"/api/2.0/mlflow/registered-models/get","args":"name=m1","code":"404","took":"0.5"}')
    (doc,) = parse_lines("nginx-json", [other_site], field_map={
        "ts": "ts", "ip": "client", "method": "method", "uri": "path", "args": "args",
        "status": "code", "request_time": "took"})
    assert doc["event"]["action"] == "registered-model-get"
    assert doc["modelregistry"]["model"] == {"name": "m1"}
    assert doc["http"]["response"]["status_code"] == 404
    assert doc["event"]["duration"] == 500_000_000


UVICORN_LINES = [
    b'INFO:     127.0.0.1:51060 - "GET /api/2.0/mlflow/registered-models/get?name=fraud-detector HTTP/1.1" 200 OK\n',
    b'2026-11-25 20:07:06,123 INFO uvicorn.access: 10.0.0.5:40000 - '
    b'"POST /api/2.0/mlflow/model-versions/create HTTP/1.1" 200\n',
    b'INFO:     [::1]:40001 - "DELETE /api/2.0/mlflow/registered-models/alias?name=m&alias=champion HTTP/1.1" '
    b'404 Not Found\n',
]


def test_uvicorn_access_log() -> None:
    docs = parse_lines("uvicorn", UVICORN_LINES)
    first, second, third = docs
    assert first["@timestamp"] == "2026-11-25T00:00:00.000Z"  # no timestamp in the line: time read
    assert first["event"]["action"] == "registered-model-get"
    assert first["source"] == {"ip": "127.0.0.1"}
    assert first["modelregistry"]["model"] == {"name": "fraud-detector"}
    assert second["@timestamp"] == "2026-11-25T20:07:06.123Z"
    assert second["data_stream"]["dataset"] == "modelregistry.version"
    assert second["source"] == {"ip": "10.0.0.5"}
    assert third["data_stream"]["dataset"] == "modelregistry.error"
    assert third["source"] == {"ip": "::1"}
    assert third["modelregistry"]["operation"] == "version"
    assert third["modelregistry"]["model"] == {"name": "m", "alias": "champion"}


def test_uvicorn_lines_of_a_real_mlflow_3_server() -> None:
    """Captured from `mlflow server` (uvicorn, its default in MLflow 3) driven by MlflowClient."""
    docs = parse_file("uvicorn", SAMPLES / "mlflow-uvicorn" / "server_access.log")
    assert [d["event"]["action"] for d in docs] == [
        "health-check", "registered-model-create", "registered-model-get", "model-version-get",
        "registered-model-search", "registered-model-get", "registered-model-set-tag", "registered-model-get",
        "registered-model-delete"]
    assert [d["data_stream"]["dataset"].removeprefix("modelregistry.") for d in docs] == [
        "access", "registration", "retrieval", "error", "retrieval", "retrieval", "registration", "retrieval",
        "registration"]
    missing = docs[3]
    assert missing["@timestamp"].startswith("2026-11-25T21:09:30")  # naive times are read as UTC
    assert missing["modelregistry"]["model"] == {"name": "fraud-detector", "version": "9"}
    assert missing["http"] == {"request": {"method": "GET"}, "response": {"status_code": 404}, "version": "1.1"}
    assert missing["source"] == {"ip": "127.0.0.1"}
    assert docs[4]["url"]["query"].startswith("filter=tag.%60mlflow.prompt.is_prompt%60")
