"""The rule runner on a real node: fire, pending, resolve, once across runners, late data once,
delivery after the receiver returns. Events are indexed with controlled ingest times."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rules.model import RuleError, load_rules
from rules.notify import signature
from rules.runner import Runner
from support.rules import T0, THRESHOLD, Receiver, index_events, write_rules

RATIO = """
rules:
  - name: failing-share
    type: ratio
    kinds: [retrieval, error]
    numerator: 'event.outcome:failure'
    window: 60s
    interval: 60s
    condition: {op: ">", value: 0.05}
    recovery: {op: "<", value: 0.02}
    notify: [hook]
"""


def test_threshold_is_pending_for_its_duration_fires_once_and_resolves(es, namespace, tmp_path, webhook) -> None:
    runner = Runner(es, write_rules(tmp_path, THRESHOLD), namespace, webhook, "a")
    index_events(es, namespace, "error", T0 + 30, 10)
    first = runner.cycle(now=T0 + 61)  # window [T0, T0+60): 10 errors > 5: pending (for 120 s)
    assert first.transitions == [("many-errors", "*", "pending")] and not Receiver.received
    index_events(es, namespace, "error", T0 + 90, 10)
    assert runner.cycle(now=T0 + 121).transitions == []  # still pending: 60 s of 120
    index_events(es, namespace, "error", T0 + 150, 10)
    third = runner.cycle(now=T0 + 181)
    assert third.transitions == [("many-errors", "*", "firing")]
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]
    index_events(es, namespace, "error", T0 + 210, 3)  # 3: below the bound, above the recovery bound
    assert runner.cycle(now=T0 + 241).transitions == []  # no flapping: still firing, not re-sent
    assert runner.cycle(now=T0 + 301).transitions == [("many-errors", "*", "resolved")]  # 0 errors < 2
    states = [p["state"] for p, _ in Receiver.received]
    assert states == ["firing", "resolved"]
    payload, headers = Receiver.received[0]
    assert headers["x-regwatch-signature"] == signature("hook-secret", headers["raw"])
    assert payload["value"] == 10 and payload["threshold"] == 5 and payload["rule"] == "many-errors"
    es.indices.refresh(index=f"logs-modelregistry.alert-{namespace}")
    history = es.search(index=f"logs-modelregistry.alert-{namespace}", sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    assert [h["_source"]["event"]["action"] for h in history] == ["pending", "firing", "resolved"]
    ingested = [h["_source"]["event"].pop("ingested") for h in history]
    assert all(isinstance(i, str) for i in ingested)
    assert [h["_source"] for h in history] == [{
        "@timestamp": at,
        "ecs": {"version": "9.4.0"},
        "message": message,
        "data_stream": {"type": "logs", "dataset": "modelregistry.alert", "namespace": namespace},
        "event": {"kind": "alert", "dataset": "modelregistry.alert", "action": state, "type": [ecs_type],
                  "severity": 47, "reason": message},  # ECS: a number (warning: medium, Elastic Security's 47)
        "rule": {"id": "many-errors", "name": "many-errors", "ruleset": "regwatch"},
        "modelregistry": {"operation": "other", "alert": {"rule": "many-errors", "severity": "warning", "group": "*",
                                                          "state": state, "value": value, "threshold": 5.0}},
    } for at, state, ecs_type, value, message in (
        ("2023-11-14T22:14:21.000Z", "pending", "info", 10.0, "many-errors is pending: 10 (bound 5)"),
        ("2023-11-14T22:16:21.000Z", "firing", "start", 10.0, "many-errors is firing: 10 (bound 5)"),
        ("2023-11-14T22:18:21.000Z", "resolved", "end", 0.0, "many-errors resolved: 0 (bound 5)"))]


def test_two_runners_side_by_side_send_each_notification_once(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s"))
    runners = [Runner(es, rules, namespace, webhook, name) for name in ("a", "b")]
    index_events(es, namespace, "error", T0 + 30, 10)
    reports = []
    barrier = threading.Barrier(2)

    def run(runner: Runner) -> None:
        barrier.wait()
        reports.append(runner.cycle(now=T0 + 61))

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r.evaluated) for r in reports) == [0, 1]  # one claimed the cycle, one skipped it
    for runner in runners:  # later cycles of both: nothing new to send
        runner.cycle(now=T0 + 62)
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]


def test_receiver_down_then_back_gets_the_notification_once(es, namespace, tmp_path, webhook) -> None:
    runner = Runner(es, write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s")), namespace, webhook)
    index_events(es, namespace, "error", T0 + 30, 10)
    Receiver.up = False
    report = runner.cycle(now=T0 + 61)
    assert report.transitions == [("many-errors", "*", "firing")] and report.failed and not Receiver.received
    Receiver.up = True
    runner.cycle(now=T0 + 62)  # the retry is due after about a second: sent now or at the next cycle
    runner.cycle(now=T0 + 70)
    runner.cycle(now=T0 + 90)
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]
    keys = {h["x-regwatch-idempotency-key"] for _, h in Receiver.received}
    assert len(keys) == 1


def test_events_indexed_five_minutes_late_are_counted_once(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: downloads
    type: threshold
    kinds: [retrieval]
    window: 60s
    interval: 60s
    condition: {op: ">=", value: 1}
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    runner.cycle(now=T0 + 61)  # nothing yet
    # Events that happened at T0+10 (event time) reach Elasticsearch at T0+310: five minutes late.
    index_events(es, namespace, "retrieval", T0 + 310, 4, timestamp=T0 + 10)
    for minute in range(2, 9):
        runner.cycle(now=T0 + 1 + 60 * minute)
    values = [p["value"] for p, _ in Receiver.received if p["state"] == "firing"]
    assert values == [4]  # counted in exactly one window, the one in which they were ingested
    assert [p["state"] for p, _ in Receiver.received] == ["firing", "resolved"]


def test_match_rule_fires_once_per_event_with_a_deny_list(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: untrusted-download
    type: match
    kinds: [retrieval]
    interval: 60s
    terms: {modelregistry.model.name: fraud-detector}
    field: user.name
    allow: [alice, bob]
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    runner.cycle(now=T0 + 1)
    index_events(es, namespace, "retrieval", T0 + 20, 2, model="fraud-detector", user="alice")
    index_events(es, namespace, "retrieval", T0 + 30, 1, model="fraud-detector", user="mallory")
    index_events(es, namespace, "retrieval", T0 + 40, 1, model="other-model", user="mallory")
    runner.cycle(now=T0 + 62)
    runner.cycle(now=T0 + 123)
    fired = [p for p, _ in Receiver.received]
    assert len(fired) == 1 and fired[0]["state"] == "fired"
    assert fired[0]["event"]["user"]["name"] == "mallory"


def test_absence_fires_when_nothing_arrives_and_resolves_when_it_does(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: no-registrations
    type: absence
    kinds: [registration]
    window: 60s
    interval: 60s
    minimum: 1
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    assert runner.cycle(now=T0 + 61).transitions == [("no-registrations", "*", "firing")]  # no data at all
    index_events(es, namespace, "registration", T0 + 100, 1, action="registered-model-create")
    assert runner.cycle(now=T0 + 121).transitions == [("no-registrations", "*", "resolved")]


def test_rule_files_are_validated_with_file_rule_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("""
rules:
  - name: typo
    type: threshold
    condition: {op: "~", value: 5}
  - name: fine
    type: absence
    window: soon
