"""What an ElastAlert 2 user expects of rules, on a real node: no blind spot for documents without
``event.ingested``, rules over any index with KQL or Query DSL, a dry run, payloads that say
enough, aggregation, PagerDuty and Opsgenie, rules that cannot be wrong quietly, one search per
cycle, group_by over several fields and spikes on a metric."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from elasticsearch import Elasticsearch
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.kql import KqlError, to_dsl
from rules.links import discover_url, rison
from rules.notify import OpsgenieTarget, PagerDutyTarget
from rules.runner import Runner
from rules.state import StateStore
from support.incidents import Opsgenie, PagerDuty
from support.rules import T0, Receiver, Requests, index_events, write_rules

CLI = [sys.executable, "-m", "regwatch.cli"]


def _config(tmp_path: Path, es_url: str, namespace: str, folder: Path, **rules) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
                                  "rules": {"folder": str(folder), "metrics_port": None, **rules}}))
    return config


def write_rules_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return write_rules(Path(tmp), text)[0]


def _raw(es: Elasticsearch, index: str, docs: list[dict]) -> None:
    operations = []
    for doc in docs:
        operations += [{"create": {"_index": index}}, doc]
    assert not es.bulk(operations=operations, refresh=True)["errors"]


# -- 1. no blind spot -----------------------------------------------------------------------------


ANY_ERROR = """
rules:
  - name: any-error
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    condition: {op: ">", value: 0}
    notify: [hook]
"""


def test_documents_without_event_ingested_are_counted_by_timestamp_once(es, es_url, namespace, tmp_path,
                                                                        webhook) -> None:
    stream = f"logs-modelregistry.error-{namespace}"
    ms = lambda t: int(t * 1000)  # noqa: E731
    _raw(es, stream, [{"@timestamp": ms(T0 + 30), "event": {"outcome": "failure"}}] * 12  # another shipper's
         + [{"@timestamp": ms(T0 - 3000), "event": {"outcome": "failure"}}] * 3  # old and unstamped: not this window
         + [{"@timestamp": ms(T0 - 3000), "event": {"ingested": ms(T0 + 30)}}] * 4  # late, stamped: this window
         + [{"@timestamp": ms(T0 + 30), "event": {"ingested": ms(T0 + 30)}}] * 5
         + [{"@timestamp": ms(T0 + 30), "event": {"ingested": ms(T0 + 90)}}] * 2)  # stamped later: next window
    runner = Runner(es, write_rules(tmp_path, ANY_ERROR), namespace, webhook, "a")
    assert runner.cycle(now=T0 + 61).transitions == [("any-error", "*", "firing")]
    assert Receiver.received[0][0]["value"] == 12 + 4 + 5  # each document once, by one of its times
    runner.cycle(now=T0 + 121)
    assert Receiver.received[-1][0]["state"] == "firing"  # the 2 stamped later: still firing, not re-counted
    assert runner.cycle(now=T0 + 181).transitions == [("any-error", "*", "resolved")]
    config = _config(tmp_path, es_url, namespace, tmp_path)
    status = subprocess.run([*CLI, "rules", "status", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert f"warning: 15 document(s) in logs-modelregistry.*-{namespace} have no event.ingested" in status.stderr
    setup = subprocess.run([*CLI, "setup", "-c", str(config)], capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    try:
        es.ingest.get_pipeline(id="regwatch-ingested")
        present = True
    except Exception:  # the integ-test zip has no ingest processors: no pipeline
        present = False
    assert ("ingest pipeline regwatch-ingested: in place" in setup.stderr) is present
    assert ("ingest pipeline regwatch-ingested: not in place" in setup.stderr) is not present


# -- 3. any index, KQL or Query DSL, any time field ------------------------------------------------


FOREIGN = """
rules:
  - name: filebeat-5xx
    type: threshold
    index: "filebeat-*-{ns},other-missing-*"
    kql: 'http.response.status_code >= 500 and not url.original:"/health"'
    time_field: "@timestamp"
    window: 60s
    interval: 60s
    condition: {{op: ">", value: 3}}
    notify: [hook]
  - name: agent-errors
    type: threshold
    index: "logs-nginx.error-{ns}"
    query: {{term: {{log.level: error}}}}
    window: 60s
    interval: 60s
    condition: {{op: ">=", value: 6}}
    notify: [hook]
