"""A rule over an index its credentials cannot read is refused at the runner's start.

Searches skip unreadable indices in silence (``ignore_unavailable``): an absence rule over one fired
for ever, a threshold rule could never fire, and start-up said "valid". The runner now asks
``_has_privileges`` for ``read`` on each rule's indices and refuses in one line naming the rule and
the index; ``rules test`` and ``rules status`` warn. On a node without security every index is
readable and nothing is said. The secured node is real (TLS, the file realm, regwatch's own
``rules`` role) and started once for the run (shared with test_security).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from rules.model import load_rules
from rules.query import check_privileges
from support.secure_node import SecureNode, shared_secure_node

CLI = [sys.executable, "-m", "regwatch.cli"]
NAMESPACE = "priv"
PASSWORD = f"pw-rules-{os.urandom(6).hex()}"
ROLE, USER = "priv_rules", "priv_rules"  # test_security has regwatch_rules, of one namespace
RULES = [
    {"name": "errors-seen", "type": "threshold", "kinds": ["error"], "condition": {"op": ">", "value": 5},
     "notify": []},
    {"name": "payments-quiet", "type": "absence", "index": "payments-*", "notify": []},
]


@pytest.fixture(scope="module")
def node(pytestconfig: pytest.Config) -> SecureNode:
    """The run's secured node (test_security's too), with regwatch's ``rules`` role over every
    namespace as a role and a user of this module's own."""
    from pipeline.access import role_descriptors

    return shared_secure_node(pytestconfig, {ROLE: role_descriptors()["rules"]}, {USER: (PASSWORD, [ROLE])})


def _config(tmp_path: Path, node: SecureNode, rules: list[dict]) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(yaml.safe_dump({"rules": rules}))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": [node.url], "ca_file": str(node.ca_file), "username": USER,
                          "password_env": "PW_RULES"},
        "namespace": NAMESPACE, "metrics_port": None, "rules": {"folder": str(folder), "metrics_port": None}}))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PW_RULES": PASSWORD},
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_the_runner_refuses_a_rule_it_cannot_read(node: SecureNode, tmp_path: Path) -> None:
    config = _config(tmp_path, node, RULES)
    done = _run("rules", "run", "-c", str(config), "--once")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: rule 'payments-quiet': index 'payments-*': the credentials cannot read it (this rule "
                      "would read nothing there): grant the read privilege on it"], done.stderr
    assert "Traceback" not in done.stderr and "evaluated=" not in done.stdout

    # The rules the role may read start and run.
    readable = _config(tmp_path, node, RULES[:1])
    done = _run("rules", "run", "-c", str(readable), "--once")
    assert done.returncode == 0, done.stderr
    assert "evaluated=1" in done.stdout and "cannot read" not in done.stderr


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_rules_test_and_status_say_so(node: SecureNode, tmp_path: Path) -> None:
    config = _config(tmp_path, node, RULES)
    warning = ("warning: rule 'payments-quiet': index 'payments-*': the credentials cannot read it (this rule would "
               "read nothing there): grant the read privilege on it")
    trial = _run("rules", "test", "payments-quiet", "-c", str(config))
    assert trial.returncode == 0, trial.stderr
    assert warning in trial.stderr.splitlines(), trial.stderr
    status = _run("rules", "status", "-c", str(config))
    assert status.returncode == 0, status.stderr
    assert [line for line in status.stderr.splitlines() if "cannot read" in line] == [warning], status.stderr
    fine = _run("rules", "test", "errors-seen", "-c", str(config))
    assert fine.returncode == 0 and "cannot read" not in fine.stderr, fine.stderr


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_check_privileges_names_each_rule_and_index(node: SecureNode, tmp_path: Path) -> None:
    _config(tmp_path, node, [*RULES, {"name": "two", "type": "absence", "index": "logs-modelregistry.x-priv,secret",
                                      "notify": []}])
    rules = load_rules(tmp_path / "rules")
    client = Elasticsearch(node.url, ca_certs=str(node.ca_file), basic_auth=(USER, PASSWORD))
    assert check_privileges(client, rules, NAMESPACE) == [
        "rule 'payments-quiet': index 'payments-*': the credentials cannot read it (this rule would read nothing "
        "there): grant the read privilege on it",
        "rule 'two': index 'secret': the credentials cannot read it (this rule would read nothing there): grant the "
        "read privilege on it"]
    admin = Elasticsearch(node.url, ca_certs=str(node.ca_file), basic_auth=("elastic", node.password))
    assert check_privileges(admin, rules, NAMESPACE) == []


def test_without_security_every_index_is_readable(es: Elasticsearch, tmp_path: Path) -> None:
    """The test node has no security: ``_has_privileges`` is refused, the check is skipped."""
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"rules": RULES}))
    assert check_privileges(es, load_rules(tmp_path), NAMESPACE) == []
