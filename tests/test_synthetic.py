"""The probe's own requests are not users' traffic, and a client's control flow is not a failure
(#27 items 2 and 4).

The probe says who it is (its User-Agent), the parsers mark its events ``modelregistry.synthetic``,
and every built-in rule over users' traffic leaves them out; the error ratio counts 5xx, 401, 403
and 429, not the 404 and 400 MLflow's own client gets on its ordinary path.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from elasticsearch import Elasticsearch

from contract.kql import to_dsl
from contract.traffic import USER_TRAFFIC_KQL, is_synthetic
from parsers import LineParser, ParseContext
from parsers.events import validate_document
from pipeline.probe.check import USER_AGENT
from pipeline.probe.runner import check_target, http_client
from pipeline.probe.settings import TargetSettings
from regwatch.config import BUILTIN_RULES, load_config
from regwatch.ship import build_shipper
from rules.backtest import read_now
from rules.model import load_rules
from rules.query import Window
from rules.types import RULE_TYPES
from support.shipping import write_config

BUILTIN = Path(BUILTIN_RULES)
PROBE_RULES = {"registry-down", "registry-synthetic-slow", "host-disk-filling"}  # the probe's own documents


# -- the probe says who it is --------------------------------------------------------------------


def _headers(request: BaseHTTPRequestHandler) -> dict[str, str]:
    """Header names in lower case; a header sent twice is joined, so a second User-Agent shows."""
    return {name.lower(): ", ".join(request.headers.get_all(name) or []) for name in request.headers}


class _Registry:
    """A stub MLflow: records each request's headers; get-latest-versions lists an archived
    version first, then the newest (10), then 4 (compared as text, "4" would be the greatest)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                registry.seen.append((self.path, _headers(self)))
                path = urlsplit(self.path).path
                if path == "/health":
                    self._answer(b"OK")
                elif path.endswith("/registered-models/search"):
                    self._answer({"registered_models": [{"name": "churn"}]})
                else:
                    version = parse_qs(urlsplit(self.path).query).get("version", ["?"])[0]
                    self._answer({"artifact_uri": f"s3://models/churn/{version}"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                registry.seen.append((self.path, _headers(self)))
                self._answer({"model_versions": [{"name": "churn", "version": "1", "current_stage": "Archived"},
                                                 {"name": "churn", "version": "10", "current_stage": "Production"},
                                                 {"name": "churn", "version": "4", "current_stage": "None"}]})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _Registry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _check(registry: _Registry, **target: Any) -> list[Any]:
    settings = TargetSettings(name="mlflow", url=registry.url + "/health", transaction={"model": "churn"}, **target)
    with http_client(settings) as client:
        return check_target(client, settings)


def test_every_probe_request_carries_the_probes_user_agent_and_keeps_its_headers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_TOKEN", "Bearer s3cret-token")
    with _Registry() as registry:
        results = _check(registry, headers_from_env={"Authorization": "PROBE_TOKEN"})
    assert [r.up for r in results] == [True] * 4
    assert len(registry.seen) == 4  # health and the three steps
    for _path, headers in registry.seen:
        assert headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("regwatch-probe/")
        assert headers["authorization"] == "Bearer s3cret-token"


def test_a_configured_user_agent_replaces_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_AGENT", "regwatch-probe/gateway-allowed")
    with _Registry() as registry:
        _check(registry, headers_from_env={"user-agent": "PROBE_AGENT"})
    assert {headers.get("user-agent") for _, headers in registry.seen} == {"regwatch-probe/gateway-allowed"}


def test_the_transaction_resolves_the_newest_version_not_the_first_listed() -> None:
    with _Registry() as registry:
        results = _check(registry)
    download = [path for path, _ in registry.seen if "get-download-uri" in path]
    assert len(download) == 1 and parse_qs(urlsplit(download[0]).query)["version"] == ["10"]
    assert results[-1].body == {"artifact_uri": "s3://models/churn/10"}


# -- the parsers mark what the probe sent ----------------------------------------------------------


def _access(agent: str, status: int = 200, path: str = "/api/2.0/mlflow/model-versions/get-download-uri",
            when: float | None = None) -> str:
    stamp = datetime.fromtimestamp(when or time.time(), UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'10.0.0.1 - - [{stamp}] "GET {path}?name=churn&version=3 HTTP/1.1" {status} 10 "-" "{agent}" '
            f'rt=0.010 uct="0.000" urt="0.010"\n')


def test_an_access_line_with_the_probes_agent_is_synthetic_and_another_is_not() -> None:
    parser = LineParser(ParseContext(format="nginx"))
    probe = parser.parse(_access(USER_AGENT).encode())
    user = parser.parse(_access("mlflow-python-client/2.19.0").encode())
    assert probe["modelregistry"]["synthetic"] is True
    assert "synthetic" not in user["modelregistry"]
    validate_document(probe)
    validate_document(user)
    record = {"time_iso8601": "2026-11-25T10:00:00+00:00", "request": "GET /health HTTP/1.1", "status": 200,
              "http_user_agent": "regwatch-probe/0.1.0"}
    as_json = LineParser(ParseContext(format="nginx-json")).parse(json.dumps(record).encode())
    assert as_json["modelregistry"]["synthetic"] is True
    assert is_synthetic("regwatch-probe/dev") and not is_synthetic("my-regwatch-probe/1") and not is_synthetic(None)


@pytest.mark.parametrize(("status", "kind"), [(500, "server"), (503, "server"), (401, "auth"), (403, "auth"),
                                              (429, "throttled"), (404, "control_flow"), (400, "client"),
                                              (409, "client")])
def test_an_access_lines_failure_kind_comes_from_its_status(status: int, kind: str) -> None:
    doc = LineParser(ParseContext(format="nginx")).parse(
        _access("client", status, "/api/2.0/mlflow/registered-models/get").encode())
    assert doc["event"]["outcome"] == "failure" and doc["modelregistry"]["failure"] == kind
    validate_document(doc)


def test_an_audit_records_error_code_decides_its_failure_kind() -> None:
    parser = LineParser(ParseContext(format="audit"))

    def failure(**fields: Any) -> str | None:
        record = {"@timestamp": "2026-11-25T10:00:00Z", "entity": "registered_model", "action": "created",
                  "model": {"name": "churn"}, "outcome": "failure", **fields}
        doc = parser.parse(json.dumps(record).encode())
        validate_document(doc)
        return doc["modelregistry"].get("failure")

    assert failure(status_code=400, error_code="RESOURCE_ALREADY_EXISTS") == "control_flow"
    assert failure(status_code=400, error_code="INVALID_PARAMETER_VALUE") == "client"
    assert failure(error_code="PERMISSION_DENIED") == "auth"
    assert failure() == "unknown"
    ok = parser.parse(json.dumps({"@timestamp": "2026-11-25T10:00:00Z", "entity": "registered_model",
                                  "action": "created", "model": {"name": "churn"}}).encode())
    assert "failure" not in ok["modelregistry"]


# -- the built-in rules leave the probe out and count real failures ---------------------------------


def test_every_builtin_rule_over_users_traffic_leaves_the_probes_requests_out() -> None:
    rules = {rule.name: rule for rule in load_rules(BUILTIN)}
    users = to_dsl(USER_TRAFFIC_KQL)
    over_traffic = [rule for name, rule in rules.items() if name not in PROBE_RULES]
    assert {"registry-error-ratio", "registry-server-errors", "registry-slow-p95", "registry-silent",
            "registered-model-deleted"} <= {rule.name for rule in over_traffic}
    for rule in over_traffic:
        if rule.name == "audit-trail-silent":  # another file, another issue's rule: counted writes only
            continue
        if rule.type == "regression":  # the inventory's changes and states: no traffic at all
            assert set(rule.kinds) == {"change", "inventory"}, rule.name
            continue
        if rule.type == "stale_usage":  # who still pulls a version: the probe's requests are in no answer
            request = json.dumps(RULE_TYPES[rule.type].request(rule, Window(0.0, 600.0)))
            assert request.count('{"term": {"modelregistry.synthetic": true}}') >= 1 and "must_not" in request
            continue
        assert rule.kql is not None and to_dsl(rule.kql) == users, rule.name
    for name in PROBE_RULES:
        assert rules[name].kinds == ["availability"] and rules[name].kql is None


def _ship(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path, lines: list[str]) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(lines))
    summary = build_shipper(load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))).run(
        once=True)
    assert summary.events == len(lines)
    es.indices.refresh(index=f"*-modelregistry.*-{namespace}")


