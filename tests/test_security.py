"""regwatch's services against a node with security on: TLS verified against the node's CA, one
user per service holding exactly the role pipeline/roles.yaml defines for it, each able to do its
service's work and nothing else.

The roles are loaded through the file realm: this distribution cannot create the .security index
(its mapping needs analysis-common), so API keys (`regwatch setup --api-keys`, the same role
descriptors) are refused here with a one-line error, tested as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from elasticsearch import AuthorizationException, Elasticsearch

from support.secure_node import SecureNode, shared_secure_node

pytestmark = [pytest.mark.slow, pytest.mark.elasticsearch]

CLI = [sys.executable, "-m", "regwatch.cli"]
NAMESPACE = "sec"
LINE = ('10.0.0.1 - - [26/Nov/2026:10:00:{s:02d} +0000] "GET /api/2.0/mlflow/registered-models/get?name=m HTTP/1.1" '
        '{status} 10 "-" "client" rt=0.010 uct="0.000" urt="0.010"\n')


SERVICES = ("shipper", "probe", "inventory", "rules", "viewer", "setup")
PASSWORDS = {service: f"pw-{service}-{os.urandom(6).hex()}" for service in SERVICES}


@pytest.fixture(scope="module")
def node(pytestconfig: pytest.Config) -> SecureNode:
    """The run's secured node (test_rule_privileges' too), with this module's roles and users."""
    from pipeline.access import role_descriptors

    roles = {f"regwatch_{name}": descriptor for name, descriptor in role_descriptors(NAMESPACE).items()}
    users = {f"regwatch_{s}": (PASSWORDS[s], [f"regwatch_{s}"]) for s in SERVICES}
    return shared_secure_node(pytestconfig, roles, users)


@pytest.fixture(scope="module")
def admin(node: SecureNode) -> Elasticsearch:
    return Elasticsearch(node.url, ca_certs=str(node.ca_file), basic_auth=("elastic", node.password))


@pytest.fixture(scope="module")
def keys(node: SecureNode, tmp_path_factory) -> Path:
    """``regwatch setup`` as the elastic user; then a file per service holding its password."""
    folder = tmp_path_factory.mktemp("keys")
    config = tmp_path_factory.mktemp("admin") / "admin.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": [node.url], "username": "elastic",
                                                        "ca_file": str(node.ca_file)}, "namespace": NAMESPACE}))
    done = _run(["setup", "-c", str(config)], {"ES_PASSWORD": node.password})
    assert done.returncode == 0, done.stderr
    for service in SERVICES:
        (folder / f"{service}.key").write_text(PASSWORDS[service])
    return folder


def test_the_setup_role_is_enough_for_setup(node: SecureNode, keys: Path, tmp_path: Path) -> None:
    config = _config(tmp_path / "setup.yaml", node, keys / "setup.key")
    done = _run(["setup", "-c", str(config), "--namespace", "setupns"])
    assert done.returncode == 0, done.stderr
    # the streams of lines (6), alerts, availability, the inventory and its changes, anomaly results
    assert "created 11 empty data streams in namespace setupns" in done.stderr