"""


def test_rules_over_any_index_with_kql_dsl_and_their_time_field(es, namespace, tmp_path, webhook) -> None:
    es.indices.create(index=f"filebeat-8.19.0-{namespace}", mappings={"properties": {
        "http": {"properties": {"response": {"properties": {"status_code": {"type": "long"}}}}},
        "url": {"properties": {"original": {"type": "keyword"}}}}})
    ms = lambda t: int(t * 1000)  # noqa: E731
    _raw(es, f"filebeat-8.19.0-{namespace}",
         [{"@timestamp": ms(T0 + 10), "http": {"response": {"status_code": 502}}, "url": {"original": "/api"}}] * 4
         + [{"@timestamp": ms(T0 + 10), "http": {"response": {"status_code": 503}}, "url": {"original": "/health"}}] * 9
         + [{"@timestamp": ms(T0 + 10), "http": {"response": {"status_code": 200}}, "url": {"original": "/api"}}] * 9)
    # Elastic Agent's documents carry event.ingested: 3 on time, 3 five minutes late.
    es.indices.create(index=f"logs-nginx.error-{namespace}", mappings={"properties": {
        "log": {"properties": {"level": {"type": "keyword"}}},
        "event": {"properties": {"ingested": {"type": "date"}}}}})
    _raw(es, f"logs-nginx.error-{namespace}",
         [{"@timestamp": ms(T0 + 20), "event": {"ingested": ms(T0 + 20)}, "log": {"level": "error"}}] * 3
         + [{"@timestamp": ms(T0 - 300), "event": {"ingested": ms(T0 + 40)}, "log": {"level": "error"}}] * 3
         + [{"@timestamp": ms(T0 + 20), "event": {"ingested": ms(T0 + 20)}, "log": {"level": "info"}}] * 5)
    rules = write_rules(tmp_path, FOREIGN.format(ns=namespace))
    one, two = Runner(es, rules, namespace, webhook, "one"), Runner(es, rules, namespace, webhook, "two")
    first = one.cycle(now=T0 + 61)
    assert sorted(first.transitions) == [("agent-errors", "*", "firing"), ("filebeat-5xx", "*", "firing")]
    assert two.cycle(now=T0 + 61).transitions == []  # the runner beside it: nothing twice
    values = {p["rule"]: p["value"] for p, _ in Receiver.received}
    assert values == {"filebeat-5xx": 4, "agent-errors": 6}  # the health checks filtered out; late ones counted
    for runner in (one, two):
        runner.cycle(now=T0 + 121)
    assert sorted(p["rule"] for p, _ in Receiver.received if p["state"] == "resolved") == ["agent-errors",
                                                                                          "filebeat-5xx"]
    assert len(Receiver.received) == 4  # firing and resolved, each once


# -- 4. the dry run --------------------------------------------------------------------------------


def test_rules_test_prints_query_value_bound_and_transition_and_sends_nothing(es, es_url, namespace, tmp_path,
                                                                               webhook) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    write_rules(folder, ANY_ERROR.replace("notify: [hook]", "notify: [hook]\n    group_by: modelregistry.model.name"))
    index_events(es, namespace, "error", T0 + 30, 7, model="m-7")
    config = _config(tmp_path, es_url, namespace, folder,
                     notifiers={"hook": {"type": "webhook", "url": webhook["hook"].url}})
    StateStore(es, namespace).ensure()  # the state index exists, empty
    state = f"regwatch-alert-state-{namespace}"
    before = es.count(index=state)["count"]
    run = subprocess.run([*CLI, "rules", "test", "any-error", "--at", str(T0 + 61), "-c", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "window 2023-11-14T22:13:21.000Z .. 2023-11-14T22:14:21.000Z on event.ingested" in out
    query = json.loads(next(line for line in out.splitlines() if line.startswith("query "))[6:])
    assert query["aggs"]["groups"]["terms"]["field"] == "modelregistry.model.name"
    assert "threshold 0.0" in out
    assert "group=m-7 value=7.0 ok -> firing (would notify firing to hook)" in out
    assert Receiver.received == [] and es.count(index=state)["count"] == before
    bad = subprocess.run([*CLI, "rules", "test", "any-error", "--at", "yesterday", "-c", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--at 'yesterday'" in bad.stderr and "Traceback" not in bad.stderr
    for huge in ("inf", "nan", "1e400", "-5"):
        bad = subprocess.run([*CLI, "rules", "test", "any-error", "--at", huge, "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "not a time between 1970 and 9999" in bad.stderr, bad.stderr
    backtest = subprocess.run([*CLI, "rules", "backtest", "any-error", "--from", "1e400", "--to", str(T0), "-c",
                               str(config)], capture_output=True, text=True, timeout=60)
    assert backtest.returncode == 2 and "--from '1e400': not a time" in backtest.stderr, backtest.stderr
    missing = subprocess.run([*CLI, "rules", "test", "nope", "-c", str(config)], capture_output=True, text=True)
    assert missing.returncode == 1 and "no rule 'nope'" in missing.stderr


# -- 5. payloads that say enough, aggregation ------------------------------------------------------


DETAILED = """
rules:
  - name: errors-by-model-and-user
    type: threshold
    kinds: [error]
    group_by: [modelregistry.model.name, user.name]
    window: 60s
    interval: 60s
    condition: {op: ">=", value: 2}
    sample: {size: 2, fields: [user.name, modelregistry.model.name]}
    notify: [hook]