""")
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert "bad.yaml: rule 'typo' condition.op" in message
    assert "bad.yaml: rule 'fine' window" in message


def test_builtin_rules_validate_and_run_one_cycle(es_url: str, namespace: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "validate", "rules/builtin"],
                        capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert ok.returncode == 0 and "10 rules valid" in ok.stdout
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace}))
    run = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "run", "--once", "-c", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1000:]
    assert "evaluated=10" in run.stdout  # one _msearch over the whole default set, the probe's rules included


def test_catch_up_after_an_absence_evaluates_each_missed_window_once(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s")
                        .replace("    recovery: {op: \"<\", value: 2}\n", ""))
    runner = Runner(es, rules, namespace, webhook)
    runner.cycle(now=T0 + 61)
    index_events(es, namespace, "error", T0 + 130, 10)  # in window [T0+120, T0+180)
    # The runner (or Elasticsearch) is away from T0+61 to T0+301: four windows missed.
    report = runner.cycle(now=T0 + 301)
    assert report.transitions == [("many-errors", "*", "firing"), ("many-errors", "*", "resolved")]
    assert runner.cycle(now=T0 + 302).transitions == []  # nothing evaluated twice
    assert [p["state"] for p, _ in Receiver.received] == ["firing", "resolved"]


def test_renotify_while_firing_and_silences(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s\n    renotify: 120s\n    labels: {team: ml}"))
    runner = Runner(es, rules, namespace, webhook)
    for minute in range(1, 6):
        index_events(es, namespace, "error", T0 + 60 * minute - 30, 10)
        runner.cycle(now=T0 + 60 * minute + 1)
    assert [p["state"] for p, _ in Receiver.received] == ["firing", "firing", "firing"]  # at 1, 3, 5 min
    keys = [h["x-regwatch-idempotency-key"] for _, h in Receiver.received]
    assert len(set(keys)) == 3  # each reminder is a notification of its own
    runner.silence("many-errors", labels={"team": "ml"}, until=T0 + 60 * 20)
    for minute in range(6, 9):
        index_events(es, namespace, "error", T0 + 60 * minute - 30, 10)
        runner.cycle(now=T0 + 60 * minute + 1)
    report = runner.cycle(now=T0 + 60 * 9 + 1)  # resolves, silenced too
    assert len(Receiver.received) == 3 and report.transitions == [("many-errors", "*", "resolved")]


def test_silence_until_resolved_ends_with_the_alert(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s"))
    runner = Runner(es, rules, namespace, webhook)
    runner.silence("many-errors", group="*")  # until resolved
    index_events(es, namespace, "error", T0 + 30, 10)
    runner.cycle(now=T0 + 61)
    runner.cycle(now=T0 + 121)  # resolved: silenced, and the silence ends
    index_events(es, namespace, "error", T0 + 150, 10)
    runner.cycle(now=T0 + 181)  # fires again: heard this time
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]


def test_a_stale_runner_is_reported_by_a_live_one_and_status_check(es, es_url, namespace, tmp_path, webhook) -> None:
    import subprocess
    import sys

    rules = write_rules(tmp_path, THRESHOLD)
    dead = Runner(es, rules, namespace, webhook, "runner-dead")
    dead.cycle(now=T0 + 61)
    live = Runner(es, rules, namespace, webhook, "runner-live", stale_after=120, stale_notify=["hook"])
    live.cycle(now=T0 + 121)
    assert not Receiver.received
    report = live.cycle(now=T0 + 241)  # runner-dead: last cycle 180 s ago > 120
    assert ("regwatch-runner-stale", "runner-dead", "firing") in report.transitions
    assert Receiver.received[-1][0]["group"] == "runner-dead"
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace}))
    status = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "status", "-c", str(config), "--check",
                             "--stale-after", "60"], capture_output=True, text=True)
    assert status.returncode == 1  # these runners last cycled in 2023: nobody is alive now
    assert "runner-live" in status.stdout and "runner-dead" in status.stdout
    live.cycle()  # a real cycle, now
    status = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "status", "-c", str(config), "--check",
                             "--stale-after", "60"], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    time.sleep(2.5)
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
                                  "rules": {"stale_after_s": 2}}))
    status = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "status", "-c", str(config), "--check"],
                            capture_output=True, text=True)
    assert status.returncode == 1 and "STALE" in status.stdout  # the configured 2 s, not a built-in 180 s


def test_rules_run_refuses_a_filter_elasticsearch_cannot_parse(es_url: str, namespace: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text("rules:\n"
                                   "  - {name: broken, type: absence, notify: [], filter: 'status:>500 AND ('}\n")
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
                                  "rules": {"folder": str(folder)}}))
    run = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "run", "--once", "-c", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "rule 'broken': filter: not a valid query string" in run.stderr


def test_spike_fires_when_the_window_triples_the_previous_one(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: download-spike
    type: spike
    kinds: [retrieval]
    window: 60s
    interval: 60s
    factor: 3
    min_events: 5
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    index_events(es, namespace, "retrieval", T0 + 30, 5)
    assert runner.cycle(now=T0 + 61).transitions == []  # the first window: nothing to compare with
    index_events(es, namespace, "retrieval", T0 + 90, 8)
    assert runner.cycle(now=T0 + 121).transitions == []  # 8 / 5: no spike
    index_events(es, namespace, "retrieval", T0 + 150, 30)
    assert runner.cycle(now=T0 + 181).transitions == [("download-spike", "*", "firing")]  # 30 / 8
    assert Receiver.received[0][0]["value"] == pytest.approx(30 / 8)


def test_anomaly_z_score_against_the_previous_windows(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: odd-traffic
    type: anomaly
    kinds: [access]
    window: 60s
    interval: 60s
    buckets: 6
    z: 3
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    for minute, count in enumerate([10, 12, 9, 11, 10, 12], start=1):  # a steady baseline
        index_events(es, namespace, "access", T0 + 60 * (minute - 1) + 30, count)
    assert runner.cycle(now=T0 + 60 * 6 + 1).transitions == []
    index_events(es, namespace, "access", T0 + 60 * 6 + 30, 40)
    report = runner.cycle(now=T0 + 60 * 7 + 1)
    assert report.transitions == [("odd-traffic", "*", "firing")]
    assert Receiver.received[0][0]["value"] > 3


def test_new_term_fires_once_for_a_user_never_seen(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: new-downloader
    type: new_term
    kinds: [retrieval]
    field: user.name
    terms: {modelregistry.model.name: fraud-detector}
    window: 60s
    interval: 60s
    lookback: 1d
    notify: [hook]
""")
    runner = Runner(es, rules, namespace, webhook)
    index_events(es, namespace, "retrieval", T0 + 10, 3, model="fraud-detector", user="alice")
    runner.cycle(now=T0 + 61)  # alice: new in this window (first ever)
    index_events(es, namespace, "retrieval", T0 + 70, 2, model="fraud-detector", user="alice")
    index_events(es, namespace, "retrieval", T0 + 80, 1, model="fraud-detector", user="mallory")
    runner.cycle(now=T0 + 121)
    runner.cycle(now=T0 + 181)
    users = [p["event"]["user.name"] for p, _ in Receiver.received]
    assert users == ["alice", "mallory"]


