"""The ``regression`` and ``stale_usage`` rule types (#30 item 4) and their built-in rules for
``champion`` (rules/builtin/models.yaml): against a real MLflow server driven by the real client,
its inventory written by the real collector and its downloads (gunicorn's access log) named by
the attribution table, the rules run live (two runners), in ``rules backtest`` and ``rules test``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from contract.timestamps import iso_from_epoch
from pipeline.attribution import load_table
from pipeline.inventory.collector import Collector
from pipeline.inventory.settings import InventorySettings
from rules.backtest import backtest, dry_run
from rules.model import RegressionRule, RuleError, StaleUsageRule, load_rules
from rules.promotion import Regression
from rules.query import Window
from rules.runner import Runner
from rules.staleness import group_of
from support.mlflow_registry import mlflow_registry  # noqa: F401  (the registry fixture)
from support.parsing import parse_file
from support.rules import Receiver, Requests, webhook  # noqa: F401  (a fixture)

mlflow = pytest.importorskip("mlflow")

BUILTIN = Path(__file__).resolve().parents[1] / "rules" / "builtin" / "models.yaml"


# A rule of one's own beside the built-ins: told when a version is registered worse than champion.
REGISTERED = """
rules:
  - name: m-registered-worse
    type: regression
    alias: champion
    metric: accuracy
    changes: [registered]
    terms: {modelregistry.model.name: m}
    notify: [hook]
