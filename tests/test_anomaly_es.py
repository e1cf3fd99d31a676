"""The anomaly rule on a real node: the runner and ``rules backtest`` take the same transitions
on the same history, one search per cycle, and the notification says what was observed against
what was expected."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

from rules.backtest import backtest, dry_run
from rules.runner import Runner
from support.rules import T0, Receiver, write_rules
from support.shipping import write_config

BASE = math.floor(T0 / 3600) * 3600  # buckets of a minute, on the minute
SPIKE = 440  # the minute of the spike

RULE = """
rules:
  - name: odd-traffic
    type: anomaly
    kinds: [access]
    window: 60s
    interval: 60s
    history: 8h
    learning: 120
    notify: [hook]
"""


def traffic() -> list[int]:
    """Requests per minute: about ten, a spike of 90 at minute SPIKE."""
    rng = random.Random(11)
    counts = [rng.randint(7, 13) for _ in range(480)]
    counts[SPIKE] = 90
    return counts


def index_traffic(es, namespace: str, counts: list[int]) -> None:
    operations: list[dict] = []
    for minute, count in enumerate(counts):
        for i in range(count):
            at = int((BASE + minute * 60 + i * 59 / count) * 1000)  # within the minute
            operations += [{"create": {"_index": f"logs-modelregistry.access-{namespace}"}},
                           {"@timestamp": at, "event": {"ingested": at, "action": "artifact-download"},
                            "user": {"name": "alice"}}]
    es.bulk(operations=operations, refresh=True)


def test_backtest_and_live_take_the_same_transitions_and_the_notification_explains(
        es, namespace, tmp_path, webhook) -> None:
    rules = write_rules(tmp_path, RULE)
    index_traffic(es, namespace, traffic())
    runner = Runner(es, rules, namespace, webhook)
    first, last = SPIKE - 10, SPIKE + 30
    live = []
    for minute in range(first, last + 1):
        now = BASE + minute * 60 + 5  # the bucket of minute-1 is the last complete one
        live += [(now, group, state) for _rule, group, state in runner.cycle(now=now).transitions]
    replayed = backtest(es, rules[0], namespace, BASE + first * 60 + 5 - 60, BASE + last * 60 + 5)
    assert [(t.at, t.group, t.state) for t in replayed] == live
    fired = BASE + (SPIKE + 1) * 60 + 5  # the spike's bucket completes at minute SPIKE + 1
    assert live[0] == (fired, "*", "firing")
    assert [state for _at, _group, state in live] == ["firing", "resolved"]
    payload = Receiver.received[0][0]
    assert payload["state"] == "firing" and payload["value"] >= 40
    event = payload["event"]
    assert event["observed"] == 90 and event["learning"] is False
    assert event["lower"] <= event["expected"] <= event["upper"] < 90
    assert event["score"] == payload["value"]
    assert event["bucket"]["end"].startswith("20")
    assert "90 where" in payload["message"] and "was expected" in payload["message"]


def test_rules_test_shows_the_observed_value_against_the_expected_band_and_the_score(
        es, es_url, namespace, tmp_path) -> None:
    index_traffic(es, namespace, traffic())
    rules = write_rules(tmp_path, RULE)
    (tmp_path / "config").mkdir()
    config = write_config(tmp_path / "config" / "c.yaml", es_url, namespace, [str(tmp_path / "*.log")],
                          rules={"folder": str(tmp_path)})
    at = BASE + (SPIKE + 1) * 60 + 5  # the spike's bucket is the last complete one
    [row] = dry_run(es, rules[0], namespace, at).rows
    detail = row.detail
    assert detail is not None and detail["observed"] == 90.0 and detail["upper"] < 90.0 <= detail["observed"]
    assert (row.group, row.value, row.state, row.next_state, row.notify) == ("*", detail["score"], "ok", "firing",
                                                                              "firing")
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("ES_URL", None)  # the config names the node
    done = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "test", "odd-traffic", "-c", str(config),
                           "--at", str(at)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    r = round
    assert (f"group=* value={r(row.value, 4)} observed=90.0 expected={r(detail['expected'], 4)} "
            f"band=[{r(detail['lower'], 4)}, {r(detail['upper'], 4)}] score={r(detail['score'], 4)} ok -> firing "
            "(would notify firing to hook)") in done.stdout.splitlines(), done.stdout
