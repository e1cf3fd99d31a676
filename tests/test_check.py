"""``regwatch check``: the monitoring-plugin line and exit status (Monitoring Plugins development
guidelines), a probe target and an alert rule, and the real Zabbix agent calling it."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from regwatch.plugin import Range, Status, line, perfdata, status_of
from support.monitoring import command
from support.registry_stub import registry_stub
from support.rules import index_events

CLI = [sys.executable, "-m", "regwatch.cli", "check"]

# The guidelines' grammar: "SERVICE STATUS - text | perfdata", perfdata
# 'label'=value[UOM];[warn];[crit];[min];[max], UOM one of s ms us % B KB MB TB c, or none.
_LABEL = r"(?:'(?:[^'=]|'')+'|[^'= ]+)"
_NUMBER = r"-?\d+(?:\.\d+)?"
_RANGE = r"@?(?:~|-?\d+(?:\.\d+)?)?:?(?:-?\d+(?:\.\d+)?)?"
_PERF = (rf"{_LABEL}=(?:{_NUMBER}(?:s|ms|us|%|B|KB|MB|TB|c)?|U)"
         rf"(?:;{_RANGE}(?:;{_RANGE}(?:;(?:{_NUMBER})?(?:;(?:{_NUMBER})?)?)?)?)?")
PLUGIN_LINE = re.compile(rf"^REGWATCH (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]*(?: \| {_PERF}(?: {_PERF})*)?$")


def _run(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)
    out = done.stdout.rstrip("\n")
    assert "\n" not in out, out
    assert PLUGIN_LINE.match(out), out
    assert "Traceback" not in done.stderr
    return done.returncode, out, done.stderr


@pytest.mark.parametrize("text, alerting, quiet", [
    ("10", [-1, 11], [0, 10, 5]),
    ("10:", [9.9, -5], [10, 1e9]),
    ("~:10", [10.5], [-1e9, 10]),
    ("10:20", [9, 21], [10, 20, 15]),
    ("@10:20", [10, 15, 20], [9, 21]),
])
def test_threshold_ranges_as_the_guidelines_define_them(text: str, alerting: list, quiet: list) -> None:
    threshold = Range.parse(text)
    assert all(threshold.alerts(v) for v in alerting) and not any(threshold.alerts(v) for v in quiet)


def test_ranges_refused_statuses_and_perfdata_grammar() -> None:
    for bad in ("abc", "20:10", "1:x", ""):
        with pytest.raises(ValueError):
            Range.parse(bad)
    assert status_of(5, Range.parse("3"), Range.parse("10")) is Status.WARNING
    assert status_of(11, Range.parse("3"), Range.parse("10")) is Status.CRITICAL
    assert status_of(2, Range.parse("3"), Range.parse("10")) is Status.OK
    assert perfdata("health", 0.25, "s", Range.parse("1"), Range.parse("2"), 0) == "health=0.25s;1;2;0"
    assert perfdata("a b's", 1, "") == "'a b''s'=1"
    assert perfdata("v", math.nan) == "v=U"
    hostile = line(Status.CRITICAL, "model evil | x=1\nREGWATCH OK - fine", [perfdata("value", 1)])
    assert PLUGIN_LINE.match(hostile) and hostile.count("|") == 1 and "\n" not in hostile


def _config(tmp_path: Path, url: str, es_url: str = "http://127.0.0.1:1", namespace: str = "default",
            rules: Path | None = None) -> Path:
    raw = {"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
           "probe": {"targets": [{"name": "mlflow", "url": f"{url}/health", "timeout_s": 1,
                                  "transaction": {"model": "churn"}}]}}
    if rules is not None:
        raw["rules"] = {"folder": str(rules)}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_target_ok_warning_critical_and_unknown(tmp_path: Path) -> None:
    with registry_stub() as (url, stub):
        config = str(_config(tmp_path, url))
        code, out, _ = _run("target", "mlflow", "--config", config)
        assert code == 0 and out.startswith("REGWATCH OK - mlflow up, HTTP 200"), out
        perf = out.partition(" | ")[2].split()
        assert [p.partition("=")[0] for p in perf] == ["health", "search_registered_models", "get_latest_versions",
                                                      "get_download_uri"]
        code, out, _ = _run("target", "mlflow", "--config", config, "-w", "0.0000001", "-c", "30")
        assert code == 1 and out.startswith("REGWATCH WARNING") and ";0.0000001;30;0" in out, out
        code, out, _ = _run("target", "mlflow", "--config", config, "-w", "0.0000001", "-c", "0.0000002")
        assert code == 2 and out.startswith("REGWATCH CRITICAL"), out
        stub.mode = "503"
        code, out, _ = _run("target", "mlflow", "--config", config)
        assert code == 2 and "health down: http_5xx (HTTP 503)" in out, out
        stub.mode, stub.delay_s = "slow", 2.0
        code, out, _ = _run("target", "mlflow", "--config", config)
        assert code == 2 and "down: timeout" in out, out
        stub.mode = "up"
        code, out, _ = _run("target", "nosuch", "--config", config)
        assert code == 3 and "no probe target 'nosuch'" in out
        code, out, _ = _run("target", "mlflow", "--config", config, "-w", "fast")
        assert code == 3 and "-w: 'fast' is not a threshold range" in out
    code, out, _ = _run("target", "mlflow", "--bogus")
    assert code == 3 and out == "REGWATCH UNKNOWN - usage: No such option: --bogus"
    code, out, _ = _run("target", "mlflow", "--config", str(tmp_path / "missing.yaml"))
    assert code == 3 and "missing.yaml" in out


RULES = """
rules:
  - name: errors-per-model
    type: threshold
    kinds: [error]
    group_by: modelregistry.model.name
    window: 5m
    condition: {op: ">", value: 3}
    severity: critical
    notify: []
  - name: errors-warn
    type: threshold
    kinds: [error]
    window: 5m
    condition: {op: ">", value: 100}
    notify: []