def test_change_fires_when_the_champion_alias_moves(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: champion-moved
    type: change
    kinds: [version]
    terms: {modelregistry.model.alias: champion}
    group_by: modelregistry.model.name
    field: modelregistry.model.version
    window: 1d
    interval: 60s
    notify: [hook]
""")

    def alias(model: str, version: str, at: float) -> None:
        es.index(index=f"logs-modelregistry.version-{namespace}", refresh=True, document={
            "@timestamp": int(at * 1000), "event": {"ingested": int(at * 1000), "action": "registered-model-alias-set"},
            "modelregistry": {"model": {"name": model, "version": version, "alias": "champion"}}})

    runner = Runner(es, rules, namespace, webhook)
    alias("fraud-detector", "1", T0 + 10)
    runner.cycle(now=T0 + 61)  # baseline: version 1
    alias("fraud-detector", "1", T0 + 70)
    runner.cycle(now=T0 + 121)  # set again to the same version: no change
    alias("fraud-detector", "2", T0 + 130)
    report = runner.cycle(now=T0 + 181)
    assert report.transitions == [("champion-moved", "fraud-detector", "changed")]
    (payload,) = [p for p, _ in Receiver.received]
    assert payload["event"] == {"modelregistry.model.version": "2", "previous": "1"}


def test_backtest_replays_history_without_writing_or_notifying(es, es_url, namespace, tmp_path, webhook) -> None:
    import subprocess
    import sys

    write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 60s"))
    for minute, count in [(1, 10), (2, 10), (3, 10), (4, 0), (5, 1)]:
        if count:
            index_events(es, namespace, "error", T0 + 60 * minute - 30, count)
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
                                  "rules": {"folder": str(tmp_path)}}))
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "backtest", "many-errors",
                             "--from", str(T0), "--to", str(T0 + 360), "-c", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-800:]
    states = [line.split()[1] for line in result.stdout.splitlines() if "group=" in line]
    assert states == ["pending", "firing", "resolved"]
    assert "fired 1 times" in result.stdout
    assert not Receiver.received
    assert not es.indices.exists(index=f"regwatch-alert-state-{namespace}")


def test_digest_sends_one_table_for_the_alerts_of_a_cycle(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, """
rules:
  - name: errors-by-model
    type: threshold
    kinds: [error]
    group_by: modelregistry.model.name
    window: 60s
    interval: 60s
    condition: {op: ">=", value: 3}
    notify: [digest]
""")
    target = webhook["hook"].model_copy(update={"digest": True})
    runner = Runner(es, rules, namespace, {"digest": target}, kibana_url="http://kibana:5601")
    for model in ("m1", "m2", "m3"):
        index_events(es, namespace, "error", T0 + 30, 4, model=model)
    report = runner.cycle(now=T0 + 61)
    assert len(report.transitions) == 3 and len(report.sent) == 3
    (digest,) = [p for p, _ in Receiver.received]
    assert digest["state"] == "digest" and len(digest["alerts"]) == 3
    assert digest["message"].splitlines()[0] == "| state | rule | group | value | bound |"
    assert {a["group"] for a in digest["alerts"]} == {"m1", "m2", "m3"}
    assert digest["alerts"][0]["dashboard"].startswith("http://kibana:5601/app/dashboards#/view/regwatch-dashboard-alerts")


def test_ratio_fires_above_and_resolves_below_the_recovery_bound(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, RATIO)
    runner = Runner(es, rules, namespace, webhook)
    index_events(es, namespace, "retrieval", T0 + 30, 90)
    index_events(es, namespace, "error", T0 + 30, 10)  # 10 %
    assert runner.cycle(now=T0 + 61).transitions == [("failing-share", "*", "firing")]
    index_events(es, namespace, "retrieval", T0 + 90, 97)
    index_events(es, namespace, "error", T0 + 90, 3)  # 3 %: below the bound, above recovery
    assert runner.cycle(now=T0 + 121).transitions == []
    index_events(es, namespace, "retrieval", T0 + 150, 100)  # 0 %
    assert runner.cycle(now=T0 + 181).transitions == [("failing-share", "*", "resolved")]
    assert [round(p["value"], 2) for p, _ in Receiver.received] == [0.1, 0.0]



def test_a_ratio_over_too_few_events_does_not_fire(es, namespace, tmp_path, webhook) -> None:
    """One failed call out of one is not a 100 % error rate (min_events; the demo fired on it at start)."""
    rules = write_rules(tmp_path, RATIO.replace("    window:", "    min_events: 20\n    window:"))
    runner = Runner(es, rules, namespace, webhook)
    index_events(es, namespace, "error", T0 + 30, 1)  # 1 of 1
    assert runner.cycle(now=T0 + 61).transitions == []
    index_events(es, namespace, "retrieval", T0 + 90, 18)
    index_events(es, namespace, "error", T0 + 90, 2)  # 2 of 20: enough events, 10 %
    assert runner.cycle(now=T0 + 121).transitions == [("failing-share", "*", "firing")]
    assert [round(p["value"], 2) for p, _ in Receiver.received] == [0.1]

class Crash(BaseException):
    """A runner process dying in the middle of a cycle (a BaseException, like SystemExit: a death, not an
    error a notifier could raise, which the runner isolates)."""


def test_runner_dying_mid_cycle_leaves_the_notification_to_the_next_one(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s"))
    dying_target = webhook["hook"].model_copy()
    object.__setattr__(dying_target, "send", lambda payload: (_ for _ in ()).throw(Crash()))
    dying = Runner(es, rules, namespace, {"hook": dying_target}, "runner-a")
    index_events(es, namespace, "error", T0 + 30, 10)
    with pytest.raises(Crash):
        dying.cycle(now=T0 + 61)  # decided "firing", claimed the outbox, died while sending
    survivor = Runner(es, rules, namespace, webhook, "runner-b")
    survivor.cycle(now=T0 + 70)  # the claim of the dead runner still holds
    assert not Receiver.received
    survivor.cycle(now=T0 + 100)  # claim expired: delivered
    survivor.cycle(now=T0 + 110)
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]


def test_an_aggregate_without_its_field_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""
rules:
  - name: slow
    type: threshold
    aggregate: {function: percentile, percentile: 95}
    condition: {op: ">", value: 1}
""")
    with pytest.raises(RuleError, match="rule 'slow' aggregate: percentile needs a field"):
        load_rules(tmp_path)