"""


def test_payload_has_window_query_samples_and_a_discover_link(es, namespace, tmp_path, webhook) -> None:
    index_events(es, namespace, "error", T0 + 30, 3, model="m1", user="alice")
    index_events(es, namespace, "error", T0 + 30, 2, model="m1", user="bob")
    index_events(es, namespace, "error", T0 + 30, 1, model="m2", user="alice")
    runner = Runner(es, write_rules(tmp_path, DETAILED), namespace, webhook, "a", kibana_url="https://kibana.example")
    report = runner.cycle(now=T0 + 61)
    assert sorted(g for _, g, _ in report.transitions) == ['["m1", "alice"]', '["m1", "bob"]']
    payload = next(p for p, _ in Receiver.received if p["groups"] == {"modelregistry.model.name": "m1",
                                                                        "user.name": "alice"})
    assert payload["value"] == 3
    assert payload["window"] == {"start": "2023-11-14T22:13:20.000Z", "end": "2023-11-14T22:14:20.000Z",
                                 "time_field": "event.ingested"}
    assert payload["index"] == f"logs-modelregistry.error-{namespace}"
    assert payload["events"] == [{"user": {"name": "alice"}, "modelregistry": {"model": {"name": "m1"}}}] * 2
    # The query in the payload selects exactly the alert's events when its group is added.
    found = es.count(index=payload["index"], query={"bool": {"filter": [
        payload["query"], {"term": {"user.name": "alice"}}, {"term": {"modelregistry.model.name": "m1"}}]}})
    assert found["count"] == 3
    link = unquote(payload["discover"])
    assert link.startswith("https://kibana.example/app/discover#/?_g=(time:(from:'2023-11-13T22:13:20.000Z',"
                           "to:'2023-11-14T22:14:20.000Z'))&_a=(")
    assert "dataSource:(dataViewId:regwatch-error,type:dataView)" in link
    assert "query:(term:(modelregistry.model.name:m1))" in link and "query:(term:(user.name:alice))" in link
    assert "(meta:(alias:'window on event.ingested',disabled:!f,negate:!f,type:custom)" in link


def test_aggregation_sends_the_notifications_of_a_period_together(es, namespace, tmp_path, webhook) -> None:
    rule = ANY_ERROR.replace("notify: [hook]", "notify: [hook]\n    group_by: modelregistry.model.name\n"
                             "    aggregation: 5m")
    runner = Runner(es, write_rules(tmp_path, rule), namespace, webhook, "a")
    start = 1_700_000_100.0  # a 5-minute boundary is at T0 + 300 (1_700_000_100 is 100 s after one)
    for minute, model in enumerate(("m1", "m2", "m3")):
        index_events(es, namespace, "error", start + 60 * minute + 30, 2, model=model)
        runner.cycle(now=start + 60 * minute + 61)
    assert Receiver.received == []  # held until the period ends (1_700_000_400)
    runner.cycle(now=1_700_000_401)  # catches up the windows ending at 340 and 400: m3 resolved at 341
    assert len(Receiver.received) == 1
    digest = Receiver.received[0][0]
    assert digest["state"] == "digest"
    assert sorted((a["group"], a["state"]) for a in digest["alerts"]) == [
        ("m1", "firing"), ("m1", "resolved"), ("m2", "firing"), ("m2", "resolved"), ("m3", "firing"),
        ("m3", "resolved")]
    assert runner.cycle(now=1_700_000_461).sent == []  # nothing left over


# -- 6. PagerDuty and Opsgenie ---------------------------------------------------------------------


def test_pagerduty_and_opsgenie_open_one_incident_and_close_it(es, namespace, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PD_KEY", "r" * 32)
    monkeypatch.setenv("OG_KEY", "og-secret")
    pd, og = PagerDuty("r" * 32), Opsgenie("og-secret")
    try:
        targets = {"pd": PagerDutyTarget(type="pagerduty", routing_key_env="PD_KEY", url=f"{pd.url}/v2/enqueue"),
                   "og": OpsgenieTarget(type="opsgenie", api_key_env="OG_KEY", url=og.url)}
        rule = ANY_ERROR.replace("notify: [hook]", "notify: [pd, og]\n    severity: critical\n"
                                 "    renotify: 60s\n    message: 'errors: {value}'")
        runner = Runner(es, write_rules(tmp_path, rule), namespace, targets, "a", kibana_url="https://k.example")
        index_events(es, namespace, "error", T0 + 30, 4)
        index_events(es, namespace, "error", T0 + 90, 4)
        runner.cycle(now=T0 + 61)
        runner.cycle(now=T0 + 121)  # still firing: a reminder, the same incident
        runner.cycle(now=T0 + 181)  # resolved
        assert pd.refused == [] and og.refused == []
        actions = [body["event_action"] for _, body in pd.requests]
        assert actions == ["trigger", "trigger", "resolve"]
        assert len({body["dedup_key"] for _, body in pd.requests}) == 1
        trigger = pd.requests[0][1]
        assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["summary"].endswith("errors: 4")
        assert trigger["links"][0]["href"].startswith("https://k.example/app/discover#/")
        assert [(i.status, i.count) for i in pd.incidents] == [("resolved", 2)]
        assert [path for path, _ in og.requests] == ["/v2/alerts", "/v2/alerts",
                                                     f"/v2/alerts/{quote(og.incidents[0].key, safe='')}/close"]
        assert og.requests[0][1]["priority"] == "P1" and og.requests[0][1]["alias"] == trigger["dedup_key"]
        assert [(i.status, i.count) for i in og.incidents] == [("closed", 2)]
        # A notification re-sent after a crash (same payload) lands in the open incident, not a new one.
        index_events(es, namespace, "error", T0 + 210, 4)
        runner.cycle(now=T0 + 241)
        firing = [p for p in runner.store.firing()]
        assert len(firing) == 1
        payload = {**trigger["payload"]["custom_details"], "severity": "critical", "at": T0 + 241, "since": T0 + 241,
                   "message": "errors: 4", "alert": trigger["dedup_key"]}
        targets["pd"].send(payload)
        targets["og"].send(payload)
        assert [(i.status, i.count) for i in pd.incidents] == [("resolved", 2), ("triggered", 2)]
        assert [(i.status, i.count) for i in og.incidents] == [("closed", 2), ("open", 2)]
    finally:
        pd.close()
        og.close()


# -- 7. rules that cannot be wrong quietly ---------------------------------------------------------


def test_a_rule_without_targets_fails_and_runner_ids_are_per_process(es, es_url, namespace, tmp_path,
                                                                     webhook) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text("rules:\n  - {name: quiet, type: absence, kinds: [error]}\n")
    config = _config(tmp_path, es_url, namespace, folder)
    for command in (["rules", "validate", str(folder)], ["rules", "run", "--once", "-c", str(config)]):
        run = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "Traceback" not in run.stderr
        assert f"{folder / 'r.yaml'}: rule 'quiet' notify: no notify: name the notifiers" in run.stderr
    (folder / "r.yaml").write_text("rules:\n  - {name: quiet, type: absence, kinds: [error], notify: [pager]}\n")
    run = subprocess.run([*CLI, "rules", "validate", "-c", str(config)], capture_output=True, text=True)
    assert run.returncode == 1 and "rule 'quiet': notify: unknown notifier 'pager'" in run.stderr
    (folder / "r.yaml").write_text("rules:\n  - {name: quiet, type: absence, kinds: [error], notify: []}\n")
    assert subprocess.run([*CLI, "rules", "validate", str(folder)], capture_output=True).returncode == 0
    pids = []
    for _ in range(2):
        run = subprocess.run([*CLI, "rules", "run", "--once", "-c", str(config)], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        pids.append(int(re.search(r'"runner": "[^"]*:(\d+)"', run.stderr).group(1)))
    status = subprocess.run([*CLI, "rules", "status", "-c", str(config)], capture_output=True, text=True)
    lines = [line for line in status.stdout.splitlines() if line.startswith("runner ")]
    assert len(lines) == 2 and all(line.endswith(" stopped") for line in lines), status.stdout
    assert {int(line.split()[1].rsplit(":", 1)[1]) for line in lines} == set(pids)


# -- 8. less load: one search per cycle, nothing when idle -----------------------------------------


def test_one_search_per_cycle_and_none_on_an_idle_wake_up(es_url, namespace, tmp_path) -> None:
    counting = Requests()
    client = counting.client(es_url, request_timeout=60)
    text = "rules:\n" + "".join(
        f"  - {{name: r{i}, type: threshold, kinds: [error], window: 60s, interval: 60s, notify: [],"
        f" condition: {{op: '>', value: 1000}}}}\n" for i in range(50))
    runner = Runner(client, write_rules(tmp_path, text), namespace, {}, "a")
    runner.cycle(now=T0 + 1)  # the first cycle: each rule's cycle document is created
    counting.paths.clear()
    report = runner.cycle(now=T0 + 61)
    assert len(report.evaluated) == 50
    assert counting.searches() == 1 and not any("_refresh" in p for _, p in counting.paths), counting.paths
    # bulk (the claims, refreshed; the cycle documents as this runner wrote them are not read
    # again), msearch, bulk (the heartbeat)
    assert len(counting.paths) == 3, counting.paths
    counting.paths.clear()
    for second in range(62, 120, 5):
        assert runner.cycle(now=T0 + second).idle
    assert counting.paths == []
    assert runner.wake_at() == pytest.approx(T0 + 121)


def test_building_a_runner_asks_nothing_of_elasticsearch_its_first_cycle_makes_the_state_index(
        es, es_url, namespace, tmp_path) -> None:
    counting = Requests()
    client = counting.client(es_url, request_timeout=60)
    rules = write_rules(tmp_path, "rules:\n  - {name: r, type: threshold, kinds: [error], notify: [],"
                                  " condition: {op: '>', value: 1000}}\n")
    runner = Runner(client, rules, namespace, {}, "a")
    assert counting.paths == []  # no I/O in a constructor
    assert not es.indices.exists(index=f"regwatch-alert-state-{namespace}")
    assert runner.cycle(now=T0 + 1).evaluated == ["r"]
    assert es.indices.exists(index=f"regwatch-alert-state-{namespace}")


# -- 9. group_by over several fields, spike on a metric --------------------------------------------


SPIKE = """
rules:
  - name: slow-spike
    type: spike
    kinds: [retrieval]
    aggregate: {function: avg, field: event.duration}
    group_by: [modelregistry.model.name, user.name]
    factor: 3
    min_events: 2
    window: 60s
    interval: 60s
    notify: [hook]
