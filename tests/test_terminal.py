"""Terminal control sequences in log data never reach the operator's terminal or a plugin line.

A model name from an unauthenticated GET (``name=%1b]8;;https://...``) is shipped by the real
shipper into the real Elasticsearch; heartbeats, runner and alert documents carry the same text.
Every command that shows such data (``top``, ``status``, ``status --all``, ``rules status``,
``rules test``, ``rules backtest``, ``check rule``) must print it escaped (``\\x1b``), never raw:
an OSC 8 link, a cleared screen, a window title, a CR overwriting the line, a NUL ending a Nagios
line for C readers, a C1 CSI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from pipeline import heartbeat
from regwatch.cli.terminal import printable
from regwatch.config import load_config
from regwatch.ship import build_shipper
from rules.state import StateStore, Versioned
from support.shipping import write_config

CLI = [sys.executable, "-m", "regwatch.cli"]
LINK = "\x1b]8;;https://evil\x1b\\click\x1b]8;;\x1b\\"
HOSTILE = f"{LINK} \x1b[2J \x1b]0;title\x07 a\rb a\x00b a\x9bb"
# What must never leave: ESC, CR, NUL, BEL and the C1 CSI (U+009B, two bytes in UTF-8).
RAW = (b"\x1b", b"\r", b"\x00", b"\x07", "\x9b".encode())
SHOWN = r"\x1b]8;;https://evil\x1b\click\x1b]8;;\x1b\ \x1b[2J \x1b]0;title\x07"
FILE_NAME = "acc\x1b[2J\x1b]0;t\x07\r\x9b.log"  # no NUL: a file name cannot hold one


def test_printable_escapes_every_control_and_keeps_text() -> None:
    assert printable(HOSTILE) == SHOWN + r" a\x0db a\x00b a\x9bb"
    assert printable("\t\n\x7f\x80\x9f\ud800\u202e") == r"\x09\x0a\x7f\x80\x9f\ud800\u202e"
    assert printable("café [/red] 日本 \\ ~") == "café [/red] 日本 \\ ~"
    assert printable(3.5) == "3.5" and printable(None) == "None"


def _line(when: float, model: str) -> str:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'10.0.0.1 - - [{stamp}] "GET /api/2.0/mlflow/registered-models/get?name={urllib.parse.quote(model)} '
            f'HTTP/1.1" 200 10 "-" "client" rt=0.010 uct="0.000" urt="0.010"\n')


RULES = """
rules:
  - name: busy-model
    type: threshold
    kinds: [retrieval]
    group_by: modelregistry.model.name
    window: 10m
    interval: 1m
    condition: {op: ">", value: 0}
    severity: critical
    notify: []
"""


@pytest.fixture(scope="module")
def world(es: Elasticsearch, es_url: str, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One namespace holding the hostile text everywhere a command reads it; the config's path."""
    namespace = "term" + uuid.uuid4().hex[:10]
    tmp = tmp_path_factory.mktemp("terminal")
    logs = tmp / "logs"
    logs.mkdir()
    now = time.time()
    (logs / FILE_NAME).write_text(_line(now - 30, HOSTILE) + _line(now - 20, HOSTILE))
    (tmp / "rules").mkdir()
    (tmp / "rules" / "r.yaml").write_text(RULES)
    config = write_config(tmp / "c.yaml", es_url, namespace, [str(logs / "*.log")])
    raw = yaml.safe_load(config.read_text())
    raw["rules"] = {"folder": str(tmp / "rules")}
    config.write_text(yaml.safe_dump(raw))
    summary = build_shipper(load_config(config)).run(once=True)
    assert summary.events == 2

    es.index(index=f"metrics-modelregistry.availability-{namespace}", op_type="create", refresh=True, document={
        "@timestamp": datetime.fromtimestamp(now - 10, UTC).isoformat(),
        "modelregistry": {"probe": {"up": False, "check": "health", "target": HOSTILE}}, "error": {"type": HOSTILE}})
    store = StateStore(es, namespace)
    store.ensure()
    store.write(Versioned("alert:hostile", {}), {"type": "alert", "rule": HOSTILE, "group": HOSTILE, "state": "firing",
                                                 "since": now - 5, "value": 3.0})
    store.write(Versioned("runner:hostile", {}), {"type": "runner", "runner": HOSTILE, "last_cycle": now, "lag": 0.0,
                                                  "rules": 1, "updated": now, "state": "running"})
    # Damaged or forged numbers (the mapping coerces a numeric string; lag is not mapped at all).
    store.write(Versioned("runner:forged", {}), {"type": "runner", "runner": "forged", "last_cycle": "1e9", "lag": "x",
                                                 "state": "running"})
    store.write(Versioned("alert:forged", {}), {"type": "alert", "rule": "forged", "group": "g", "state": "firing",
                                                "since": "12", "value": 1.0})
    heartbeat.ensure(es, namespace)
    es.index(index=heartbeat.index_name(namespace), id="shipper:hostile", refresh=True, document={
        "type": "shipper", "shipper_id": HOSTILE, "host": {"name": HOSTILE}, "updated": now, "every_s": 3600,
        "state": "running", "files_count": HOSTILE, "behind_bytes": 0, "events": 2, "dead_letters": 0})
    es.indices.refresh(index=f"*-modelregistry.*-{namespace},{store.index}")
    yield namespace, config


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "PATH": "/usr/bin:/bin"}
    env.pop("ES_URL", None)  # the config names the node
    return subprocess.run([*CLI, *args], capture_output=True, timeout=120, env=env)  # bytes: CR kept as it came