def test_the_error_ratio_counts_5xx_401_403_429_and_not_a_clients_404_or_400_nor_the_probe(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    get = "/api/2.0/mlflow/registered-models/get"
    lines = [_access("mlflow-python-client/2.19.0") for _ in range(20)]
    lines += [_access("mlflow-python-client/2.19.0", status, get) for status in (500, 401, 403, 429)]
    lines += [_access("mlflow-python-client/2.19.0", 404, get) for _ in range(10)]  # set_experiment's lookup
    lines += [_access("mlflow-python-client/2.19.0", 400, "/api/2.0/mlflow/registered-models/create")
              for _ in range(6)]  # RESOURCE_ALREADY_EXISTS, as an access line tells it
    lines += [_access(USER_AGENT, 503, get) for _ in range(10)]  # the probe's, failing
    _ship(es, es_url, namespace, tmp_path, lines)
    rule = next(r for r in load_rules(BUILTIN) if r.name == "registry-error-ratio")
    [reading] = read_now(es, rule, namespace, time.time() + 1)
    assert reading.value == pytest.approx(4 / 40)  # 40 users' calls, 4 of them failed
    assert reading.breached  # 10 % > 5 %: a real failure rate still pages


def test_registry_silent_fires_when_only_the_probe_calls(es: Elasticsearch, es_url: str, namespace: str,
                                                         tmp_path: Path) -> None:
    _ship(es, es_url, namespace, tmp_path, [_access(USER_AGENT) for _ in range(5)])
    rule = next(r for r in load_rules(BUILTIN) if r.name == "registry-silent")
    [reading] = read_now(es, rule, namespace, time.time() + 1)
    assert reading.value == 0 and reading.breached
