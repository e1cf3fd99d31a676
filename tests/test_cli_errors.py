"""Config and command line errors: one line naming the file, key or value; non-zero; no traceback."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REGWATCH = [sys.executable, "-m", "regwatch.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*REGWATCH, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-1500:]
    for text in expected:
        assert text in errors[0], errors[0]


def _config(tmp_path: Path, body: str | bytes) -> Path:
    path = tmp_path / "regwatch.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


@pytest.mark.parametrize("body,expected", [
    ("inputs: [x\nnamespace: [a]\n", ["regwatch.yaml", "expected"]),  # YAML error text holding [...]
    (b"namespace: caf\xe9\n", ["regwatch.yaml", "not UTF-8"]),
    ("namespace: a\nnamespace: b\n", ["duplicate key 'namespace'"]),
    ("elasticsearch: {hosts: []}\n", ["elasticsearch.hosts"]),
    ("metrics_port: 70000\n", ["metrics_port"]),
    ("elasticsearch: {request_timeout_s: -1}\n", ["request_timeout_s"]),
    ("inputs: [{paths: [a], format: nginx, routes: /no/such/routes.yaml}]\n", ["inputs.0.routes"]),
    ("rules: {notifiers: {mail: {type: email, host: h, sender: a, to: [b], timeout_s: -3}}}\n", ["timeout_s"]),
    ("rules: {notifiers: {hook: {type: webhook, url: 'http://x/\n'}}}\n", ["url"]),
    ("- just\n- a list\n", ["not a mapping"]),
])
def test_bad_config_files_are_one_line(tmp_path: Path, body, expected: list[str]) -> None:
    one_line_error(run("ship", "-c", str(_config(tmp_path, body)), "--once"), *expected)


def test_a_folder_named_like_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "regwatch.yaml"
    folder.mkdir()
    one_line_error(run("status", "-c", str(folder)), "is a folder")


def test_a_corrupt_checkpoint_is_one_line(tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(json.dumps({"version": 2, "files": [{"identity": "x"}]}))
    config = _config(tmp_path, f"checkpoint_file: {checkpoint}\ninputs: [{{paths: [{tmp_path}/a.log], format: nginx}}]\n")
    one_line_error(run("status", "-c", str(config)), "cp.json", "corrupt")
    one_line_error(run("ship", "-c", str(config), "--once"), "cp.json", "corrupt")


def test_a_second_shipper_on_the_same_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    config = _config(tmp_path, f"checkpoint_file: {checkpoint}\nmetrics_port: null\n"
                               f"elasticsearch: {{hosts: ['http://127.0.0.1:9']}}\n"
                               f"inputs: [{{paths: [{tmp_path}/a.log], format: nginx}}]\n")
    lock = os.open(str(checkpoint) + ".lock", os.O_RDWR | os.O_CREAT)
    os.write(lock, b"4242")
    fcntl.flock(lock, fcntl.LOCK_EX)  # what a running shipper holds
    try:
        one_line_error(run("ship", "-c", str(config), "--once"), "in use by another shipper", "4242")
    finally:
        os.close(lock)


def test_rules_errors_are_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"rules: {{folder: {tmp_path / 'missing'}}}\n")
    one_line_error(run("rules", "run", "-c", str(config), "--once"), "no such folder")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text("rules:\n  - {name: r, type: absence, notify: [nosuch]}\n")
    config = _config(tmp_path, f"rules: {{folder: {folder}}}\n")
    one_line_error(run("rules", "run", "-c", str(config), "--once"), "unknown notifier 'nosuch'")


def test_elasticsearch_down_is_one_line_and_credentials_are_masked(tmp_path: Path) -> None:
    config = _config(tmp_path, "elasticsearch: {hosts: ['http://elastic:hunter2@127.0.0.1:9'], "
                               "request_timeout_s: 2}\n")
    result = run("setup", "-c", str(config))
    one_line_error(result, "Elasticsearch at http://elastic:***@127.0.0.1:9")
    assert "hunter2" not in result.stderr + result.stdout
    status = run("es", "status", env={"ES_URL": "http://elastic:hunter2@127.0.0.1:9"})
    assert "hunter2" not in status.stdout + status.stderr and "elastic:***@" in status.stdout


def test_es_warnings_for_a_user_without_password_and_basic_auth_over_http(tmp_path: Path) -> None:
    config = _config(tmp_path, "elasticsearch: {hosts: ['http://es.example:9200'], username: alice, "
                               "request_timeout_s: 1}\n")
    result = run("setup", "-c", str(config), env={"ES_PASSWORD": "", "ES_API_KEY": ""})
    assert "warning: basic auth over plain http" in result.stderr
    assert "warning: username 'alice' but no password in ES_PASSWORD" in result.stderr


def test_log_level_reaches_the_daemons(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    config = _config(tmp_path, f"checkpoint_file: {tmp_path}/cp.json\nmetrics_port: null\n"
                               f"elasticsearch: {{hosts: ['http://127.0.0.1:9']}}\n"
                               f"inputs: [{{paths: ['{log}'], format: nginx}}]\n")
    quiet = run("--log-level", "ERROR", "ship", "-c", str(config), "--once")
    chatty = run("ship", "-c", str(config), "--once")
    assert quiet.returncode == chatty.returncode == 0, quiet.stderr
    assert '"file_created"' in chatty.stderr and '"file_created"' not in quiet.stderr
    one_line_error(run("--log-level", "LOUD", "parse", "-f", "nginx", str(log)), "--log-level")


def test_symlinks_out_of_the_input_folder_are_not_followed(tmp_path: Path) -> None:
    logs, secret = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    secret.mkdir()
    (secret / "shadow").write_bytes(b"root:secret\n")
    (logs / "access.log").write_bytes(b"")
    (logs / "evil.log").symlink_to(secret / "shadow")
    (logs / "current.log").symlink_to(logs / "access.log")  # inside the folder: fine
    from pipeline.checkpoint import CheckpointStore
    from pipeline.scanner import InputSpec
    from pipeline.tailer import Tailer

    spec = InputSpec(index=0, paths=(str(logs / "*.log"),))
    tailer = Tailer([spec], CheckpointStore(tmp_path / "cp.json"))
    tailer.scan()
    (tracked,) = tailer.files.values()  # access.log, also reached as current.log: one file
    assert tracked.path in (str(logs / "access.log"), str(logs / "current.log"))
    followed = Tailer([InputSpec(index=0, paths=(str(logs / "*.log"),), follow_symlinks=True)],
                      CheckpointStore(tmp_path / "cp2.json"))
    followed.scan()
    assert str(logs / "evil.log") in {t.path for t in followed.files.values()}