class _Broken:
    """A notifier with a bug: raises what no delivery code expects."""

    digest = False

    def send(self, payload: dict) -> None:
        raise RuntimeError("notifier bug")


def test_one_broken_notifier_does_not_stop_the_others(es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, THRESHOLD.replace("for: 120s", "for: 0s").replace("[hook]", "[broken, hook]"))
    runner = Runner(es, rules, namespace, {"broken": _Broken(), **webhook}, "a")
    index_events(es, namespace, "error", T0 + 30, 10)
    report = runner.cycle(now=T0 + 61)
    assert [p["state"] for p, _ in Receiver.received] == ["firing"]
    assert report.failed  # the broken target's share stays queued for a retry, with its error
    assert runner.cycle(now=T0 + 62).sent == []  # the webhook is not sent again


def test_templates_and_notifier_names_are_checked_when_rules_load(tmp_path: Path) -> None:
    from rules.model import check_notifiers

    for template in ("{group:d}", "{rule.__class__}", "{nope}"):
        (tmp_path / "rules.yaml").write_text(THRESHOLD + f"    message: '{template}'\n")
        with pytest.raises(RuleError, match="message"):
            load_rules(tmp_path)
    rules = write_rules(tmp_path, THRESHOLD)
    with pytest.raises(RuleError, match="unknown notifier 'hook'"):
        check_notifiers(rules, {"slack"})
    check_notifiers(rules, {"hook"})
    with pytest.raises(RuleError, match="no such folder"):
        load_rules(tmp_path / "missing")
    (tmp_path / "bad.yaml").write_bytes(b"rules: \xff\n")
    with pytest.raises(RuleError, match="not UTF-8"):
        load_rules(tmp_path)
    (tmp_path / "bad.yaml").write_text("rules: []\nrules: []\n")
    with pytest.raises(RuleError, match="duplicate key 'rules'"):
        load_rules(tmp_path)