"""


def rule_folder(tmp_path: Path, after: str = "2s") -> Path:
    """The built-in rules as shipped, told to the test's receiver, with a grace of ``after``, and
    :data:`REGISTERED`."""
    text = BUILTIN.read_text().replace("notify: []", "notify: [hook]").replace("after: 1h", f"after: {after}")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "models.yaml").write_text(text)
    (tmp_path / "rules" / "registered.yaml").write_text(REGISTERED)
    return tmp_path / "rules"


def test_the_builtin_rules_load_as_documented() -> None:
    rules = {rule.name: rule for rule in load_rules(BUILTIN.parent)}
    regression, stale = rules["champion-regression"], rules["champion-stale-usage"]
    assert isinstance(regression, RegressionRule) and isinstance(stale, StaleUsageRule)
    assert (regression.alias, regression.metric, regression.greater_is_better, regression.changes,
            regression.lookback, regression.kinds) == ("champion", "accuracy", True, ["moved"], 86400.0,
                                                        ["change", "inventory"])
    assert (stale.alias, stale.after, stale.window, stale.kinds, stale.client_field) == (
        "champion", 3600.0, 600.0, ["change", "retrieval"], "source.ip")


def _change_hit(doc_id: str, at: str, action: str, version: str, alias: str | None = None,
                previous: str | None = None) -> dict[str, Any]:
    model = {"name": "m", "version": version, **({"alias": alias} if alias else {})}
    change = {"current": version, "previous": previous} if alias else {}
    return {"_id": doc_id, "_source": {"@timestamp": at, "event": {"action": action},
                                       "modelregistry": {"registry": "reg", "model": model, "change": change}}}


def _state_bucket(version: str, accuracy: float | None) -> dict[str, Any]:
    inventory = {"metrics": {"accuracy": accuracy}} if accuracy is not None else {}
    return {"latest": {"hits": {"hits": [{"_source": {"modelregistry": {
        "registry": "reg", "model": {"name": "m", "version": version}, "inventory": inventory}}}]}}}


def _regression_response(judged: list[dict[str, Any]], history: list[dict[str, Any]],
                         accuracy: dict[str, float | None]) -> dict[str, Any]:
    return {"hits": {"hits": judged}, "aggregations": {
        "moves": {"models": {"buckets": [{"latest": {"hits": {"hits": history}}}]}},
        "versions": {"keys": {"buckets": [_state_bucket(v, a) for v, a in accuracy.items()]}}}}


def test_a_registration_is_judged_against_the_version_the_alias_held_before_the_window() -> None:
    """The holder comes from the alias's history (the aggregation), the change from the hits;
    a change whose metric the inventory has not read yet fires nothing (judged next cycle)."""
    rule = RegressionRule.model_validate({"name": "r", "type": "regression", "metric": "accuracy",
                                          "min_absolute_change": 0.01, "notify": []})
    kind, window = Regression(), Regression().window_at(rule, 1_800_000_000.0)
    moved = _change_hit("c1", "2026-12-01T00:00:00Z", "alias-set", "2", "champion", "1")
    registered = _change_hit("c2", "2026-12-05T00:00:00Z", "model-version-created", "3")
    unknown = kind.measure(rule, _regression_response([registered], [moved], {"2": 0.9, "3": None}), window)
    assert unknown == []
    [found] = kind.measure(rule, _regression_response([registered], [moved], {"2": 0.9, "3": 0.905}), window)
    assert found.group == "c2" and found.value == 1.0
    assert found.events == ({
        "_id": "c2", "@timestamp": "2026-12-05T00:00:00Z", "event": {"action": "model-version-created"},
        "modelregistry": {"registry": "reg", "model": {"name": "m", "alias": "champion", "version": "3"},
                          "regression": {
                              "change": "registered", "metric": "accuracy", "greater_is_better": True,
                              "version": "3", "value": 0.905, "previous_version": "2", "previous_value": 0.9,
                              "reasons": ["accuracy 0.905 does not improve on 0.9 by 0.01"],
                              "summary": "m: registered version 3, worse than version 2 (champion): "
                                         "accuracy 0.905 does not improve on 0.9 by 0.01"}}},)
    # the move in the history is not judged again: only the window's hits are
    assert kind.measure(rule, _regression_response([], [moved], {"1": 0.99, "2": 0.9}), window) == []


def _ship_retrievals(es: Elasticsearch, namespace: str, access_log: Path) -> list[dict[str, Any]]:
    """The access log's retrievals, named by the attribution table as the shipper names them,
    written into the retrieval stream."""
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    table = load_table(es, namespace)
    docs = [d for d in parse_file("gunicorn", access_log) if d["event"]["action"] in
            ("artifact-download", "registered-model-alias-get") and d["event"]["outcome"] == "success"]
    operations: list[dict[str, Any]] = []
    for doc in docs:
        table.enrich(doc)
        operations += [{"create": {"_index": f"logs-modelregistry.retrieval-{namespace}"}}, doc]
    es.bulk(operations=operations, refresh=True)
    return docs


def _notified(rule: str) -> list[dict[str, Any]]:
    return [payload for payload, _ in Receiver.received if payload["rule"] == rule]


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_a_worse_promotion_fires_once_and_the_clients_still_pulling_the_old_version_are_named(
        registry: tuple[str, Path], es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path,
        webhook: dict[str, Any]) -> None:  # noqa: F811
    """Versions from runs with accuracy 0.90, 0.95, 0.80; champion 1 -> 2 (better) -> 3 (worse);
    a client pulls version 2 by number after the grace; version 4 (0.70) is registered while
    champion is 3. Two runners: the built-in regression notifies once, for 2 -> 3 only, a rule
    judging registrations once, for 4 against 3; stale_usage fires for version 2, naming the
    client and its pulls, and resolves once nobody pulls it; ``rules backtest`` and ``rules
    test`` say the same."""
    url, access_log = registry
    mlflow.set_tracking_uri(url)  # the fixture puts it back
    client = mlflow.MlflowClient(url)
    client.create_registered_model("m")
    for accuracy in (0.90, 0.95, 0.80):
        with mlflow.start_run() as run:
            mlflow.log_metric("accuracy", accuracy)
            mlflow.log_text("weights", "model/weights.txt")
            mlflow.log_text("flavors: {}", "model/MLmodel")  # what MLflow's client fetches once per model pulled
        client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    collector = Collector(InventorySettings.model_validate(
        {"registries": [{"name": "reg", "url": url}], "metrics_port": None}), es, namespace)
    stop = threading.Event()
    started = time.time()
    for version in ("1", "2", "3"):
        client.set_registered_model_alias("m", "champion", version)
        assert collector.cycle(stop)[0].outcome == "ok"
    time.sleep(3.2)  # the grace (2 s) after champion left version 2, in the access log's whole seconds
    for _ in range(2):
        mlflow.artifacts.download_artifacts("models:/m/2", dst_path=str(tmp_path / "dl"))
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.70)
    client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert collector.cycle(stop)[0].outcome == "ok"
    docs = _ship_retrievals(es, namespace, access_log)
    pulls_of_2 = [d for d in docs if d["event"]["action"] == "artifact-download"
                  and d["modelregistry"].get("model", {}).get("version") == "2"]
    assert len(pulls_of_2) == 4  # two files each time (MLmodel, weights.txt), named by their run
    last_pull = max(d["@timestamp"] for d in pulls_of_2)
    ip = pulls_of_2[0]["source"]["ip"]

    changes = {h["_source"]["modelregistry"]["model"]["version"]: h for h in es.search(
        index=f"logs-modelregistry.change-{namespace}", size=100,
        query={"term": {"event.action": "alias-set"}})["hits"]["hits"]}
    move_to_3 = changes["3"]
    [created_4] = es.search(index=f"logs-modelregistry.change-{namespace}", query={"bool": {"filter": [
        {"term": {"event.action": "model-version-created"}}, {"term": {"modelregistry.model.version": "4"}}]}})[
        "hits"]["hits"]
    folder = rule_folder(tmp_path)
    rules = load_rules(folder)
    regression, stale = (next(r for r in rules if r.name == name)
                         for name in ("champion-regression", "champion-stale-usage"))
    requests = Requests()
    counted = requests.client(es_url, request_timeout=60)
    runners = [Runner(counted if i == 1 else es, rules, namespace, targets=webhook, runner_id=f"runner-{i}")
               for i in (1, 2)]
    # the pulls' times are whole seconds (the access log's) and a window ends a second before the
    # cycle: a cycle two seconds on has them all in its window
    now = time.time() + 2.0
    try:
        for runner in runners:
            runner.cycle(now=now)
        # the cycle that judged the three rules and queued three notifications asked one _msearch
        # (the state and each rule's window), nothing else: the notifications carry what was measured
        assert requests.searches() == 1 and ("POST", "/_msearch") in requests.paths
        for runner in runners:
            runner.cycle(now=now + 61)  # the next windows: nothing new
    finally:
        for runner in runners:
            runner.stopped()

    [fired] = _notified("champion-regression")
    change_id = move_to_3["_id"]
    assert {k: fired[k] for k in ("rule", "group", "state", "value", "threshold", "severity", "message")} == {
        "rule": "champion-regression", "group": change_id, "state": "fired", "value": 1.0, "threshold": None,
        "severity": "warning",
        "message": "champion-regression: m: champion moved to version 3, worse than version 2 (champion): "
                   "accuracy 0.8 is worse than 0.95"}
    assert fired["event"] == {
        "@timestamp": move_to_3["_source"]["@timestamp"], "event": {"action": "alias-set"},
        "modelregistry": {"registry": "reg", "model": {"name": "m", "alias": "champion", "version": "3"},
                          "regression": {
                              "change": "moved", "metric": "accuracy", "greater_is_better": True,
                              "version": "3", "value": 0.8, "previous_version": "2", "previous_value": 0.95,
                              "reasons": ["accuracy 0.8 is worse than 0.95"],
                              "summary": "m: champion moved to version 3, worse than version 2 (champion): "
                                         "accuracy 0.8 is worse than 0.95"}}}

    [registered] = _notified("m-registered-worse")
    assert (registered["group"], registered["state"], registered["message"]) == (
        created_4["_id"], "fired", "m-registered-worse: m: registered version 4, worse than version 3 (champion): "
                                   "accuracy 0.7 is worse than 0.8")
    assert registered["event"] == {
        "@timestamp": created_4["_source"]["@timestamp"], "event": {"action": "model-version-created"},
        "modelregistry": {"registry": "reg", "model": {"name": "m", "alias": "champion", "version": "4"},
                          "regression": {
                              "change": "registered", "metric": "accuracy", "greater_is_better": True,
                              "version": "4", "value": 0.7, "previous_version": "3", "previous_value": 0.8,
                              "reasons": ["accuracy 0.7 is worse than 0.8"],
                              "summary": "m: registered version 4, worse than version 3 (champion): "
                                         "accuracy 0.7 is worse than 0.8"}}}

    [firing] = _notified("champion-stale-usage")
    group = group_of("m", "2")
    assert {k: firing[k] for k in ("rule", "group", "state", "value", "threshold", "message")} == {
        "rule": "champion-stale-usage", "group": group, "state": "firing", "value": 4.0, "threshold": 1.0,
        "message": "champion-stale-usage: m version 2 is still pulled (4 pulls), 2s or more after champion "
                   "moved away from it"}
    assert firing["event"] == {"modelregistry": {
        "model": {"name": "m", "alias": "champion", "version": "2"},
        "stale_usage": {"version": "2", "current_version": "3", "left_at": move_to_3["_source"]["@timestamp"],
                        "pulls": 4, "downloads": 2,
                        "clients": [{"name": ip, "pulls": 4, "downloads": 2, "last": last_pull}], "users": [],
                        "client_field": "source.ip", "user_field": "user.name"}}}

    # nobody pulls version 2 any more: one window later, it resolves (once, for both runners)
    later = now + stale.window + 61
    for runner in runners:
        runner.cycle(now=later)
        runner.stopped()
    states = [(p["rule"], p["state"]) for p, _ in Receiver.received]
    assert states.count(("champion-stale-usage", "resolved")) == 1
    assert states.count(("champion-regression", "fired")) == 1 and states.count(("m-registered-worse", "fired")) == 1
    assert len(states) == 4
    [resolved] = [p for p in _notified("champion-stale-usage") if p["state"] == "resolved"]
    assert resolved["message"] == "champion-stale-usage resolved: nobody pulls m version 2 any more"

    # rules backtest and rules test, as a user runs them: the same decisions
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace}))

    def cli(*args: str) -> list[str]:
        run = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", *args, "-c", str(config),
                              "--folder", str(folder)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.splitlines()

    replay_from, stamp = f"{started - 60:.3f}", lambda at: iso_from_epoch(at, millis=False)
    [replayed] = backtest(es, regression, namespace, started - 60, now + 60)
    assert (replayed.group, replayed.state, replayed.value) == (change_id, "fired", 1.0)
    assert cli("backtest", "champion-regression", "--from", replay_from, "--to", f"{now + 60:.3f}") == [
        f"{stamp(replayed.at)} fired    group={change_id} value=1.0", "1 transitions; fired 1 times"]
    stale_back = backtest(es, stale, namespace, started - 60, later + 60)
    assert [(t.group, t.state, t.value) for t in stale_back] == [(group, "firing", 4.0), (group, "resolved", 0.0)]
    assert cli("backtest", "champion-stale-usage", "--from", replay_from, "--to", f"{later + 60:.3f}") == [
        f"{stamp(t.at)} {t.state:8} group={group} value={t.value}" for t in stale_back] + [
        "2 transitions; fired 1 times"]
    # what the runner would do now: the alerts are stored, nothing new would notify
    tested = cli("test", "champion-regression", "--at", f"{now + 1:.3f}")
    assert tested[-2:] == [f"group={change_id} value=1.0 fired -> fired", "1 groups; would notify 0; nothing sent"]
    tested = cli("test", "champion-stale-usage", "--at", f"{now + 1:.3f}")
    assert tested[-2:] == [f"group={group} value=4.0 resolved -> firing (would notify firing to hook)",
                           "1 groups; would notify 1; nothing sent"]
    trial = dry_run(es, regression, namespace, now + 1)
    assert [(r.group, r.state, r.next_state, r.notify) for r in trial.rows] == [(change_id, "fired", "fired", None)]


def test_a_rule_file_that_mlflow_s_metric_threshold_would_refuse_is_refused_in_one_line_per_key(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""
rules:
  - {name: a, type: regression, metric: accuracy, min_relative_change: 1.5, notify: []}
  - {name: b, type: regression, metric: accuracy, min_absolute_change: 0, notify: []}
  - {name: c, type: regression, notify: []}
  - {name: d, type: stale_usage, after: 0.5y, notify: []}
  - {name: e, type: stale_usage, on: champion, notify: []}
""")
    with pytest.raises(RuleError) as refused:
        load_rules(tmp_path)
    where = tmp_path / "r.yaml"
    assert str(refused.value).splitlines() == [
        f"{where}: rule 'a' min_relative_change: Input should be less than or equal to 1",
        f"{where}: rule 'b' min_absolute_change: Input should be greater than 0",
        f"{where}: rule 'c' metric: Field required",
        f"{where}: rule 'd' after: not a duration: '0.5y' (use 30s, 5m, 1h, 2d)",
        f"{where}: rule 'e' (rule): a key read as true: YAML reads on, off, yes and no as booleans (the alias "
        "a regression or stale_usage rule watches is alias:)"]