def test_api_keys_are_refused_here_in_one_line(node: SecureNode, keys: Path, tmp_path: Path) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": [node.url], "username": "elastic",
                                                        "ca_file": str(node.ca_file)}, "namespace": NAMESPACE}))
    done = _run(["setup", "-c", str(config), "--api-keys", str(tmp_path / "k")], {"ES_PASSWORD": node.password})
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "pattern_capture" in done.stderr
    assert not (tmp_path / "k").exists() or not list((tmp_path / "k").glob("*.key"))


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    passwords = {f"PW_{s.upper()}": p for s, p in PASSWORDS.items()}
    return subprocess.run([*CLI, *args], env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **passwords, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _config(path: Path, node: SecureNode, key: Path | None, **extra) -> Path:
    """A service's configuration: its user (named after the file) and the node's CA; the password
    goes through the environment (_run passes it from the file)."""
    es = {"hosts": [node.url], "ca_file": str(node.ca_file)}
    if key is not None:
        es["username"] = f"regwatch_{key.stem}"
        es["password_env"] = f"PW_{key.stem.upper()}"
    path.write_text(yaml.safe_dump({"elasticsearch": es, "namespace": NAMESPACE, "metrics_port": None,
                                    "checkpoint_file": str(path.parent / "checkpoints.json"), **extra}))
    return path


def _client(node: SecureNode, key: Path) -> Elasticsearch:
    return Elasticsearch(node.url, ca_certs=str(node.ca_file), basic_auth=(f"regwatch_{key.stem}", key.read_text()))


def test_the_shipper_key_ships_and_can_do_nothing_else(node: SecureNode, admin: Elasticsearch, keys: Path,
                                                       tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(LINE.format(s=i, status=200 if i % 4 else 500) for i in range(20)) + "garbage\n")
    config = _config(tmp_path / "ship.yaml", node, keys / "shipper.key",
                     inputs=[{"paths": [str(log)], "format": "nginx"}])
    done = _run(["ship", "-c", str(config), "--once"])
    assert done.returncode == 0, done.stderr
    admin.indices.refresh(index=f"logs-modelregistry.*-{NAMESPACE}")
    written = f"logs-modelregistry.retrieval-{NAMESPACE},logs-modelregistry.error-{NAMESPACE}"
    assert admin.count(index=written)["count"] == 20
    assert admin.count(index=f"logs-modelregistry.deadletter-{NAMESPACE}")["count"] == 1
    # Shipped again from an empty checkpoint: the replay is recognised (reads allowed), nothing twice.
    (tmp_path / "checkpoints.json").unlink()
    assert _run(["ship", "-c", str(config), "--once"]).returncode == 0
    admin.indices.refresh(index=f"logs-modelregistry.*-{NAMESPACE}")
    assert admin.count(index=f"logs-modelregistry.*-{NAMESPACE}")["count"] == 21
    # Its heartbeat was written under its own role (and its last one says it stopped).
    admin.indices.refresh(index=f"regwatch-shipper-state-{NAMESPACE}")
    beats = admin.search(index=f"regwatch-shipper-state-{NAMESPACE}")["hits"]["hits"]
    assert [hit["_source"]["state"] for hit in beats] == ["stopped"]

    shipper = _client(node, keys / "shipper.key")
    with pytest.raises(AuthorizationException):  # heartbeats are written, never read, by a shipper
        shipper.search(index=f"regwatch-shipper-state-{NAMESPACE}")
    backing = next(iter(admin.indices.get(index=f".ds-logs-modelregistry.error-{NAMESPACE}-*")))
    with pytest.raises(AuthorizationException):
        shipper.indices.delete(index=backing)
    with pytest.raises(AuthorizationException):
        shipper.index(index=f"metrics-modelregistry.availability-{NAMESPACE}", document={"@timestamp": "2026-11-26"})
    with pytest.raises(AuthorizationException):
        shipper.delete(index=backing, id=admin.search(index=backing, size=1)["hits"]["hits"][0]["_id"])
    with pytest.raises(AuthorizationException):
        shipper.search(index=f"regwatch-alert-state-{NAMESPACE}")
    # Only its own datasets of its own namespace: not the alert history, not another namespace,
    # not another namespace's heartbeats.
    forged = {"@timestamp": "2026-11-26T10:00:00Z", "event": {"kind": "alert"}, "rule": {"name": "forged"}}
    with pytest.raises(AuthorizationException):
        shipper.index(index=f"logs-modelregistry.alert-{NAMESPACE}", document=forged, op_type="create")
    with pytest.raises(AuthorizationException):
        shipper.index(index="logs-modelregistry.retrieval-othernamespace", document={"@timestamp": "2026-11-26"},
                      op_type="create")
    with pytest.raises(AuthorizationException):
        shipper.index(index="regwatch-shipper-state-othernamespace", id="someone", document={"type": "shipper"})
    with pytest.raises(AuthorizationException):
        shipper.indices.create(index="regwatch-shipper-state-othernamespace")
    assert not admin.indices.exists(index="logs-modelregistry.retrieval-othernamespace")
    assert admin.count(index=f"logs-modelregistry.alert-{NAMESPACE}", query={"term": {"rule.name": "forged"}},
                       ignore_unavailable=True)["count"] == 0


def test_the_probe_key_writes_availability_only(node: SecureNode, admin: Elasticsearch, keys: Path,
                                                tmp_path: Path) -> None:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = _config(tmp_path / "probe.yaml", node, keys / "probe.key", probe={
            "metrics_port": None, "targets": [{"name": "reg", "url": f"http://127.0.0.1:{server.server_port}/health"}]})
        done = _run(["probe", "-c", str(config), "--once"])
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
    admin.indices.refresh(index=f"metrics-modelregistry.availability-{NAMESPACE}")
    assert admin.count(index=f"metrics-modelregistry.availability-{NAMESPACE}",
                       query={"term": {"modelregistry.probe.target": "reg"}})["count"] >= 1
    probe = _client(node, keys / "probe.key")
    with pytest.raises(AuthorizationException):
        probe.index(index=f"logs-modelregistry.access-{NAMESPACE}", document={"@timestamp": "2026-11-26"})
    with pytest.raises(AuthorizationException):
        probe.search(index=f"logs-modelregistry.access-{NAMESPACE}")


def test_the_inventory_key_writes_the_inventory_only(node: SecureNode, admin: Elasticsearch, keys: Path,
                                                    tmp_path: Path) -> None:
    class Registry(BaseHTTPRequestHandler):
        """An empty MLflow registry: no models, no versions."""

        def do_GET(self) -> None:
            listing = "registered_models" if "registered-models/search" in self.path else "model_versions"
            body = json.dumps({listing: []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = _config(tmp_path / "inventory.yaml", node, keys / "inventory.key", inventory={
            "metrics_port": None, "registries": [{"name": "reg", "url": f"http://127.0.0.1:{server.server_port}"}]})
        done = _run(["inventory", "-c", str(config), "--once"])
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
    admin.indices.refresh(index=f"logs-modelregistry.inventory-{NAMESPACE}")
    assert admin.count(index=f"logs-modelregistry.inventory-{NAMESPACE}")["count"] >= 1  # the poll's observation
    inventory = _client(node, keys / "inventory.key")
    with pytest.raises(AuthorizationException):
        inventory.index(index=f"logs-modelregistry.retrieval-{NAMESPACE}", document={"@timestamp": "2026-11-26"})
    with pytest.raises(AuthorizationException):
        inventory.search(index=f"logs-modelregistry.access-{NAMESPACE}")
    with pytest.raises(AuthorizationException):
        inventory.index(index="logs-modelregistry.inventory-othernamespace", document={"@timestamp": "2026-11-26"})


def test_the_rules_key_evaluates_notifies_and_keeps_state(node: SecureNode, admin: Elasticsearch, keys: Path,
                                                          tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(yaml.safe_dump({"rules": [{
        "name": "any-error", "type": "threshold", "kinds": ["error"], "window": "1h", "interval": "1m",
        "condition": {"op": ">=", "value": 1}, "severity": "critical", "notify": ["hook"],
        "time_field": "@timestamp"}, {
        "name": "odd-errors", "type": "anomaly", "kinds": ["error"], "window": "1m", "history": "1h",
        "learning": 10, "notify": [], "time_field": "@timestamp"}]}))
    received: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = tmp_path / "access.log"
    log.write_text("".join(LINE.format(s=i, status=503) for i in range(3)).replace("26/Nov/2026:10:00", _now_minute()))
    ship = _config(tmp_path / "ship.yaml", node, keys / "shipper.key",
                   inputs=[{"paths": [str(log)], "format": "nginx"}])
    assert _run(["ship", "-c", str(ship), "--once"]).returncode == 0
    try:
        config = _config(tmp_path / "rules.yaml", node, keys / "rules.key", rules={
            "folder": str(rules), "metrics_port": None,
            "notifiers": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{server.server_port}/"}}})
        done = _run(["rules", "run", "-c", str(config), "--once"])
        assert done.returncode == 0, done.stderr
        assert len(received) == 1 and b"any-error" in received[0]
        status = _run(["rules", "status", "-c", str(config)])
        assert status.returncode == 0 and "any-error" in status.stdout + status.stderr
    finally:
        server.shutdown()
    results = f"logs-modelregistry.anomaly-{NAMESPACE}"  # the anomaly rule's result of its bucket
    admin.indices.refresh(index=results)
    assert admin.count(index=results, query={"term": {"rule.name": "odd-errors"}})["count"] == 1
    rules_client = _client(node, keys / "rules.key")
    with pytest.raises(AuthorizationException):
        rules_client.index(index=f"logs-modelregistry.access-{NAMESPACE}", document={"@timestamp": "2026-11-26"})
    viewer = _client(node, keys / "viewer.key")
    assert viewer.count(index=f"logs-modelregistry.*-{NAMESPACE}")["count"] > 0
    with pytest.raises(AuthorizationException):
        viewer.index(index=f"regwatch-alert-state-{NAMESPACE}", document={"type": "alert"})


def test_role_descriptors_narrow_the_writers_to_one_namespace() -> None:
    from pipeline.access import role_descriptors

    prod = role_descriptors("prod")
    shipper_names = [name for entry in prod["shipper"]["indices"] for name in entry["names"]]
    assert shipper_names == [f"logs-modelregistry.{kind}-prod" for kind in
                             ("registration", "retrieval", "version", "error", "access", "deadletter")] + [
        "logs-modelregistry.inventory-prod", "logs-modelregistry.change-prod", "regwatch-shipper-state-prod"]
    assert prod["shipper"]["indices"][1]["privileges"] == ["read", "view_index_metadata"]  # the inventory: read only
    assert prod["probe"]["indices"] == [{"names": ["metrics-modelregistry.availability-prod"],
                                         "privileges": ["create_doc", "auto_configure"]}]
    assert [e["names"] for e in prod["rules"]["indices"]][1:] == [
        ["logs-modelregistry.alert-prod", "logs-modelregistry.anomaly-prod"], ["regwatch-alert-state-prod"]]
    every = role_descriptors()
    assert every["shipper"]["indices"][0]["names"][0] == "logs-modelregistry.registration-*"
    assert not any("alert" in name for entry in every["shipper"]["indices"] for name in entry["names"])


def _now_minute() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%d/%b/%Y:%H:%M")


def test_tls_is_verified_by_default(node: SecureNode, keys: Path, tmp_path: Path) -> None:
    config = tmp_path / "noca.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": [node.url], "username": "regwatch_viewer",
                                                        "password_env": "PW_VIEWER", "request_timeout_s": 5}}))
    done = _run(["top", "--once", "-c", str(config), "--namespace", NAMESPACE])
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate" in lines[0].lower(), done.stderr
    assert PASSWORDS["viewer"] not in done.stderr
    with_ca = _config(tmp_path / "ca.yaml", node, keys / "viewer.key")
    assert _run(["top", "--once", "-c", str(with_ca), "--namespace", NAMESPACE]).returncode == 0


def test_a_wrong_password_is_one_line_without_the_password(node: SecureNode, tmp_path: Path) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": [node.url], "username": "elastic",
                                                        "ca_file": str(node.ca_file)}}))
    done = _run(["setup", "-c", str(config)], {"ES_PASSWORD": "wrong-" + "x" * 12})
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "wrong-xxxx" not in done.stderr
    assert os.environ.get("ES_PASSWORD") is None or os.environ["ES_PASSWORD"] not in done.stderr