"""


def test_spike_on_an_average_per_two_fields(es, namespace, tmp_path, webhook) -> None:
    def retrievals(at: float, model: str, user: str, duration: int, count: int) -> None:
        _raw(es, f"logs-modelregistry.retrieval-{namespace}", [{
            "@timestamp": int(at * 1000), "event": {"ingested": int(at * 1000), "duration": duration},
            "modelregistry": {"model": {"name": model}}, "user": {"name": user}}] * count)

    for model, user in (("m1", "alice"), ("m1", "bob"), ("m2", "alice")):
        retrievals(T0 + 30, model, user, 1_000_000, 5)
    retrievals(T0 + 90, "m1", "alice", 4_000_000, 5)  # 4x slower on average, same count
    retrievals(T0 + 90, "m1", "bob", 1_500_000, 50)  # 10x the calls, barely slower: no spike on the average
    retrievals(T0 + 90, "m2", "alice", 1_000_000, 5)
    runner = Runner(es, write_rules(tmp_path, SPIKE), namespace, webhook, "a")
    runner.cycle(now=T0 + 61)
    report = runner.cycle(now=T0 + 121)
    assert report.transitions == [("slow-spike", '["m1", "alice"]', "firing")]
    payload = Receiver.received[0][0]
    assert payload["value"] == pytest.approx(4.0) and payload["groups"] == {"modelregistry.model.name": "m1",
                                                                            "user.name": "alice"}
    assert runner.cycle(now=T0 + 181).transitions == [("slow-spike", '["m1", "alice"]', "resolved")]
    # An ElastAlert-style grouped count over two fields fires per pair.
    pairs = write_rules(tmp_path, ANY_ERROR.replace("notify: [hook]", "notify: []\n    group_by: [modelregistry.model"
                                                    ".name, user.name]").replace("value: 0", "value: 1"))
    index_events(es, namespace, "error", T0 + 230, 2, model="a", user="x")
    index_events(es, namespace, "error", T0 + 230, 2, model="a", user="y")
    index_events(es, namespace, "error", T0 + 230, 1, model="b", user="x")
    fired = Runner(es, pairs, namespace, {}, "b").cycle(now=T0 + 241).transitions
    assert sorted(g for _, g, _ in fired) == ['["a", "x"]', '["a", "y"]']


# -- hostile input through the new paths ------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list('ab:*"\\()<>={} \x00\ud800\u202e\n') + [" or ", " and ", "not ", "é"]),
                max_size=40).map("".join))
def test_any_text_is_kql_or_a_kql_error_never_a_crash(text: str) -> None:
    try:
        dsl = to_dsl(text)
    except KqlError:
        return
    json.dumps(dsl)  # what the client will encode


def test_hostile_kql_and_a_range_beyond_long_are_refused_in_one_line(es, es_url, namespace, tmp_path) -> None:
    index = f"hostile-{namespace}"
    es.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    for kql in ("(" * 100 + "n:1", "n:\"unterminated", "x" * 10_001):
        with pytest.raises(KqlError):
            to_dsl(kql)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        f"rules:\n  - {{name: huge, type: threshold, index: {index}, kql: 'n > 1e999 or n:\"\\x00\"', notify: [],"
        " time_field: '@timestamp', condition: {op: '>', value: 0}}\n")
    config = _config(tmp_path, es_url, namespace, folder)
    run = subprocess.run([*CLI, "rules", "run", "--once", "-c", str(config)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "rule 'huge': kql: not a valid KQL query" in run.stderr
    (folder / "r.yaml").write_text("rules:\n  - {name: deep, type: threshold, notify: [], kql: '"
                                   + "(" * 60 + "a:1" + ")" * 60 + "', condition: {op: '>', value: 0}}\n")
    run = subprocess.run([*CLI, "rules", "validate", str(folder)], capture_output=True, text=True)
    assert run.returncode == 1 and "kql: not valid KQL: nested more than 40 levels deep" in run.stderr


def test_hostile_group_values_stay_inside_their_discover_filter() -> None:
    rule = write_rules_text("rules:\n  - {name: g, type: threshold, kinds: [error], group_by: user.name, notify: [],"
                            " condition: {op: '>', value: 0}}\n")
    hostile = "a'b!c),(x:!t)&_a=evil#\x00\u202e"
    link = discover_url("https://k.example", rule, T0, T0 + 60, hostile)
    assert "&_a=evil" not in link and "#" not in link.split("#/", 1)[1]
    encoded = unquote(link)
    assert "user.name:'a!'b!!c),(x:!!t)&_a=evil#\x00\u202e'" in encoded  # one quoted Rison string
    assert rison(hostile) == "'a!'b!!c),(x:!!t)&_a=evil#\x00\u202e'"