@pytest.mark.elasticsearch
def test_the_newest_moves_are_judged_when_more_arrived_than_one_search_brings(
        es: Elasticsearch, namespace: str) -> None:
    """An alias moved back and forth more than ``max_events`` times within ``lookback``: the
    newest move (a regression) is judged, whatever came before it."""
    now = time.time()
    operations: list[dict[str, Any]] = []
    accuracy = {str(v): 0.90 + v / 100 for v in range(1, 9)} | {"9": 0.5}  # each better, but 9
    for version, value in accuracy.items():
        operations += [{"create": {"_index": f"logs-modelregistry.inventory-{namespace}"}}, {
            "@timestamp": iso_from_epoch(now - 600), "event": {"action": "model-version-observed"},
            "modelregistry": {"registry": "reg", "model": {"name": "m", "version": version},
                              "inventory": {"key": f"m/{version}", "entity": "model_version",
                                            "metrics": {"accuracy": value}}}}]
    moves = [(str(v), str(v + 1)) for v in range(1, 9)]  # 1 -> 2 ... 8 -> 9: only the last is worse
    for n, (previous, current) in enumerate(moves):
        at = iso_from_epoch(now - 300 + n)
        operations += [{"create": {"_index": f"logs-modelregistry.change-{namespace}", "_id": f"move-{n}"}}, {
            "@timestamp": at, "event": {"action": "alias-set", "ingested": at},
            "modelregistry": {"registry": "reg", "model": {"name": "m", "version": current, "alias": "champion"},
                              "change": {"previous": previous, "current": current}}}]
    es.bulk(operations=operations, refresh=True)
    rule = RegressionRule.model_validate({"name": "r", "type": "regression", "metric": "accuracy",
                                          "max_events": 3, "changes": ["moved"], "notify": []})
    trial = dry_run(es, rule, namespace, now)
    assert [(row.group, row.next_state, row.notify) for row in trial.rows] == [("move-7", "fired", "fired")]  # 8 -> 9
    # the backtest replays one window a minute: the move is judged once, by the window it fell in
    assert [(t.group, t.state) for t in backtest(es, rule, namespace, now - 400, now)] == [("move-7", "fired")]


