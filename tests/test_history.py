"""``regwatch history MODEL --alias NAME --at TIME`` (#30 item 3): what an alias pointed to at any
moment, exactly, across several moves, from what ``regwatch inventory`` recorded of a real MLflow
server driven by the real client. Both commands run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from pipeline.inventory.history import AliasAt, AliasEvent, alias_at
from regwatch.demo.registry import mlflow_server

mlflow = pytest.importorskip("mlflow")


def _regwatch(*args: str, config: Path, es_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_URL": es_url}
    return subprocess.run([sys.executable, "-m", "regwatch.cli", *args, "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    before = mlflow.get_tracking_uri()
    try:
        with mlflow_server(tmp_path / "mlflow", gunicorn=False) as (url, _):
            yield url
    finally:
        mlflow.set_tracking_uri(before)


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.slow
def test_history_at_answers_exactly_what_champion_pointed_to_across_several_moves(
        registry: str, es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    """champion: unset, 1, 2, 3, 1, removed; the inventory polled twice in each state. At a moment
    between the two polls of a state the answer is that state, exact; at a moment between the last
    poll of one state and the first of the next it is "the one or the other", with the window."""
    config = tmp_path / "regwatch.yaml"
    config.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
        "inventory": {"registries": [{"name": "reg", "url": registry}], "metrics_port": None}}))
    client = mlflow.MlflowClient(registry)
    mlflow.set_tracking_uri(registry)
    with mlflow.start_run() as run:
        mlflow.log_text("w", "model/w.txt")
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)

    def poll() -> tuple[float, float]:
        started = time.time()
        done = _regwatch("inventory", "--once", "--log-console", config=config, es_url=es_url)
        assert done.returncode == 0, done.stderr
        return started, time.time()

    def moment_between(a: float, b: float) -> float:
        assert b - a > 0.002, "no room between the two moments"
        return (a + b) / 2

    stable: list[tuple[float, str | None]] = []  # (a moment, what champion pointed to then)
    moving: list[tuple[float, str | None, str | None]] = []  # (a moment, before, after)
    first_seen, last_end = poll()
    states: list[str | None] = ["1", "2", "3", "1", None]
    previous: str | None = None
    stable.append((first_seen, None))  # when the first poll saw the registry, champion unset
    for target in states:
        set_at = time.time()
        if target is None:
            client.delete_registered_model_alias("m", "champion")
        else:
            client.set_registered_model_alias("m", "champion", target)
        first_start, first_end = poll()
        moving.append((moment_between(last_end, set_at), previous, target) if set_at - last_end > 0.002
                      else (moment_between(last_end, first_start), previous, target))
        time.sleep(0.05)
        second_start, last_end = poll()
        stable.append((moment_between(first_end, second_start), target))
        previous = target

    answers = {}
    for moment, _ in stable:
        done = _regwatch("history", "m", "--alias", "champion", "--at", _iso(moment), "--json",
                         config=config, es_url=es_url)
        assert done.returncode == 0, done.stderr
        answers[moment] = json.loads(done.stdout)
    for moment, expected in stable:
        answer = answers[moment]
        assert answer["model"] == "m" and answer["registry"] == "reg" and answer["at"] == _iso(moment)
        [alias] = answer["aliases"]
        assert (alias["alias"], alias["version"], alias["exact"], alias["known"], alias["window"]) == (
            "champion", expected, True, True, None), (moment, alias)

    changes = es.search(index=f"logs-modelregistry.change-{namespace}", size=100, sort=[{"@timestamp": "asc"}],
                        query={"term": {"modelregistry.model.alias": "champion"}})["hits"]["hits"]
    moves = [c["_source"] for c in changes]
    assert [(m["event"]["action"], m["modelregistry"]["change"].get("current")) for m in moves] == [
        ("alias-set", "1"), ("alias-set", "2"), ("alias-set", "3"), ("alias-set", "1"), ("alias-removed", None)]
    for index, (moment, before, after) in enumerate(moving):
        done = _regwatch("history", "m", "--alias", "champion", "--at", _iso(moment), "--json",
                         config=config, es_url=es_url)
        [alias] = json.loads(done.stdout)["aliases"]
        window = [moves[index]["modelregistry"]["change"]["observed_after"], moves[index]["@timestamp"]]
        assert alias == {"alias": "champion", "version": after, "exact": False, "known": True, "since": None,
                         "until": None, "before": before, "window": window}, (moment, alias)

    # the same answers as people read them
    moment, _ = stable[2]
    done = _regwatch("history", "m", "--alias", "champion", "--at", _iso(moment), config=config, es_url=es_url)
    assert done.stdout == (f"m@champion at {_iso(moment)}: version 2 (seen from {moves[1]['@timestamp']} "
                           f"until {moves[2]['@timestamp']})\n")
    moment, _, _ = moving[1]
    done = _regwatch("history", "m", "--at", _iso(moment), config=config, es_url=es_url)
    assert done.stdout == (f"m@champion at {_iso(moment)}: version 1 or version 2: it changed between "
                           f"{moves[1]['modelregistry']['change']['observed_after']} and {moves[1]['@timestamp']} "
                           "(no registry records the moment)\n")
    # docs/queries.md's two queries give the same answers
    for moment, version in stable[1:]:
        before, after = _doc_queries(es, namespace, moment)
        assert before[0]["_source"]["modelregistry"]["change"].get("current") == version
        assert not after or after[0]["_source"]["modelregistry"]["change"]["observed_after"] >= _iso(moment)
    for moment, _, target in moving[1:]:
        before, after = _doc_queries(es, namespace, moment)
        assert after[0]["_source"]["modelregistry"]["change"]["observed_after"] < _iso(moment)
        assert after[0]["_source"]["modelregistry"]["change"].get("current") == target

    timeline = _regwatch("history", "m", config=config, es_url=es_url).stdout.splitlines()
    assert len(timeline) == 1 + 3 + 5  # the model, its versions, champion's moves
    assert timeline[-1].split() == [moves[-1]["@timestamp"], "alias-removed", "champion", "->", "removed",
                                    "(was", "1;", "changed", "after",
                                    f"{moves[-1]['modelregistry']['change']['observed_after']})"]


def _doc_queries(es: Elasticsearch, namespace: str, moment: float) -> tuple[list[dict], list[dict]]:
    """The history section's queries of docs/queries.md, for model m at ``moment``."""
    import re

    text = (Path(__file__).parent.parent / "docs" / "queries.md").read_text()
    found = dict((name, (index, body)) for name, index, body in re.findall(
        r"<!-- query:(\S+) index:(\S+) -->\s*```json\n(.*?)```", text, re.S))
    answers = []
    for name in ("alias-at", "alias-next"):
        index, body = found[name]
        request = json.loads(body.replace("fraud-detector", "m").replace("2026-11-25T12:00:00Z", _iso(moment)))
        answers.append(es.search(index=index.replace("-default", f"-{namespace}"), **request)["hits"]["hits"])
    return answers[0], answers[1]