def _safe(done: subprocess.CompletedProcess, code: int = 0) -> str:
    both = done.stdout + done.stderr
    assert done.returncode == code, both.decode(errors="replace")[-2000:]
    for raw in RAW:
        assert raw not in both, (raw, both[-2000:])
    assert b"Traceback" not in both and b"unexpected" not in both
    return done.stdout.decode()


def test_top(world: tuple[str, Path]) -> None:
    namespace, config = world
    out = _safe(_run("top", "--once", "--namespace", namespace, "-c", str(config)))
    assert out.count(SHOWN) >= 3, out  # the model, the target and the alert's rule and group
    assert f"down ({SHOWN}" in out and "forged" in out


def test_status_of_the_checkpoint(world: tuple[str, Path]) -> None:
    _, config = world
    out = _safe(_run("status", "-c", str(config)))
    assert r"acc\x1b[2J\x1b]0;t\x07\x0d\x9b.log" in out, out


def test_status_of_every_shipper(world: tuple[str, Path]) -> None:
    _, config = world
    out = _safe(_run("status", "--all", "-c", str(config)))
    assert out.count(SHOWN) >= 3, out  # shipper, host and a forged count


def test_rules_status(world: tuple[str, Path]) -> None:
    _, config = world
    out = _safe(_run("rules", "status", "-c", str(config)))
    assert f"runner {SHOWN}" in out and f"firing {SHOWN}" in out, out
    assert "runner forged last_cycle=" in out and "lag=nans STALE" in out, out


def test_rules_test(world: tuple[str, Path]) -> None:
    _, config = world
    out = _safe(_run("rules", "test", "busy-model", "-c", str(config)))
    assert f"group={SHOWN} a\\x0db a\\x00b a\\x9bb value=2.0 ok -> firing" in out, out


def test_rules_backtest(world: tuple[str, Path]) -> None:
    _, config = world
    now = time.time()
    out = _safe(_run("rules", "backtest", "busy-model", "--from", str(int(now - 600)), "--to", str(int(now + 120)),
                     "-c", str(config)))
    assert f"firing   group={SHOWN}" in out, out


def test_check_rule_plugin_line(world: tuple[str, Path]) -> None:
    _, config = world
    done = _run("check", "rule", "busy-model", "--config", str(config))
    out = _safe(done, code=2)
    assert out.count("\n") == 1 and out.startswith("REGWATCH CRITICAL - busy-model: 2.0 for "), out
    assert SHOWN in out and r"a\x00b a\x9bb" in out, out


def test_logging_writes_to_stderr_as_it_is_now_not_as_it_was_when_set_up(monkeypatch) -> None:
    """A command run in-process leaves no logger bound to a stream closed since (an in-process
    --help made a later test fail with 'I/O operation on closed file')."""
    import io
    import sys

    import structlog

    from regwatch.logging import configure

    saved = structlog.get_config()
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stderr", first)
        configure("INFO", json=True)
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        structlog.get_logger("t").info("after_the_swap", n=1)
    finally:
        structlog.configure(**saved)
    line = second.getvalue().strip()
    assert '"event": "after_the_swap"' in line and '"n": 1' in line and '"level": "info"' in line