def test_a_cycle_judges_the_lookback_or_all_since_the_last_cycle_when_the_runners_were_away_longer() -> None:
    rule = RegressionRule.model_validate({"name": "r", "type": "regression", "metric": "accuracy", "lookback": "1h",
                                          "notify": []})
    kind = Regression()
    assert kind.windows(rule, 10_000.0, 10_060.0, 60) == [kind.window_at(rule, 10_060.0)] == [
        Window(10_060.0 - 3600, 10_060.0)]
    assert kind.windows(rule, 10_000.0, 20_000.0, 60) == [Window(10_000.0, 20_000.0)]  # away 2.8 h


def test_a_hostile_model_name_from_the_registry_is_data_in_the_message_never_a_template() -> None:
    """A model name holding template braces and markup is carried as it is (the notifiers escape it
    as they escape names from logs); it never expands into the rule's fields."""
    from rules.compose import Composer
    from rules.cycle import Known

    name = "{rule} {severity} <!channel> \x1b[31m"
    rule = RegressionRule.model_validate({"name": "r", "type": "regression", "metric": "accuracy", "notify": []})
    moved = _change_hit("c1", "2026-12-05T00:00:00Z", "alias-set", "2", "champion", "1")
    moved["_source"]["modelregistry"]["model"]["name"] = name
    response = _regression_response([moved], [], {"1": 0.9, "2": 0.8})
    for bucket in response["aggregations"]["versions"]["keys"]["buckets"]:
        bucket["latest"]["hits"]["hits"][0]["_source"]["modelregistry"]["model"]["name"] = name
    kind = Regression()
    window = kind.window_at(rule, 1_800_000_000.0)
    [measured] = kind.measure(rule, response, window)
    entry = Composer(None, "default", "state", Known()).entry(  # type: ignore[arg-type]
        rule, measured.group, "fired", 1.0, 1.0, 2.0, window, measured.events[0])
    assert entry["payload"]["message"] == (f"r: {name}: champion moved to version 2, worse than version 1 "
                                           "(champion): accuracy 0.8 is worse than 0.9")
    assert entry["payload"]["event"]["modelregistry"]["model"]["name"] == name
