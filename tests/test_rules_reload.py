"""Rule folders as a list (the built-ins addressable as ``builtin``), the runner reloading its
rules on SIGHUP and when a rule file changes, and silences listed and expired from the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elasticsearch import ApiError, Elasticsearch

from regwatch.config import load_config
from rules.cycle import Known
from rules.model import load_rules
from rules.silences import Silences
from rules.state import StateStore, alert_id

REGWATCH = [sys.executable, "-m", "regwatch.cli"]
BUILTIN_RULES = Path(__file__).resolve().parents[1] / "rules" / "builtin"


def rule_file(folder: Path, name: str, *rules: str, extra: str = "") -> Path:
    """A rule file of absence rules (each fires at once in an empty namespace), every second."""
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(f"  - {{name: {rule}, type: absence, window: 1s, interval: 1s, notify: []{extra}}}\n"
                   for rule in rules)
    path = folder / name
    path.write_text("rules:\n" + body)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REGWATCH, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


def config_file(tmp_path: Path, rules: dict, es_url: str = "http://127.0.0.1:9", namespace: str = "default") -> Path:
    path = tmp_path / "regwatch.yaml"
    path.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "rules": rules}))
    return path


# -- folders -------------------------------------------------------------------------------------


def test_two_folders_and_the_builtins_load_together(tmp_path: Path) -> None:
    rule_file(tmp_path / "team-a", "a.yaml", "team-a-one", "team-a-two")
    rule_file(tmp_path / "team-b", "b.yml", "team-b-one")
    config = config_file(tmp_path, {"folders": ["builtin", str(tmp_path / "team-a"), str(tmp_path / "team-b")]})
    builtin = [rule.name for rule in load_rules(BUILTIN_RULES)]
    assert builtin, "no built-in rules to load"
    settings = load_config(config)
    assert [r.name for r in load_rules(settings.rules.folder_paths)] == [*builtin, "team-a-one", "team-a-two",
                                                                         "team-b-one"]
    done = cli("rules", "validate", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{len(builtin) + 3} rules valid: ")
    # The default is the built-ins alone; the older `folder:` still means that folder alone.
    assert load_config(config_file(tmp_path, {})).rules.folder_paths == [BUILTIN_RULES]
    old = load_config(config_file(tmp_path, {"folder": str(tmp_path / "team-a")}))
    assert [r.name for r in load_rules(old.rules.folder_paths)] == ["team-a-one", "team-a-two"]


def test_a_rule_name_in_two_folders_is_one_line_naming_both_files(tmp_path: Path) -> None:
    first = rule_file(tmp_path / "team-a", "a.yaml", "shared", "team-a-only")
    second = rule_file(tmp_path / "team-b", "b.yaml", "shared")
    config = config_file(tmp_path, {"folders": [str(tmp_path / "team-a"), str(tmp_path / "team-b")]})
    for args in (["rules", "validate", "-c", str(config)], ["rules", "run", "--once", "-c", str(config)]):
        done = cli(*args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-1500:]
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert str(second) in errors[0] and str(first) in errors[0] and "'shared'" in errors[0], errors[0]


# -- reload --------------------------------------------------------------------------------------


def _wait(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _cycle_doc(es: Elasticsearch, index: str, rule: str) -> dict | None:
    try:
        return es.get(index=index, id=f"cycle:{rule}")["_source"]
    except ApiError:  # not there yet (or its index not ready yet)
        return None


@pytest.mark.elasticsearch
def test_the_runner_reloads_its_rules_on_sighup_and_on_change_and_keeps_them_on_a_broken_file(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path, daemons) -> None:
    folder = tmp_path / "rules"
    first = rule_file(folder, "a.yaml", "first", "later1")
    config = config_file(tmp_path, {"folder": str(folder), "metrics_port": None, "stale_after_s": 3},
                         es_url, namespace)
    log = tmp_path / "runner.log"
    with log.open("w") as stderr:
        proc = daemons.start([*REGWATCH, "rules", "run", "-c", str(config)], stderr=stderr)
    index = f"regwatch-alert-state-{namespace}"

    def alert() -> dict | None:
        try:
            return es.get(index=index, id=alert_id("first", "*"))["_source"]
        except ApiError:  # not there yet (or its index not ready yet)
            return None

    firing = _wait("rule first fires (nothing arrives)", lambda: (a := alert()) and a["state"] == "firing" and a)
    assert isinstance(firing, dict)

    # SIGHUP: the file read again (rewritten to the same size and time, so only the signal tells);
    # the new rule is evaluated, the one that stays keeps its alert.
    stat = first.stat()
    rule_file(folder, "a.yaml", "first", "second")
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc.send_signal(signal.SIGHUP)
    _wait("rule second evaluated after SIGHUP", lambda: _cycle_doc(es, index, "second"))
    assert proc.poll() is None, "SIGHUP ended the runner"
    kept = alert()
    assert kept is not None and kept["state"] == "firing" and kept["since"] == firing["since"], kept

    # A broken file (seen changed at the next look): one line naming the file and the key; the
    # rules in force stay.
    broken = folder / "c.yaml"
    broken.write_text("rules:\n  - {name: third, type: absence, window: forever, notify: []}\n")

    def complaints() -> list[str]:
        return [line for line in log.read_text().splitlines() if "rules_not_reloaded" in line]

    _wait("the broken file logged", complaints)
    time.sleep(6)  # a later look at the files: still one line, not one per look
    (line,) = complaints()
    assert str(broken) in line and "window" in line and "'third'" in line, line
    assert proc.poll() is None, "a broken rule file ended the runner"
    before = _cycle_doc(es, index, "second")
    assert before is not None
    _wait("rule second still evaluated", lambda: (d := _cycle_doc(es, index, "second")) and
          d["last_end"] > before["last_end"])
    assert _cycle_doc(es, index, "third") is None

    # A changed file, no signal: the fixed rules load.
    broken.unlink()
    rule_file(folder, "b.yaml", "fourth")
    _wait("rule fourth evaluated after the file changed", lambda: _cycle_doc(es, index, "fourth"))
    assert proc.poll() is None
    reloaded = [json.loads(line) for line in log.read_text().splitlines() if "rules_reloaded" in line]
    assert [(r["added"], r["removed"]) for r in reloaded] == [(["second"], ["later1"]), (["fourth"], [])], reloaded
    still = alert()
    assert still is not None and still["since"] == firing["since"], still


# -- silences ------------------------------------------------------------------------------------


@pytest.mark.elasticsearch
def test_silences_are_listed_and_expired_from_the_command_line(es: Elasticsearch, es_url: str, namespace: str,
                                                               tmp_path: Path) -> None:
    rule_file(tmp_path / "rules", "a.yaml", "first")
    config = config_file(tmp_path, {"folder": str(tmp_path / "rules")}, es_url, namespace)
    made = cli("rules", "silence", "first", "--for", "2h", "--label", "team=ml", "--reason", "upgrade window",
               "-c", str(config))
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.split()[0]
    assert silence_id.startswith("silence:")
    until = cli("rules", "silence", "first", "--until-resolved", "--group", "fraud", "-c", str(config))
    assert until.returncode == 0, until.stderr

    listed = cli("rules", "silences", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "2 silences in force", listed.stdout
    (timed,) = [line for line in lines if line.startswith(silence_id)]
    assert 'rule=first labels={"team": "ml"} group=* until=' in timed and 'reason="upgrade window"' in timed, timed
    assert any("group=fraud until resolved" in line for line in lines), listed.stdout

    store = StateStore(es, namespace)
    entry = {"labels": {"team": "ml"}, "payload": {"rule": "first", "group": "*", "state": "firing"}}
    known = Known()
    known.reset(Silences(store, known).listing(time.time()))
    assert Silences(store, known).mutes(entry, time.time())  # type: ignore[arg-type]

    ended = cli("rules", "unsilence", silence_id.removeprefix("silence:"), "-c", str(config))
    assert ended.returncode == 0 and ended.stdout.startswith(f"{silence_id} expired"), ended.stderr
    after = cli("rules", "silences", "-c", str(config))
    assert silence_id not in after.stdout and after.stdout.splitlines()[-1] == "1 silences in force", after.stdout
    every = cli("rules", "silences", "--expired", "-c", str(config))
    assert any(line.startswith(silence_id) and "ended(expired)" in line for line in every.stdout.splitlines()), \
        every.stdout
    known.reset(Silences(store, known).listing(time.time(), expired=True))
    assert not Silences(store, known).mutes(entry, time.time())  # type: ignore[arg-type]  # sent again

    again = cli("rules", "unsilence", silence_id, "-c", str(config))
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert again.returncode == 1 and len(errors) == 1 and silence_id in errors[0], again.stderr


_GONE = """
rules:
  - name: soon-gone
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    condition: {op: ">", value: 5}
    notify: [hook]
  - name: stays
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    condition: {op: ">", value: 5}
    notify: [hook]
