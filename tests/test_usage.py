"""Which model versions are in use (#30 item 3): ``regwatch downloads``, ``stale`` and ``unused``,
docs/queries.md's queries and the "Model versions in use" dashboard's panels, all over what the
real collector and the real shipper wrote of a real MLflow server that the real client pulled
models from, as users: alice, bob and carol (basic auth in gunicorn's access log)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from rich.console import Console
from rich.table import Column, Table

from kibana.lens_query import bucket_values, lens_request, metric_values
from kibana.objects import all_objects
from pipeline.inventory.collector import Collector
from pipeline.inventory.settings import InventorySettings
from rules.usage import (
    Holder,
    Left,
    VersionTotal,
    downloads_rows,
    holders,
    per_version,
    stale_rows,
    unused_rows,
    versions_left,
)
from support.mlflow_registry import running_registry
from support.shipping import write_config

mlflow = pytest.importorskip("mlflow")
CLI = [sys.executable, "-m", "regwatch.cli"]
WIDTH = 220
DOCS = Path(__file__).parent.parent / "docs" / "queries.md"
MLMODEL = "artifact_path: model\nflavors: {}\n"  # what the client reads first of every model it pulls


@dataclass
class Usage:
    namespace: str
    config: Path
    moves: dict[str, dict[str, Any]]  # (alias -> version) -> the change document that recorded it
    carol_at: str  # the @timestamp of carol's pull of version 1 (after champion moved on)
    day: str


def _pull(uri: str, user: str | None, dst: Path) -> None:
    """The real client downloading a model, as ``user`` (basic auth: gunicorn logs the name)."""
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    try:
        if user:
            os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD="secret")
        mlflow.artifacts.download_artifacts(uri, dst_path=str(dst))
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


@pytest.fixture(scope="module")
def usage(es: Elasticsearch, es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Usage]:
    """churn versions 1, 2, 3 (each an MLmodel and a weights file); champion -> 1, shadow -> 3;
    alice pulls champion 3 times; champion -> 2; bob pulls champion twice, carol pulls version 1
    (pinned) once; someone pulls a run's notes (no version's files). Then ``regwatch ship --once``."""
    tmp = tmp_path_factory.mktemp("usage")
    namespace = "u" + os.urandom(5).hex()
    with running_registry(tmp / "mlflow") as (url, access_log):
        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient(url)
        runs = []
        for i in range(3):
            with mlflow.start_run() as run:
                mlflow.log_text(MLMODEL, "model/MLmodel")
                mlflow.log_text(f"weights {i}", "model/weights.txt")
            runs.append(run.info.run_id)
        with mlflow.start_run() as other:
            mlflow.log_text("notes", "notes/readme.txt")
        client.create_registered_model("churn")
        for run_id in runs:
            client.create_model_version("churn", f"runs:/{run_id}/model", run_id)
        collector = Collector(InventorySettings.model_validate(
            {"registries": [{"name": "reg", "url": url}], "metrics_port": None}), es, namespace)
        stop = threading.Event()

        def poll() -> None:
            assert collector.cycle(stop)[0].outcome == "ok"
            time.sleep(1.2)  # gunicorn's times are whole seconds: every pull after a poll is logged after it

        poll()
        client.set_registered_model_alias("churn", "champion", "1")
        client.set_registered_model_alias("churn", "shadow", "3")
        poll()
        for _ in range(3):
            _pull("models:/churn@champion", "alice", tmp / "dl")
        client.set_registered_model_alias("churn", "champion", "2")
        poll()
        for _ in range(2):
            _pull("models:/churn@champion", "bob", tmp / "dl")
        _pull("models:/churn/1", "carol", tmp / "dl")
        _pull(f"runs:/{other.info.run_id}/notes", None, tmp / "dl")
        time.sleep(0.5)  # gunicorn writes its line after the answer
        es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
        config = write_config(tmp / "ship.yaml", es_url, namespace, [str(access_log)],
                              inputs=[{"paths": [str(access_log)], "format": "gunicorn"}],
                              inventory={"metrics_port": None, "registries": [{"name": "reg", "url": url}]})
        shipped = subprocess.run([*CLI, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                                 timeout=180)
        assert shipped.returncode == 0, shipped.stderr
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    changes = es.search(index=f"logs-modelregistry.change-{namespace}", size=100, sort=[{"@timestamp": "asc"}],
                        query={"term": {"event.action": "alias-set"}})["hits"]["hits"]
    moves = {}
    for change in changes:
        registry = change["_source"]["modelregistry"]
        moves[f"{registry['model']['alias']} -> {registry['change']['current']}"] = change["_source"]
    assert set(moves) == {"champion -> 1", "shadow -> 3", "champion -> 2"}
    carol = es.search(index=f"logs-modelregistry.retrieval-{namespace}", size=1,
                      query={"bool": {"filter": [{"term": {"user.name": "carol"}},
                                                 {"term": {"event.action": "artifact-download"}}]}},
                      sort=[{"@timestamp": "desc"}])["hits"]["hits"][0]["_source"]["@timestamp"]
    yield Usage(namespace, config, moves, carol, datetime.now(UTC).strftime("%Y-%m-%d"))


def _regwatch(usage: Usage, *args: str) -> str:
    done = subprocess.run([*CLI, *args, "-c", str(usage.config)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": str(WIDTH)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def _table(headers: list[str], rows: list[list[object]], numbers: set[str]) -> str:
    """The table as the commands print it (rich, the terminal's width)."""
    table = Table(*(Column(h, justify="right" if h in numbers else "left", overflow="fold") for h in headers))
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    out = io.StringIO()
    Console(file=out, width=WIDTH).print(table)
    return out.getvalue()


COUNTS = {"downloads", "files", "hosts", "users"}


def _when(iso: str) -> str:
    """A time as the tables show it: to the second, UTC (their headers say so)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.slow
def test_downloads_per_version_per_day_by_host_and_user(usage: Usage) -> None:
    """Each pull of a whole model is one download (its MLmodel fetched once); files count every file
    fetched; the notes download names no version and is counted apart."""
    answer = json.loads(_regwatch(usage, "downloads", "--json"))
    assert answer.pop("since")
    assert answer == {"model": None, "by": None, "unnamed": {"unattributed": 1}, "rows": [
        {"day": usage.day, "model": "churn", "version": "1", "downloads": 4, "files": 8, "hosts": 1, "users": 2},
        {"day": usage.day, "model": "churn", "version": "2", "downloads": 2, "files": 4, "hosts": 1, "users": 1}]}
    by_user = json.loads(_regwatch(usage, "downloads", "churn", "--by", "user", "--json"))
    assert by_user["rows"] == [
        {"day": usage.day, "model": "churn", "version": "1", "downloads": 3, "files": 6, "user": "alice"},
        {"day": usage.day, "model": "churn", "version": "1", "downloads": 1, "files": 2, "user": "carol"},
        {"day": usage.day, "model": "churn", "version": "2", "downloads": 2, "files": 4, "user": "bob"}]
    by_host = json.loads(_regwatch(usage, "downloads", "--by", "host", "--json"))
    assert [(r["version"], r["host"], r["downloads"]) for r in by_host["rows"]] == [
        ("1", "127.0.0.1", 4), ("2", "127.0.0.1", 2)]

    text = _regwatch(usage, "downloads", "--since", "2d")
    since = re.search(r"since (\S+) name no version", text)
    assert since and text == _table(["day", "model", "version", "downloads", "files", "hosts", "users"], [
        [usage.day, "churn", "1", 4, 8, 1, 2], [usage.day, "churn", "2", 2, 4, 1, 1]], COUNTS) + (
        f"1 downloaded files since {since.group(1)} name no version (unattributed 1)\n")
    text = _regwatch(usage, "downloads", "churn", "--by", "user")
    assert text.startswith(_table(["day", "model", "version", "user", "downloads", "files"], [
        [usage.day, "churn", "1", "alice", 3, 6], [usage.day, "churn", "1", "carol", 1, 2],
        [usage.day, "churn", "2", "bob", 2, 4]], COUNTS))
    assert _regwatch(usage, "downloads", "nosuch").startswith("no download of model nosuch since ")


@pytest.mark.slow
def test_stale_names_who_still_pulls_the_version_champion_left(usage: Usage) -> None:
    moved = usage.moves["champion -> 2"]
    answer = json.loads(_regwatch(usage, "stale", "--json"))
    assert answer == {"model": None, "alias": None, "grace_s": 0.0, "stale": [
        {"model": "churn", "alias": "champion", "version": "1", "moved_at": moved["@timestamp"], "alias_now": "2",
         "downloads": 1, "files": 2, "hosts": ["127.0.0.1"], "users": ["carol"], "last_download": usage.carol_at,
         "held_by": []}]}
    assert _regwatch(usage, "stale", "churn", "--alias", "champion") == _table(
        ["model", "alias", "version", "alias moved on (UTC)", "alias now", "downloads", "last download (UTC)", "hosts",
         "users", "still held by"],
        [["churn", "champion", "1", _when(moved["@timestamp"]), "2", 1, _when(usage.carol_at), "127.0.0.1", "carol",
          "-"]],
        {"downloads"})
    # alice's pulls of version 1 were before the move: a grace longer than carol's delay leaves nothing
    assert _regwatch(usage, "stale", "--grace", "1h") == "no version is downloaded after its alias moved on\n"
    assert json.loads(_regwatch(usage, "stale", "--alias", "shadow", "--json"))["stale"] == []


@pytest.mark.slow
def test_unused_names_the_alias_nobody_downloads(usage: Usage) -> None:
    shadow = usage.moves["shadow -> 3"]
    answer = json.loads(_regwatch(usage, "unused", "--json"))
    assert answer.pop("since")
    assert answer == {"model": None, "unused": [
        {"model": "churn", "alias": "shadow", "version": "3", "alias_since": shadow["@timestamp"],
         "last_download": None}]}
    assert _regwatch(usage, "unused", "churn") == _table(
        ["model", "alias", "version", "alias since (UTC)", "last download (UTC)"],
        [["churn", "shadow", "3", _when(shadow["@timestamp"]), "never"]], set())


def _doc_queries() -> dict[str, tuple[str, dict[str, Any]]]:
    text = DOCS.read_text()
    return {name: (index, json.loads(body)) for name, index, body in re.findall(
        r"<!-- query:(\S+) index:(\S+) -->\s*```json\n(.*?)```", text, re.S)}


@pytest.mark.slow
def test_the_queries_of_docs_queries_md_give_the_same_answers(es: Elasticsearch, usage: Usage) -> None:
    found = _doc_queries()

    def run(name: str, replace: dict[str, str] | None = None) -> dict[str, Any]:
        index, body = found[name]
        text = json.dumps(body)
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        return es.search(index=index.replace("-default", f"-{usage.namespace}"), **json.loads(text))

    rows, unnamed = downloads_rows(run("downloads-per-version-per-day", {"fraud-detector": "churn"}), by="user")
    assert [(r.day, r.model, r.version, r.client, r.downloads, r.files) for r in rows] == [
        (usage.day, "churn", "1", "alice", 3, 6), (usage.day, "churn", "1", "carol", 1, 2),
        (usage.day, "churn", "2", "bob", 2, 4)]
    assert unnamed == {"unattributed": 1}
    assert per_version(rows) == [VersionTotal("churn", "1", 4, 8), VersionTotal("churn", "2", 2, 4)]
    changes = [h["_source"] for h in run("alias-changes", {"fraud-detector": "churn"})["hits"]["hits"]]
    left = versions_left(changes)
    moved = usage.moves["champion -> 2"]["@timestamp"]
    assert left == [Left("churn", "champion", "1", _epoch(moved), "2")]
    stale = run("still-pulled", {"fraud-detector": "churn", "2026-11-25T12:00:00.000Z": moved})
    assert [(r.version, r.users, r.downloads) for r in stale_rows(left, stale)] == [("1", ("carol",), 1)]
    held = holders(changes)
    shadow = usage.moves["shadow -> 3"]["@timestamp"]
    assert held == [Holder("churn", "champion", "2", _epoch(moved)), Holder("churn", "shadow", "3", _epoch(shadow))]
    recent = run("holders-downloaded", {"fraud-detector": "churn"})
    assert [r.alias for r in unused_rows(held, recent)] == ["shadow"]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _lens(lens_id: str) -> dict[str, Any]:
    return next(o for o in all_objects() if o["type"] == "lens" and o["id"] == lens_id)


def _panel(es: Elasticsearch, usage: Usage, lens_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = _lens(lens_id)
    views = {o["id"]: o for o in all_objects() if o["type"] == "index-pattern"}
    request = lens_request(obj, views)
    index = request.index[:-1] + (f"*-{usage.namespace}" if request.index.endswith(".*") else usage.namespace)
    return obj, es.search(index=index, **request.body)


@pytest.mark.slow
def test_the_model_versions_in_use_dashboard_shows_what_the_commands_say(es: Elasticsearch, usage: Usage) -> None:
    """Each panel's request, derived from its own Lens state, on the same documents."""
    day = f"{usage.day}T00:00:00.000Z"
    obj, answer = _panel(es, usage, "regwatch-usage-downloads-per-day")
    assert [(keys, values["m0"]) for keys, values in bucket_values(obj, answer)] == [
        (("churn", "1", day), 8.0), (("churn", "2", day), 4.0)]
    obj, answer = _panel(es, usage, "regwatch-usage-downloads-over-time")  # a bar a minute: summed per version
    per_version: dict[str, float] = {}
    for (version, _), values in bucket_values(obj, answer):
        per_version[version] = per_version.get(version, 0.0) + (values["m0"] or 0.0)
    assert per_version == {"1": 8.0, "2": 4.0}
    obj, answer = _panel(es, usage, "regwatch-usage-alias-timeline")
    moves = {keys: values["m0"] for keys, values in bucket_values(obj, answer) if values["m0"]}
    champion_1, shadow_3, champion_2 = (_minute(usage.moves[m]["@timestamp"])
                                        for m in ("champion -> 1", "shadow -> 3", "champion -> 2"))
    assert moves == {("champion", "1", "alias-set", champion_1): 1.0, ("champion", "2", "alias-set", champion_2): 1.0,
                     ("shadow", "3", "alias-set", shadow_3): 1.0}
    # what could not be named: the notes file (no version's), and alice's lookups of champion, made
    # between the inventory's last look at 1 and its first at 2 (MLflow keeps no time of the move)
    obj, answer = _panel(es, usage, "regwatch-usage-unnamed")
    retrievals = es.search(index=f"logs-modelregistry.retrieval-{usage.namespace}", size=100,
                           query={"exists": {"field": "modelregistry.attribution"}})["hits"]["hits"]
    unnamed = sorted((h["_source"]["event"]["action"], h["_source"]["modelregistry"]["attribution"])
                     for h in retrievals
                     if h["_source"]["modelregistry"]["attribution"] in ("unattributed", "ambiguous"))
    assert unnamed == [("artifact-download", "unattributed")] + [("registered-model-alias-get", "ambiguous")] * 3
    assert metric_values(obj, answer)["m0"] == 4.0


def _minute(iso: str) -> str:
    return iso[:16] + ":00.000Z"


def _change(at: str, alias: str, version: str | None, model: str = "m") -> dict[str, Any]:
    action = "alias-set" if version is not None else "alias-removed"
    return {"@timestamp": at, "event": {"action": action},
            "modelregistry": {"model": {"name": model, "alias": alias},
                              "change": {"current": version} if version is not None else {}}}


def test_an_alias_leaves_a_version_when_it_moves_or_is_removed_and_comes_back_to_it() -> None:
    changes = [_change("2026-12-05T00:00:10Z", "champion", "1"), _change("2026-12-05T00:00:20Z", "champion", "2"),
               _change("2026-12-05T00:00:30Z", "champion", "1"), _change("2026-12-05T00:00:40Z", "champion", None),
               _change("2026-12-05T00:00:15Z", "shadow", "3"), _change("2026-12-05T00:00:05Z", "champion", "9", "n")]
    t = _epoch("2026-12-05T00:00:00Z")
    assert versions_left(changes) == [
        Left("m", "champion", "1", t + 20, "2", back=t + 30), Left("m", "champion", "2", t + 30, "1"),
        Left("m", "champion", "1", t + 40, None)]
    assert holders(changes) == [Holder("m", "shadow", "3", t + 15), Holder("n", "champion", "9", t + 5)]


def test_stale_and_unused_rows_keep_only_what_the_answer_says() -> None:
    left = [Left("m", "champion", "1", 0.0, "2"), Left("m", "champion", "2", 10.0, None)]
    spans = {"0": {"doc_count": 4, "downloads": {"doc_count": 2}, "by_host": {"buckets": [{"key": "10.0.0.1"}]},
                   "by_user": {"buckets": [{"key": "-"}, {"key": "\x1b]8;;x"}]},
                   "last": {"value_as_string": "2026-12-05T00:00:09.000Z"}},
             "1": {"doc_count": 0}}
    others = [Holder("m", "challenger", "1", 5.0), Holder("m", "champion", "2", 0.0), Holder("n", "shadow", "1", 0.0)]
    [row] = stale_rows(left, {"aggregations": {"spans": {"buckets": spans}}}, others)
    assert row.as_json() == {"model": "m", "alias": "champion", "version": "1", "moved_at": "1970-01-01T00:00:00.000Z",
                             "alias_now": "2", "downloads": 2, "files": 4, "hosts": ["10.0.0.1"],
                             "users": ["-", "\x1b]8;;x"], "last_download": "2026-12-05T00:00:09.000Z",
                             "held_by": ["challenger"]}
    held = [Holder("m", "champion", "2", 0.0), Holder("m", "shadow", "3", 0.0)]
    answer = {"aggregations": {"recent": {"buckets": {"0": {"doc_count": 1}, "1": {"doc_count": 0}}},
                               "ever": {"buckets": {"0": {"doc_count": 5, "last": {"value_as_string": "x"}},
                                                    "1": {"doc_count": 0, "last": {"value": None}}}}}}
    assert [r.as_json() for r in unused_rows(held, answer)] == [
        {"model": "m", "alias": "shadow", "version": "3", "alias_since": "1970-01-01T00:00:00.000Z",
         "last_download": None}]


HOSTILE = "m\x1b]8;;http://evil.example/\x07x\u202e"  # a link escape and a bidi override in a model name


def test_names_from_the_registry_are_shown_escaped_and_bad_options_are_one_line(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    def change(at: str, version: str) -> dict[str, Any]:
        return {"@timestamp": at, "event": {"kind": "event", "action": "alias-set"},
                "modelregistry": {"model": {"name": HOSTILE, "alias": "champion\x1b[2J", "version": version},
                                  "change": {"current": version}}}

    def download(at: str, version: str) -> dict[str, Any]:
        return {"@timestamp": at, "event": {"kind": "event", "action": "artifact-download", "outcome": "success"},
                "source": {"ip": "10.0.0.7"}, "user": {"name": "eve\r"},
                "modelregistry": {"model": {"name": HOSTILE, "version": version}, "attribution": "artifact-run",
                                  "artifact": {"path": f"1/{'a' * 32}/artifacts/model/MLmodel"}}}

    now = datetime.now(UTC)
    today = now.strftime("%Y-%m-%d")
    stamp = now.strftime("%Y-%m-%dT%H:%M")
    for doc in (change(f"{stamp}:00.000Z", "1"), change(f"{stamp}:10.000Z", "2")):
        es.index(index=f"logs-modelregistry.change-{namespace}", document=doc, op_type="create", refresh=True)
    es.index(index=f"logs-modelregistry.retrieval-{namespace}", document=download(f"{stamp}:20.000Z", "1"),
             op_type="create", refresh=True)
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
    usage = Usage(namespace, config, {}, "", today)
    shown = r"m\x1b]8;;http://evil.example/\x07x\u202e"
    assert _regwatch(usage, "downloads", "--by", "user") == _table(
        ["day", "model", "version", "user", "downloads", "files"], [[today, shown, "1", r"eve\x0d", 1, 1]], COUNTS)
    assert _regwatch(usage, "stale") == _table(
        ["model", "alias", "version", "alias moved on (UTC)", "alias now", "downloads", "last download (UTC)", "hosts",
         "users", "still held by"],
        [[shown, r"champion\x1b[2J", "1", _when(f"{stamp}:10.000Z"), "2", 1, _when(f"{stamp}:20.000Z"), "10.0.0.7",
          r"eve\x0d", "-"]], {"downloads"})
    assert _regwatch(usage, "unused") == _table(
        ["model", "alias", "version", "alias since (UTC)", "last download (UTC)"],
        [[shown, r"champion\x1b[2J", "2", _when(f"{stamp}:10.000Z"), "never"]], set())
    for args, message in ((["downloads", "--by", "team"], "error: --by 'team': one of host, user\n"),
                          (["downloads", "--since", "last week"],
                           "error: --since 'last week': not an ISO time or epoch seconds\n"),
                          (["stale", "--grace", "soon"], "error: --grace 'soon': not a duration (30s, 10m, 2h, 7d)\n"),
                          (["stale", "nosuch"],
                           f"error: no alias change of model 'nosuch' recorded in namespace '{namespace}' (is "
                           "`regwatch inventory` running?)\n")):
        done = subprocess.run([*CLI, *args, "-c", str(config)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": str(WIDTH)})
        assert (done.returncode, done.stdout, done.stderr) == (2 if "nosuch" not in args else 1, "", message), args