def test_history_says_in_one_line_what_it_cannot_answer(es: Elasticsearch, es_url: str, namespace: str,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "regwatch.yaml"
    config.write_text(yaml.safe_dump({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace}))
    unknown = _regwatch("history", "nosuch", config=config, es_url=es_url)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == (f"error: no change of model 'nosuch' recorded in namespace '{namespace}' (is "
                              "`regwatch inventory` running?)\n")
    bad = _regwatch("history", "m", "--at", "yesterday", config=config, es_url=es_url)
    assert bad.returncode == 2
    assert bad.stderr == "error: --at 'yesterday': not an ISO time or epoch seconds\n"
    nothing = _regwatch("inventory", "--once", config=config, es_url=es_url)
    assert (nothing.returncode, nothing.stderr) == (2, f"error: {config}: inventory.registries: no registry to read\n")


def _events(*spec: tuple[float, str | None, float | None]) -> list[AliasEvent]:
    return [AliasEvent(at, version, after) for at, version, after in spec]


@pytest.mark.parametrize(("moment", "expected"), [
    (5, AliasAt(None, True, until=10)),  # the collector saw the model at 5 without the alias
    (9.5, AliasAt("1", False, before=None, window=(8, 10))),
    (10, AliasAt("1", True, since=10, until=20)),
    (15, AliasAt("1", True, since=10, until=20)),
    (18.5, AliasAt("2", False, before="1", window=(18, 20))),
    (20, AliasAt("2", True, since=20, until=30)),
    (29, AliasAt(None, False, before="2", window=(28, 30))),
    (40, AliasAt(None, True, since=30)),
])
def test_alias_at_is_exact_outside_the_windows_and_says_both_inside(moment: float, expected: AliasAt) -> None:
    events = _events((10, "1", 8), (20, "2", 18), (30, None, 28))
    assert alias_at(events, moment) == expected


def test_before_the_collector_first_saw_an_alias_nothing_is_known() -> None:
    assert alias_at(_events((10, "1", None)), 5) == AliasAt(None, False, until=10, known=False)
    assert alias_at(_events((10, "1", None)), 10) == AliasAt("1", True, since=10)
