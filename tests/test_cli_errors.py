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
    ("rules: {kibana_url: 'javascript:alert(1)'}\n", ["rules.kibana_url", "not an http(s) URL"]),
    ("rules: {kibana_url: 'https://kibana .example'}\n", ["rules.kibana_url", "white space"]),
    ("rules: {lease_s: .nan}\n", ["rules.lease_s"]),
    ("rules: {stale_after_s: .inf}\n", ["rules.stale_after_s"]),
    ("rules: {folders: [builtin, builtin]}\n", ["rules.folders", "'builtin' is listed twice"]),
    ("rules: {folders: []}\n", ["rules.folders", "at least 1"]),
    ("rules: {folder: /srv/rules, folders: [builtin]}\n", ["rules", "not both"]),
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
    config = _config(tmp_path, f"checkpoint_file: {checkpoint}\n"
                               f"inputs: [{{paths: [{tmp_path}/a.log], format: nginx}}]\n")
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


# -- issue 25: bad inputs that reached the last-resort "unexpected" guard, or were accepted ----------


def no_guard(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr and "unexpected" not in result.stderr, result.stderr


def exact_error(result: subprocess.CompletedProcess, line: str, code: int) -> None:
    """The whole of stderr is this one line; the exit status is ``code``."""
    no_guard(result)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.splitlines() == [line], result.stderr


RULE_FILE = "rules:\n  - {name: quiet, type: absence, window: 1m, interval: 1m, notify: []}\n"


def _rules_config(tmp_path: Path, host: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(RULE_FILE)
    return _config(tmp_path, f"namespace: {'e' + os.urandom(5).hex()}\nelasticsearch: {{hosts: ['{host}'], "
                             f"request_timeout_s: 5}}\nrules: {{folder: {folder}}}\n")


DOWN = "http://elastic:hunter2@127.0.0.1:9"
DOWN_LINE = ("error: Elasticsearch at http://elastic:***@127.0.0.1:9: ConnectionError: "
             "HTTPConnection(host='127.0.0.1', "
             "port=9): Failed to establish a new connection: [Errno 111] Connection refused")


@pytest.mark.parametrize("args,line", [
    (["--label", "x", "--for", "1h"], "error: --label 'x': not key=value (e.g. --label severity=critical)"),
    (["--label", "=v", "--for", "1h"], "error: --label '=v': not key=value (e.g. --label severity=critical)"),
    (["--for", "5x"], "error: --for: not a duration: '5x' (use 30s, 5m, 1h, 2d)"),
    (["--for", "0s"], "error: --for '0s': not a positive duration"),
    (["--for", "400d"], "error: --for: '400d' is more than 366 days"),
    (["--for", "99999999999999999999999d"], "error: --for: '99999999999999999999999d' is more than 366 days"),
    (["--for", "1h", "--until-resolved"], "error: give exactly one of --for DURATION and --until-resolved"),
])
def test_silence_options_are_one_line_where_parsed(tmp_path: Path, args: list[str], line: str) -> None:
    exact_error(run("rules", "silence", "quiet", *args, "-c", str(_rules_config(tmp_path, DOWN))), line, 2)


def test_a_silence_for_an_unknown_rule_is_refused(tmp_path: Path, es_url: str) -> None:
    """It was stored and the command said so: a typo silenced nothing."""
    config = _rules_config(tmp_path, es_url)
    exact_error(run("rules", "silence", "qiuet", "--for", "1h", "-c", str(config)),
                f"error: no rule 'qiuet' in {tmp_path / 'rules'} (rules: quiet; * silences every rule)", 2)
    for rule in ("quiet", "*"):
        done = run("rules", "silence", rule, "--for", "1h", "-c", str(config))
        assert done.returncode == 0 and f" rule={rule} labels={{}} until=" in done.stdout, done.stderr


def test_silence_and_backtest_with_elasticsearch_down_name_the_node(tmp_path: Path) -> None:
    config = str(_rules_config(tmp_path, DOWN))
    for args in (["silence", "quiet", "--for", "1h"],
                 ["backtest", "quiet", "--from", "1700000000", "--to", "1700003600"]):
        result = run("rules", *args, "-c", config)
        exact_error(result, DOWN_LINE, 1)
        assert "hunter2" not in result.stdout + result.stderr


def test_a_backtest_of_centuries_is_refused_at_once(tmp_path: Path) -> None:
    """--from 0 --to 253402300799 at a one-minute interval built 4.2 billion windows in memory
    before the first search (it hung, growing); at most 10,000 windows are replayed now."""
    import time

    config = str(_rules_config(tmp_path, DOWN))
    started = time.monotonic()
    exact_error(run("rules", "backtest", "quiet", "--from", "0", "--to", "253402300799", "-c", config),
                "error: --from '0' --to '253402300799': 4223371679 windows at the interval of rule quiet (1m); a "
                "backtest replays at most 10000: shorten the range", 2)
    assert time.monotonic() - started < 30
    exact_error(run("rules", "backtest", "quiet", "--from", "1700003600", "--to", "1700000000", "-c", config),
                "error: --from '1700003600' is not before --to '1700000000'", 2)


def test_backtest_refuses_too_many_windows_itself() -> None:
    from rules.backtest import MAX_WINDOWS, RangeTooLong, backtest
    from rules.model import RuleFile

    (rule,) = RuleFile.model_validate({"rules": [{"name": "q", "type": "absence", "interval": "1m",
                                                  "notify": []}]}).rules
    with pytest.raises(RangeTooLong, match="rule 'q': 10001 windows of 60 s"):
        backtest(None, rule, "ns", 0, (MAX_WINDOWS + 1) * 60)  # refused before any search: no client needed


@pytest.mark.parametrize("value", ["abc", "99999", "0", "-1", "65500", "９２００"])
def test_regwatch_es_port_is_one_line(tmp_path: Path, value: str) -> None:
    env = {key: val for key, val in os.environ.items() if key != "ES_URL"}
    result = subprocess.run([*REGWATCH, "es", "status"], capture_output=True, text=True, timeout=60,
                            env={**env, "REGWATCH_ES_PORT": value, "REGWATCH_HOME": str(tmp_path)})
    exact_error(result, f"error: REGWATCH_ES_PORT={value!r}: not a port from 1 to 65427 (a local cluster's nodes "
                        "also take the ports up to 108 above it)", 1)


def test_regwatch_es_port_parsed(monkeypatch) -> None:
    from regwatch.localnode.common import NodeError, port

    monkeypatch.delenv("REGWATCH_ES_PORT", raising=False)
    assert port() == 9200
    monkeypatch.setenv("REGWATCH_ES_PORT", " 19200 ")
    assert port() == 19200
    monkeypatch.setenv("REGWATCH_ES_PORT", "abc")
    with pytest.raises(NodeError, match="REGWATCH_ES_PORT='abc'"):
        port()


@pytest.mark.parametrize("args,line", [
    (["rules", "status", "--stale-after", "nan"], "error: --stale-after: nan is not a positive number of seconds"),
    (["rules", "status", "--stale-after", "inf"], "error: --stale-after: inf is not a positive number of seconds"),
    (["setup", "--retention", "abc"],
     "error: --retention 'abc': not a retention such as 90d, 12h or 30m ('' for none)"),
    (["setup", "--retention", "0d"], "error: --retention '0d': not a retention such as 90d, 12h or 30m ('' for none)"),
])
def test_more_options_refused_where_parsed(tmp_path: Path, args: list[str], line: str) -> None:
    exact_error(run(*args, "-c", str(_rules_config(tmp_path, DOWN))), line, 2)


@pytest.mark.parametrize("args,line", [
    (["--mlflow", "http://[::1", "--url", "http://r"], "error: --mlflow 'http://[::1': not a URL (Invalid IPv6 URL)"),
    (["--mlflow", "javascript:alert(1)", "--url", "http://r"],
     "error: --mlflow 'javascript:alert(1)': not an http or https URL (e.g. http://mlflow.example:5000)"),
    (["--mlflow", "http://m:99999", "--url", "http://r"],
     "error: --mlflow 'http://m:99999': not a URL (Port out of range 0-65535)"),
    (["--mlflow", "http://m", "--url", "http://r x"],
     "error: --url 'http://r x': not an http or https URL (e.g. http://receiver.example:8686)"),
])
def test_webhook_registration_urls_are_checked_where_parsed(args: list[str], line: str) -> None:
    """A malformed --mlflow URL reached the "unexpected" guard (ValueError, MLflow's own exception)."""
    exact_error(run("audit-receiver", "register", *args, env={"REGWATCH_WEBHOOK_SECRET": "s" * 24}), line, 2)


def test_webhook_registration_with_mlflow_down_is_one_line_and_prompt() -> None:
    import time

    started = time.monotonic()
    result = run("audit-receiver", "register", "--mlflow", "http://127.0.0.1:9", "--url", "http://r",
                 env={"REGWATCH_WEBHOOK_SECRET": "s" * 24})
    no_guard(result)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: MLflow refused the webhook: API request to http://127.0.0.1:9/")
    assert time.monotonic() - started < 45  # MLflow's own retries took minutes


@pytest.mark.parametrize("args,line", [
    (["kibana", "import", "--url", "http://[::1"], "error: --url 'http://[::1': not a URL (Invalid IPv6 URL)"),
    (["kibana", "export", "--url", "http://[::1"], "error: --url 'http://[::1': not a URL (Invalid IPv6 URL)"),
    (["kibana", "import", "--url", "javascript:alert(1)"],
     "error: --url 'javascript:alert(1)': not an http or https URL (e.g. http://127.0.0.1:5601)"),
    (["demo", "workload", "--tracking-uri", "http://[::1", "--truth", "/dev/null"],
     "error: --tracking-uri 'http://[::1': not a URL (Invalid IPv6 URL)"),
    (["demo", "workload", "--tracking-uri", "http://127.0.0.1:9", "--truth", "/dev/null", "--duration", "nan"],
     "error: --duration: nan is not a number of seconds"),
    (["demo", "webhook-sink", "--out", "/dev/null", "--listen", "127.0.0.1:99999"],
     "error: --listen '127.0.0.1:99999': expected host:port"),
])
def test_kibana_and_demo_options_are_one_line_where_parsed(args: list[str], line: str) -> None:
    """Each reached the "unexpected" guard (httpx.InvalidURL, ValueError, OverflowError)."""
    exact_error(run(*args), line, 2)


def test_the_demo_workload_with_mlflow_down_is_one_line() -> None:
    result = run("demo", "workload", "--tracking-uri", "http://127.0.0.1:9", "--truth", "/dev/null", "--duration", "1",
                 env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    no_guard(result)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: API request to http://127.0.0.1:9/api/2.0/mlflow/"), result.stderr


def test_an_error_naming_a_hostile_path_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """A file name is data too: ESC in it would drive the terminal that reads the error."""
    config = tmp_path / "evil\x1b]0;owned\x07\x1b[2J.yaml"
    config.write_text("namespace: [a]\n")
    result = run("ship", "-c", str(config), "--once")
    one_line_error(result, "evil\\x1b]0;owned\\x07\\x1b[2J.yaml")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


INTERNAL_WORDS = ("room", "structlog", "module per", "front door", "msearch", "outbox")


@pytest.mark.parametrize("command", [[], ["ship"], ["probe"], ["status"], ["setup"], ["top"], ["rules"],
                                     ["rules", "run"], ["rules", "status"], ["check"], ["es"], ["demo"]])
def test_help_speaks_of_the_users_work_not_our_internals(command: list[str]) -> None:
    result = run(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    text = result.stdout.lower()
    assert [word for word in INTERNAL_WORDS if word in text] == [], result.stdout
    if not command:
        assert "monitor an mlflow (or other) model registry" in text and "make demo" in text