"""


def test_a_firing_alert_of_a_rule_reloaded_away_resolves_and_says_so(es, namespace, tmp_path, webhook) -> None:
    """As Alertmanager resolves an alert Prometheus stopped sending: the alert does not stay
    firing forever in the state index, on the dashboards and in `regwatch top`."""
    from rules.runner import Runner
    from support.rules import T0, Receiver, index_events, write_rules

    rules = write_rules(tmp_path, _GONE)
    runner = Runner(es, rules, namespace, webhook, "a")
    index_events(es, namespace, "error", T0 + 30, 10)
    assert sorted(runner.cycle(now=T0 + 61).transitions) == [("soon-gone", "*", "firing"), ("stays", "*", "firing")]
    runner.replace_rules([rule for rule in rules if rule.name == "stays"])
    index_events(es, namespace, "error", T0 + 90, 10)
    report = runner.cycle(now=T0 + 121)
    assert report.transitions == [("soon-gone", "*", "resolved")] and report.evaluated == ["stays"]
    assert sorted((p["rule"], p["state"]) for p, _ in Receiver.received) == [
        ("soon-gone", "firing"), ("soon-gone", "resolved"), ("stays", "firing")]
    state = es.get(index=runner.store.index, id=alert_id("soon-gone", "*"))["_source"]
    assert state["state"] == "resolved" and "outbox" not in state
    index_events(es, namespace, "error", T0 + 150, 10)
    assert runner.cycle(now=T0 + 181).transitions == []  # retired: nothing more about it
    assert len(Receiver.received) == 3


def test_a_builtin_set_runs_only_when_named(tmp_path) -> None:
    """builtin/audit needs the audit receiver: it is not part of builtin, and is loaded when named."""
    plain = tmp_path / "plain.yaml"
    plain.write_text("rules: {folders: [builtin]}\n")
    named = tmp_path / "named.yaml"
    named.write_text("rules: {folders: [builtin, builtin/audit]}\n")
    names = {rule.name for rule in load_rules(load_config(plain).rules.folder_paths)}
    assert "audit-trail-silent" not in names and "registry-error-ratio" in names
    assert "audit-trail-silent" in {rule.name for rule in load_rules(load_config(named).rules.folder_paths)}
