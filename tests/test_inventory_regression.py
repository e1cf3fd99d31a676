"""The ``regression`` and ``stale_usage`` logic (#30 item 4, rules/regression.py): pure
functions over the inventory's documents, once over a real MLflow server's inventory."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipeline.inventory.collector import Collector
from pipeline.inventory.settings import InventorySettings
from regwatch.demo.registry import mlflow_server
from rules.regression import MetricCheck, RegressionConfigError, evaluate, regressions, stale_usage

mlflow = pytest.importorskip("mlflow")


@pytest.mark.parametrize(("check", "candidate", "baseline", "failed"), [
    (MetricCheck("acc"), 0.8, 0.9, True),
    (MetricCheck("acc"), 0.9, 0.9, False),
    (MetricCheck("acc"), 0.95, 0.9, False),
    (MetricCheck("rmse", greater_is_better=False), 1.2, 1.0, True),
    (MetricCheck("rmse", greater_is_better=False), 0.9, 1.0, False),
    (MetricCheck("acc", min_absolute_change=0.05), 0.93, 0.9, True),  # MetricThreshold: improve by 0.05
    (MetricCheck("acc", min_absolute_change=0.05), 0.95, 0.9, False),
    (MetricCheck("acc", min_relative_change=0.1), 0.98, 0.9, True),   # needs 0.99
    (MetricCheck("acc", min_relative_change=0.1), 0.99, 0.9, False),
    (MetricCheck("r2", min_relative_change=0.5), -0.6, -1.0, True),   # |baseline|: needs -0.5
    (MetricCheck("r2", min_relative_change=0.5), -0.5, -1.0, False),
    (MetricCheck("acc", min_relative_change=0.1), 0.0, 0.0, True),    # a zero baseline: simply better
    (MetricCheck("acc", min_relative_change=0.1), 0.1, 0.0, False),
    (MetricCheck("acc", threshold=0.85), 0.84, None, True),           # no baseline: the threshold alone
    (MetricCheck("acc"), 0.5, None, False),
    (MetricCheck("acc"), None, 0.9, False),                           # no metric: no guess
    (MetricCheck("acc"), float("nan"), 0.9, False),
])
def test_evaluate_judges_as_mlflow_s_metric_threshold(check: MetricCheck, candidate: Any, baseline: Any,
                                                      failed: bool) -> None:
    assert evaluate(check, candidate, baseline).failed is failed


def test_a_check_mlflow_would_refuse_is_refused() -> None:
    for bad in ({"min_absolute_change": 0}, {"min_relative_change": 1.5}, {"min_relative_change": -0.1}):
        with pytest.raises(RegressionConfigError):
            MetricCheck("acc", **bad)


def _change(action: str, at: str, model: str, version: str | None = None, alias: str | None = None,
            previous: str | None = None) -> dict[str, Any]:
    named = {"name": model, **({"version": version} if version else {}), **({"alias": alias} if alias else {})}
    change = {k: v for k, v in {"current": version if alias else None, "previous": previous}.items() if v}
    return {"@timestamp": at, "event": {"action": action}, "modelregistry": {"model": named, "change": change}}


def _pull(at: str, version: str, ip: str) -> dict[str, Any]:
    return {"@timestamp": at, "source": {"ip": ip}, "modelregistry": {"model": {"name": "m", "version": version}}}


def test_stale_usage_names_each_client_still_pulling_the_version_the_alias_left() -> None:
    moves = [_change("alias-set", "2026-12-05T10:00:00Z", "m", "1", "champion"),
             _change("alias-set", "2026-12-05T11:00:00Z", "m", "2", "champion", "1"),
             _change("alias-set", "2026-12-05T13:00:00Z", "m", "1", "champion", "2")]
    pulls = [_pull("2026-12-05T10:30:00Z", "1", "10.0.0.1"),  # while it was champion
             _pull("2026-12-05T11:05:00Z", "1", "10.0.0.1"),  # within the grace
             _pull("2026-12-05T11:20:00Z", "1", "10.0.0.2"),
             _pull("2026-12-05T12:40:00Z", "1", "10.0.0.2"),  # the latest stale pull of 10.0.0.2
             _pull("2026-12-05T13:30:00Z", "1", "10.0.0.3"),  # champion again: not stale
             _pull("2026-12-05T14:00:00Z", "2", "10.0.0.4")]  # 2 left at 13:00: stale
    found = stale_usage(moves, pulls, grace_s=600)
    assert [(f.version, f.details["client"], f.at) for f in found] == [
        ("1", "10.0.0.2", "2026-12-05T12:40:00Z"), ("2", "10.0.0.4", "2026-12-05T14:00:00Z")]
    assert found[0].message == "m: 10.0.0.2 still pulls version 1, which champion no longer points to"


@pytest.mark.slow
def test_regression_fires_once_for_a_worse_promotion_and_never_for_a_better_one(
        tmp_path: Path, es: Elasticsearch, namespace: str) -> None:
    """A real registry: versions from runs with accuracy 0.90, 0.95, 0.80; champion 1 -> 2
    (better) -> 3 (worse), the inventory polling after each move."""
    before = mlflow.get_tracking_uri()
    try:
        with mlflow_server(tmp_path / "mlflow", gunicorn=False) as (url, _):
            mlflow.set_tracking_uri(url)
            client = mlflow.MlflowClient(url)
            client.create_registered_model("m")
            for accuracy in (0.90, 0.95, 0.80):
                with mlflow.start_run() as run:
                    mlflow.log_metric("accuracy", accuracy)
                client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
            collector = Collector(InventorySettings.model_validate(
                {"registries": [{"name": "reg", "url": url}], "metrics_port": None}), es, namespace)
            for version in ("1", "2", "3"):
                client.set_registered_model_alias("m", "champion", version)
                assert collector.cycle(threading.Event())[0].outcome == "ok"
    finally:
        mlflow.set_tracking_uri(before)
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    hits = es.search(index=f"logs-modelregistry.change-{namespace}", size=100,
                     sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    changes = [(h["_id"], h["_source"]) for h in hits]
    states = es.search(index=f"logs-modelregistry.inventory-{namespace}", size=100,
                       query={"term": {"modelregistry.inventory.entity": "model_version"}})["hits"]["hits"]
    metrics = {(s["_source"]["modelregistry"]["model"]["name"], s["_source"]["modelregistry"]["model"]["version"]):
               s["_source"]["modelregistry"]["inventory"].get("metrics", {}) for s in states}
    found = regressions(changes, metrics, MetricCheck("accuracy"))
    [move_to_3] = [c for c in changes if c[1]["event"]["action"] == "alias-set"
                   and c[1]["modelregistry"]["model"]["version"] == "3"]
    assert [(f.key, f.version, f.details["baseline_version"]) for f in found] == [(move_to_3[0], "3", "2")]
    assert found[0].message == ("m: champion moved to version 3, worse than version 2 (champion): "
                                "accuracy 0.8 is worse than 0.95")
    assert regressions(changes, metrics, MetricCheck("accuracy")) == found  # the same changes: the same key




def _epoch_of(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_stale_uses_count_the_clients_whose_last_pull_came_after_the_grace_and_name_them() -> None:
    from rules.regression import Puller, StaleUse, alias_timeline, stale_uses

    # the history read starts at a move: the version it left is known from the document
    moves = [_change("alias-set", "2026-12-05T11:00:00Z", "m", "2", "champion", "1"),
             _change("alias-set", "2026-12-05T12:00:00Z", "m", "3", "champion", "2"),
             _change("alias-removed", "2026-12-05T13:00:00Z", "m", None, "champion", "3"),
             _change("alias-set", "2026-12-05T11:30:00Z", "m", "2", "challenger")]  # another alias
    timeline = alias_timeline(moves)
    assert timeline.current == {"m": (None, _epoch_of("2026-12-05T13:00:00Z"))}

    def at(iso: str) -> float:
        return _epoch_of(iso)

    pulled = {
        ("m", "1"): ([Puller("10.0.0.1", 5, at("2026-12-05T11:40:00Z")),  # 40 min after: stale
                      Puller("10.0.0.2", 3, at("2026-12-05T11:10:00Z"))],  # within the grace
                     [Puller("svc", 8, at("2026-12-05T11:40:00Z"))]),
        ("m", "2"): ([Puller("10.0.0.3", 1, at("2026-12-05T12:10:00Z"))], []),  # within the grace
        ("m", "3"): ([Puller("10.0.0.4", 2, at("2026-12-05T13:45:00Z"))], []),  # the alias was removed
        ("m", "9"): ([Puller("10.0.0.5", 4, at("2026-12-05T13:45:00Z"))], []),  # never champion: not stale
    }
    assert stale_uses(timeline, pulled, grace_s=1800) == [
        StaleUse("m", "1", None, at("2026-12-05T11:00:00Z"), 5, (Puller("10.0.0.1", 5, at("2026-12-05T11:40:00Z")),),
                 (Puller("svc", 8, at("2026-12-05T11:40:00Z")),)),
        StaleUse("m", "3", None, at("2026-12-05T13:00:00Z"), 2, (Puller("10.0.0.4", 2, at("2026-12-05T13:45:00Z")),),
                 ())]


def test_regressions_judge_only_the_changes_asked_and_tell_registries_apart() -> None:
    def on(registry: str, change: dict[str, Any]) -> dict[str, Any]:
        change["modelregistry"]["registry"] = registry
        return change

    changes = [
        ("a", on("prod", _change("alias-set", "2026-12-05T10:00:00Z", "m", "1", "champion"))),
        ("b", on("dev", _change("alias-set", "2026-12-05T10:00:00Z", "m", "5", "champion"))),
        ("c", on("prod", _change("model-version-created", "2026-12-05T11:00:00Z", "m", "2"))),
        ("d", on("prod", _change("alias-set", "2026-12-05T12:00:00Z", "m", "2", "champion", "1"))),
    ]
    metrics = {("m", "1"): {"acc": 0.9}, ("m", "2"): {"acc": 0.8}, ("m", "5"): {"acc": 0.1}}
    check = MetricCheck("acc")
    # registered 2 on prod is judged against prod's champion (1), not dev's (5)
    assert [(f.key, f.details["baseline_version"], f.details["change"], f.details["registry"])
            for f in regressions(changes, metrics, check)] == [("c", "1", "registered", "prod"),
                                                              ("d", "1", "moved", "prod")]
    assert [f.key for f in regressions(changes, metrics, check, kinds=("moved",))] == ["d"]
    assert [f.key for f in regressions(changes, metrics, check, kinds=("registered",))] == ["c"]
    assert [f.key for f in regressions(changes, metrics, check, judge={"d"})] == ["d"]  # the others: history
    [found] = regressions(changes, metrics, check, judge={"c"})
    assert found.details == {"baseline_version": "1", "candidate": 0.8, "baseline": 0.9, "metric": "acc",
                             "alias": "champion", "change": "registered", "registry": "prod",
                             "reasons": ["acc 0.8 is worse than 0.9"]}