SAME_HISTORY = """
rules:
  - name: errors-per-model
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    for: 60s
    group_by: modelregistry.model.name
    condition: {op: ">", value: 4}
    recovery: {op: "<", value: 2}
    notify: []
  - name: error-spike
    type: spike
    kinds: [error]
    window: 60s
    interval: 60s
    factor: 3
    min_events: 2
    notify: []
  - name: deny-user
    type: match
    kinds: [error]
    interval: 60s
    field: user.name
    deny: [mallory]
    notify: []
"""


def test_backtest_and_live_evaluation_take_the_same_transitions(es, es_url, namespace, tmp_path) -> None:
    """One history, two evaluations: the runner cycle by cycle, and the backtest over the span."""
    from rules.backtest import backtest

    rules = write_rules(tmp_path, SAME_HISTORY)
    pattern = [(0, 1, "m1"), (1, 6, "m1"), (2, 7, "m1"), (3, 8, "m2"), (4, 1, "m1"), (5, 9, "m2"), (6, 0, "m1"),
               (7, 2, "m2"), (8, 30, "m1"), (9, 1, "m1")]
    for minute, count, model in pattern:
        if count:
            index_events(es, namespace, "error", T0 + minute * 60 + 20, count, model=model,
                         user="mallory" if minute in (2, 8) else "alice")
    live: dict[str, list[tuple[str, str]]] = {r.name: [] for r in rules}
    runner = Runner(es, rules, namespace, {}, "live")
    for k in range(1, 12):
        for name, group, state in runner.cycle(now=T0 + k * 60 + 1.0).transitions:  # SETTLE_S: windows end at T0+k*60
            live[name].append((group, state))
    for rule in rules:
        replayed = [(t.group, t.state) for t in backtest(es, rule, namespace, T0, T0 + 11 * 60)]
        assert replayed == live[rule.name], rule.name
    assert ("m1", "firing") in live["errors-per-model"] and ("m1", "resolved") in live["errors-per-model"]
    assert [s for _, s in live["error-spike"]].count("firing") >= 1
    assert len(live["deny-user"]) == 7 + 30  # each of mallory's events, once


def test_every_rule_model_has_a_registered_type() -> None:
    from rules.model import RULE_TYPE_NAMES
    from rules.types import RULE_TYPES

    assert set(RULE_TYPES) == set(RULE_TYPE_NAMES)