"""


def test_rule_reads_the_current_window(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(RULES)
    config = str(_config(tmp_path, "http://127.0.0.1:1", es_url, namespace, tmp_path / "rules"))
    code, out, _ = _run("rule", "errors-per-model", "--config", config)
    assert code == 0 and out.startswith("REGWATCH OK - errors-per-model: 0"), out
    now = time.time()
    index_events(es, namespace, "error", now - 30, 5, model="churn")
    index_events(es, namespace, "error", now - 30, 2, model="fraud")
    code, out, _ = _run("rule", "errors-per-model", "--config", config)
    assert code == 2 and "errors-per-model: 5.0 for churn (1 of 2 groups)" in out, out
    assert out.endswith("| value=5 groups_breaching=1;;;0"), out
    code, out, _ = _run("rule", "errors-warn", "--config", config)  # 7 is under the rule's 100
    assert code == 0 and "errors-warn: 7.0" in out, out
    code, out, _ = _run("rule", "errors-warn", "--config", config, "-w", "5", "-c", "10")
    assert code == 1 and "value=7;5;10" in out, out
    code, out, _ = _run("rule", "nosuch", "--config", config)
    assert code == 3 and "no rule 'nosuch'" in out
    dead = str(_config(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:1", namespace, tmp_path / "rules"))
    code, out, _ = _run("rule", "errors-warn", "--config", dead)
    assert code == 3 and "ConnectionError" in out, out


def test_the_real_zabbix_agent_runs_it_as_a_user_parameter(tmp_path: Path) -> None:
    agent = command("zabbix_agent2")
    regwatch = Path(sys.executable).with_name("regwatch")
    with registry_stub() as (url, stub):
        config = _config(tmp_path, url)
        conf = tmp_path / "zabbix_agent2.conf"
        conf.write_text("\n".join([
            "Server=127.0.0.1", "Hostname=regwatch-test", "LogType=console", "Timeout=15",  # as docs/monitoring.md
            f"ControlSocket={tmp_path / 'agent.sock'}", f"PidFile={tmp_path / 'agent.pid'}",
            f"UserParameter=regwatch.check[*],{regwatch} check $1 $2 --config {config}",
            f"UserParameter=regwatch.status[*],{regwatch} check $1 $2 --config {config} >/dev/null; echo $$?",
        ]) + "\n")

        def item(key: str) -> str:
            done = subprocess.run([agent, "-c", str(conf), "-t", key], capture_output=True, text=True, timeout=60,
                                  check=False)
            match = re.match(rf"^{re.escape(key)}\s+\[s\|(.*)\]$", done.stdout.strip())
            assert match, done.stdout + done.stderr
            return match.group(1)

        text = item("regwatch.check[target,mlflow]")
        assert PLUGIN_LINE.match(text) and text.startswith("REGWATCH OK - mlflow up"), text
        assert item("regwatch.status[target,mlflow]") == "0"
        stub.mode = "503"
        assert item("regwatch.check[target,mlflow]").startswith("REGWATCH CRITICAL - mlflow health down: http_5xx")
        assert item("regwatch.status[target,mlflow]") == "2"
        assert item("regwatch.status[target,nosuch]") == "3"


def test_rule_with_elasticsearch_down_is_unknown_naming_the_node(tmp_path: Path) -> None:
    """It was UNKNOWN with the HTTP library's nested exception text and no node named."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text("rules:\n  - {name: quiet, type: absence, notify: []}\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": ["http://elastic:hunter2@127.0.0.1:9"],
                                                        "request_timeout_s": 5}, "rules": {"folder": str(folder)}}))
    code, out, _ = _run("rule", "quiet", "--config", str(config))
    assert code == 3
    assert out == ("REGWATCH UNKNOWN - Elasticsearch at http://elastic:***@127.0.0.1:9: ConnectionError: "
                   "HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] "
                   "Connection refused")


def test_a_nul_or_escape_in_a_group_never_reaches_the_plugin_line() -> None:
    """The line as written: NUL ends it early for readers in C; ESC drives the operator's console."""
    from regwatch.cli.terminal import printable

    text = printable(line(Status.CRITICAL, "r: 1 for a\x00b\x1b[2J\x9b", ["value=1"]))
    assert text == r"REGWATCH CRITICAL - r: 1 for a\x00b\x1b[2J\x9b | value=1"


def test_a_header_variable_that_cannot_be_sent_is_unknown_naming_it_and_sends_nothing(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """It was ``UNKNOWN - SecretError: ...``: our exception's name in an operator's line."""
    monkeypatch.setenv("REG_TOKEN", "Bearer s3cret\x1b[2J")
    with registry_stub() as (url, stub):
        raw = {"elasticsearch": {"hosts": ["http://127.0.0.1:1"]},
               "probe": {"targets": [{"name": "mlflow", "url": f"{url}/health", "timeout_s": 1,
                                      "headers_from_env": {"Authorization": "REG_TOKEN"}}]}}
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(raw))
        code, out, _ = _run("target", "mlflow", "--config", str(config))
        requests = list(stub.requests)
    assert (code, out) == (3, "REGWATCH UNKNOWN - probe target mlflow: headers_from_env.Authorization: "
                              "environment variable REG_TOKEN holds a control character")
    assert requests == []
