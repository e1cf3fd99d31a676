"""The registry's inventory (regwatch inventory, #30 item 1) against a real MLflow server driven by
the real MLflow client: the documents in full, two collectors writing nothing twice, a registry
that stops and comes back, hostile names. Every server a test starts is stopped, pass or fail
(``mlflow_server`` is a context manager)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipeline.docid import keyed_id
from pipeline.inventory.collector import Collector, backoff_s
from pipeline.inventory.diff import diff
from pipeline.inventory.model import ModelState, Snapshot, VersionState, entity_key
from pipeline.inventory.settings import InventorySettings
from pipeline.inventory.values import bounded, valid_text
from regwatch.demo.ports import free_port
from regwatch.demo.registry import mlflow_server

mlflow = pytest.importorskip("mlflow")



@pytest.fixture(autouse=True)
def _tracking_uri_restored() -> Iterator[None]:
    """The tests point MLflow's client at their server; what follows them finds it as it was."""
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def _settings(url: str, **extra: Any) -> InventorySettings:
    return InventorySettings.model_validate({"registries": [{"name": "reg", "url": url, **extra}],
                                             "metrics_port": None})


def _iso(ms: int) -> str:
    from contract.timestamps import iso_from_epoch

    return iso_from_epoch(ms / 1000)


def _documents(es: Elasticsearch, namespace: str, kind: str) -> list[dict[str, Any]]:
    index = f"logs-modelregistry.{kind}-{namespace}"
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    hits = es.search(index=index, size=1000, sort=[{"@timestamp": "asc"}], ignore_unavailable=True)["hits"]["hits"]
    found = []
    for hit in hits:
        doc = dict(hit["_source"], _id=hit["_id"])
        doc["event"] = {k: v for k, v in doc["event"].items() if k != "ingested"}
        found.append(doc)
    return found


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with mlflow_server(tmp_path / "mlflow", gunicorn=False) as (url, _):
        yield url


def _run(client, metrics: dict[str, float], params: dict[str, str]) -> str:
    """A run with metrics and params, and a file under model/ (what a version's source names)."""
    with mlflow.start_run() as run:
        for key, value in metrics.items():
            mlflow.log_metric(key, value)
        for key, value in params.items():
            mlflow.log_param(key, value)
        mlflow.log_text("weights", "model/weights.txt")
    return run.info.run_id


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str]) -> list[str]:
        return model_input


@pytest.mark.slow
def test_the_collector_writes_every_model_version_alias_and_their_lineage_as_documents(
        registry: str, es: Elasticsearch, namespace: str) -> None:
    """Registered models, versions (a run's and an MLflow 3 logged model's), tags, stage, aliases,
    and each version's metrics and params: every document the collector writes, in full."""
    mlflow.set_tracking_uri(registry)
    client = mlflow.MlflowClient(registry)
    run_id = _run(client, {"accuracy": 0.91, "loss": 0.2}, {"lr": "0.01"})
    client.create_registered_model("fraud", tags={"team": "risk"})
    v1 = client.create_model_version("fraud", f"runs:/{run_id}/model", run_id, tags={"owner": "ana"})
    with mlflow.start_run() as run3:
        mlflow.log_param("depth", "7")
        logged = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), registered_model_name="fraud")
        mlflow.log_metric("accuracy", 0.95, model_id=logged.model_id)
    client.transition_model_version_stage("fraud", "1", "Staging")
    client.set_registered_model_alias("fraud", "champion", "1")
    client.set_registered_model_alias("fraud", "challenger", "2")
    model = client.get_registered_model("fraud")
    v1, v2 = client.get_model_version("fraud", "1"), client.get_model_version("fraud", "2")
    assert v2.source == f"models:/{logged.model_id}"

    started = time.time()
    reports = Collector(_settings(registry), es, namespace).run(threading.Event(), once=True)
    assert [(r.outcome, r.requests) for r in reports] == [("ok", 4)]  # 2 listings, 1 run, 1 logged model
    assert reports[0].changes == ["registered-model-created", "alias-set", "alias-set", "model-version-created",
                                  "model-version-created"]

    states = _documents(es, namespace, "inventory")
    [seen] = [s for s in states if s["modelregistry"]["inventory"]["entity"] == "registry"]
    states = [s for s in states if s is not seen]
    observed = states[0]["@timestamp"]
    registry_key = entity_key("registry", "reg")
    assert seen == {"_id": keyed_id("inventory", "reg", "observed", int(_seconds(observed) * 1000),
                                    seen["modelregistry"]["inventory"]["digest"]),
                    "@timestamp": observed, "ecs": {"version": "9.4.0"},
                    "data_stream": {"type": "logs", "dataset": "modelregistry.inventory", "namespace": namespace},
                    "event": {"kind": "state", "dataset": "modelregistry.inventory", "action": "registry-observed"},
                    "modelregistry": {"registry": "reg", "inventory": {
                        "key": registry_key, "entity": "registry",
                        "digest": seen["modelregistry"]["inventory"]["digest"],
                        "models": 1, "versions": 2, "alias_count": 2}}}
    assert started <= _seconds(observed) <= time.time()
    base = {"data_stream": {"type": "logs", "dataset": "modelregistry.inventory", "namespace": namespace},
            "@timestamp": observed, "ecs": {"version": "9.4.0"}}
    changes = _documents(es, namespace, "change")
    head = {c["modelregistry"]["inventory"]["key"]: c["_id"] for c in changes}
    model_key, v1_key, v2_key = (entity_key("registered_model", "fraud"), entity_key("model_version", "fraud", "1"),
                                 entity_key("model_version", "fraud", "2"))
    expected_states = {
        model_key: base | {
            "event": {"kind": "state", "dataset": "modelregistry.inventory", "action": "registered-model-observed"},
            "modelregistry": {"registry": "reg", "model": {"name": "fraud"}, "inventory": {
                "key": model_key, "entity": "registered_model", "aliases": ["challenger", "champion"],
                "alias_versions": {"challenger": "2", "champion": "1"},
                "created": _iso(model.creation_timestamp), "updated": _iso(model.last_updated_timestamp),
                "tags": {"team": "risk"},
                "digest": states_by_key(states)[model_key]["modelregistry"]["inventory"]["digest"]}}},
        v1_key: base | {
            "event": {"kind": "state", "dataset": "modelregistry.inventory", "action": "model-version-observed"},
            "modelregistry": {"registry": "reg", "model": {"name": "fraud", "version": "1", "stage": "Staging"},
                              "inventory": {
                "key": v1_key, "entity": "model_version", "status": "READY", "source": f"runs:/{run_id}/model",
                "run_id": run_id, "artifact_uri": f"mlflow-artifacts:/0/{run_id}/artifacts",
                "aliases": ["champion"], "created": _iso(v1.creation_timestamp),
                "updated": _iso(v1.last_updated_timestamp), "tags": {"owner": "ana"}, "params": {"lr": "0.01"},
                "metrics": {"accuracy": 0.91, "loss": 0.2},
                "digest": states_by_key(states)[v1_key]["modelregistry"]["inventory"]["digest"],
                "lineage_read": True, "lineage_final": True}}},
        v2_key: base | {
            "event": {"kind": "state", "dataset": "modelregistry.inventory", "action": "model-version-observed"},
            "modelregistry": {"registry": "reg", "model": {"name": "fraud", "version": "2", "stage": "None"},
                              "inventory": {
                "key": v2_key, "entity": "model_version", "status": "READY", "source": f"models:/{logged.model_id}",
                "run_id": run3.info.run_id, "model_id": logged.model_id,
                "artifact_uri": f"mlflow-artifacts:/0/models/{logged.model_id}/artifacts",
                "aliases": ["challenger"], "created": _iso(v2.creation_timestamp),
                "updated": _iso(v2.last_updated_timestamp), "params": {"depth": "7"}, "metrics": {"accuracy": 0.95},
                "digest": states_by_key(states)[v2_key]["modelregistry"]["inventory"]["digest"],
                "lineage_read": True, "lineage_final": True}}},
    }
    for key, doc in states_by_key(states).items():
        assert doc.pop("_id") == keyed_id("inventory", "reg", key, doc["modelregistry"]["inventory"]["digest"], "")
        assert doc == expected_states[key], key
    assert len(states) == 3

    def change(at: str, action: str, model: dict[str, str], key: str, **what: str) -> dict[str, Any]:
        doc = {"@timestamp": at, "ecs": {"version": "9.4.0"},
               "event": {"kind": "event", "dataset": "modelregistry.change", "action": action},
               "data_stream": {"type": "logs", "dataset": "modelregistry.change", "namespace": namespace},
               "modelregistry": {"registry": "reg", "model": {"name": "fraud", **model}, "inventory": {"key": key}}}
        if what:
            doc["modelregistry"]["change"] = what
        return doc

    for found in changes:
        assert found.pop("_id") == head[found["modelregistry"]["inventory"]["key"]]  # one change each
    champion, challenger = {"alias": "champion", "version": "1"}, {"alias": "challenger", "version": "2"}
    assert sorted(changes, key=_canonical) == sorted([
        change(_iso(model.creation_timestamp), "registered-model-created", {}, model_key),
        change(_iso(v1.creation_timestamp), "model-version-created", {"version": "1"}, v1_key, current="READY"),
        change(_iso(v2.creation_timestamp), "model-version-created", {"version": "2"}, v2_key, current="READY"),
        change(observed, "alias-set", champion, entity_key("alias", "fraud", "champion"), field="alias", current="1"),
        change(observed, "alias-set", challenger, entity_key("alias", "fraud", "challenger"), field="alias",
               current="2"),
    ], key=_canonical)


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)


def states_by_key(states: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["modelregistry"]["inventory"]["key"]: s for s in states}


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_two_collectors_polling_the_same_registry_write_nothing_twice(registry: str, es: Elasticsearch,
                                                                      namespace: str) -> None:
    """Two collectors (and a third started late, which reads back what they wrote) take turns over
    a registry that changes between their polls: each change and each state is one document."""
    mlflow.set_tracking_uri(registry)
    client = mlflow.MlflowClient(registry)
    run_id = _run(client, {"accuracy": 0.9}, {})
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", f"runs:/{run_id}/model", run_id)
    first, second = Collector(_settings(registry), es, namespace), Collector(_settings(registry), es, namespace)
    stop = threading.Event()
    reports = []
    steps = [lambda: client.set_registered_model_alias("m", "champion", "1"),
             lambda: client.set_registered_model_alias("m", "champion", "2"),
             lambda: client.set_model_version_tag("m", "2", "validated", "yes"),
             lambda: client.set_registered_model_alias("m", "champion", "1"),
             lambda: client.set_registered_model_alias("m", "champion", "2"),  # 1 -> 2 again: a new change
             lambda: client.delete_registered_model_alias("m", "champion"),
             lambda: client.delete_model_version("m", "3")]
    for step in steps:
        step()
        reports += [first.cycle(stop)[0], second.cycle(stop)[0]]
    late = Collector(_settings(registry), es, namespace)
    reports.append(late.cycle(stop)[0])
    assert all(r.outcome == "ok" for r in reports)
    # the second collector: every change and state a duplicate; only that it polled is its own
    # (its first poll read back what the first one had just written: only that it polled was new)
    firsts, seconds = reports[0:-1:2], reports[1:-1:2]
    assert [(r.documents, r.written) for r in seconds] == [(1, 1)] + [(r.documents, 1) for r in firsts[1:]]
    assert (reports[-1].documents, reports[-1].written) == (1, 1)  # the late one: nothing new to say but that

    changes = _documents(es, namespace, "change")
    what = [c["modelregistry"].get("change", {}) for c in changes]
    described = [(c["event"]["action"], c["modelregistry"]["model"].get("version"), w.get("field"),
                  w.get("previous"), w.get("current")) for c, w in zip(changes, what, strict=True)]
    assert sorted(described, key=str) == sorted([
        ("registered-model-created", None, None, None, None),
        ("model-version-created", "1", None, None, "READY"),
        ("model-version-created", "2", None, None, "READY"),
        ("model-version-created", "3", None, None, "READY"),
        ("alias-set", "1", "alias", None, "1"),
        ("alias-set", "2", "alias", "1", "2"),
        ("model-version-updated", "2", "tags", "", "validated=yes"),
        ("alias-set", "1", "alias", "2", "1"),
        ("alias-set", "2", "alias", "1", "2"),
        ("alias-removed", "2", "alias", "2", None),
        ("model-version-deleted", "3", None, "READY", None),
    ], key=str)
    # each change names the one before it on the same key: one chain per key, no branch
    by_key: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_key.setdefault(change["modelregistry"]["inventory"]["key"], []).append(change)
    for chain in by_key.values():
        assert [c["modelregistry"].get("change", {}).get("previous_id") for c in chain] == [
            None, *[c["_id"] for c in chain[:-1]]]

    # every state written once: per key, a chain of states each different from the one before
    states = [s for s in _documents(es, namespace, "inventory")
              if s["modelregistry"]["inventory"]["entity"] != "registry"]
    per_key: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        per_key.setdefault(state["modelregistry"]["inventory"]["key"], []).append(state)
    for key, chain in per_key.items():
        previous_id, previous_digest = "", ""
        for state in chain:
            digest = state["modelregistry"]["inventory"]["digest"]
            assert digest != previous_digest and state["_id"] == keyed_id("inventory", "reg", key, digest, previous_id)
            previous_id, previous_digest = state["_id"], digest
    aliases = [d["modelregistry"]["inventory"].get("alias_versions", {})
               for d in per_key[entity_key("registered_model", "m")]]
    assert [a for i, a in enumerate(aliases) if i == 0 or a != aliases[i - 1]] == [
        {"champion": "1"}, {"champion": "2"}, {"champion": "1"}, {"champion": "2"}, {}]
    # version 1 came back to holding champion: a new state document, the newest of its chain
    v1 = per_key[entity_key("model_version", "m", "1")]
    assert [d["modelregistry"]["inventory"].get("aliases", []) for d in v1] == [["champion"], [], ["champion"], []]


@pytest.mark.slow
def test_a_registry_that_stops_costs_a_backoff_and_what_changed_meanwhile_is_written_when_it_is_back(
        tmp_path: Path, es: Elasticsearch, namespace: str) -> None:
    """The registry stops: each poll is a failure with a longer wait (2 s, then 4 s), polls in
    between are skipped, nothing is written and the collector goes on; when it is back, the alias
    moved while the collector could not see it is written once, with the window it happened in."""
    port, workdir = free_port(), tmp_path / "mlflow"
    with mlflow_server(workdir, port=port, gunicorn=False) as (url, _):
        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient(url)
        run_id = _run(client, {"accuracy": 0.8}, {})
        client.create_registered_model("m")
        client.create_model_version("m", f"runs:/{run_id}/model", run_id)
        client.create_model_version("m", f"runs:/{run_id}/model", run_id)
        client.set_registered_model_alias("m", "champion", "1")
        collector = Collector(_settings(url, timeout_s=2), es, namespace)
        poller = collector.pollers[0]
        polled_from = time.time()
        assert collector.cycle()[0].outcome == "ok"
        polled_until = time.time()
    before = len(_documents(es, namespace, "change"))
    down = collector.cycle()[0]
    assert (down.outcome, poller.failures) == ("registry_down", 1)
    assert "127.0.0.1" in down.message and 1.5 <= poller.next_at - time.monotonic() <= 2.0
    assert collector.cycle()[0].outcome == "backing_off"  # asked again only after the wait
    time.sleep(max(0.0, poller.next_at - time.monotonic()))
    assert collector.cycle()[0].outcome == "registry_down" and 3.5 <= poller.next_at - time.monotonic() <= 4.0
    with mlflow_server(workdir, port=port, gunicorn=False) as (url, _):
        mlflow.MlflowClient(url).set_registered_model_alias("m", "champion", "2")
        time.sleep(max(0.0, poller.next_at - time.monotonic()))
        back = collector.cycle()[0]
    assert (back.outcome, back.changes, poller.failures) == ("ok", ["alias-set"], 0)
    changes = _documents(es, namespace, "change")
    assert len(changes) == before + 1
    moved = changes[-1]["modelregistry"]
    assert moved["model"] == {"name": "m", "version": "2", "alias": "champion"}
    # it moved after the last poll that saw version 1 (the window history tells), and was seen now
    assert moved["change"]["previous"] == "1"
    assert polled_from <= _seconds(moved["change"]["observed_after"]) <= polled_until
    assert backoff_s(1, 300) == 2 and backoff_s(8, 300) == 256 and backoff_s(9, 300) == 300 and backoff_s(0, 300) == 0


def test_an_answer_that_is_not_the_registry_is_a_failed_poll_not_a_crash(tmp_path: Path, es: Elasticsearch,
                                                                          namespace: str) -> None:
    """A proxy's HTML page, a JSON list, a 500: each a failed poll with its reason, nothing written.
    Then a registry (not MLflow, which drops them) whose JSON names a model with a lone surrogate
    escape: stored as valid Unicode (U+FFFD), never a document Elasticsearch refuses."""
    import http.server

    answers = [(200, b"<html>login</html>"), (200, b"[1, 2]"), (500, b"{}"), (200, b'{"registered_models": 7}'),
               (200, b'{"registered_models": [{"name": "a\\ud800b", "tags": [{"key": "\\udfff", "value": 1}]}]}')]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, body = answers[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        reasons = []
        for _ in range(4):
            report = Collector(_settings(url), es, namespace).pollers[0].poll()
            reasons.append((report.outcome, report.message.split(": ", 1)[1]))
            answers.pop(0)
        assert reasons == [("registry_down", "the answer is not JSON"),
                           ("registry_down", "the answer is not a JSON object"),
                           ("registry_down", "HTTP 500"), ("registry_down", "registered_models is not a list")]
        assert _documents(es, namespace, "change") == [] and _documents(es, namespace, "inventory") == []
        assert Collector(_settings(url), es, namespace).pollers[0].poll().outcome == "ok"
    finally:
        server.shutdown()
        server.server_close()
    [state, _] = sorted(_documents(es, namespace, "inventory"), key=lambda d: "model" not in d["modelregistry"])
    assert state["modelregistry"]["model"] == {"name": "a\ufffdb"}
    assert state["modelregistry"]["inventory"]["tags"] == {"\ufffd": "1"}


@pytest.mark.slow
def test_hostile_names_and_tags_are_stored_as_the_registry_holds_them_within_the_contract_s_bounds(
        registry: str, es: Elasticsearch, namespace: str) -> None:
    """Names MLflow accepts (a 40,000-character name, escape codes, NUL, right-to-left overrides,
    markup) and tags (40,000 characters, a lone surrogate sent over REST) become documents that
    Elasticsearch takes: valid Unicode, 1 KiB names and 8 KiB values, a cut one marked with a
    digest so two long names sharing a prefix stay two models."""
    client = mlflow.MlflowClient(registry)
    long_a, long_b = "x" * 40_000, "x" * 39_999 + "y"
    names = [long_a, long_b, "red\x1b[31m\x1b]8;;evil.example\x07", "nul\x00", "\u202eevil\u202c",
             "| a | b |", "💥" * 100]
    for name in names:
        client.create_registered_model(name)
    client.set_registered_model_tag("| a | b |", "big", "v" * 40_000)

    reports = Collector(_settings(registry), es, namespace).run(threading.Event(), once=True)
    assert reports[0].outcome == "ok" and reports[0].written == 2 * len(names) + 1  # and registry-observed
    states = [s for s in _documents(es, namespace, "inventory") if "model" in s["modelregistry"]]
    stored = {d["modelregistry"]["model"]["name"]: d["modelregistry"]["inventory"] for d in states}
    cut_a, cut_b = bounded(long_a), bounded(long_b)
    assert cut_a != cut_b and len(cut_a.encode()) == len(cut_b.encode()) == 1024
    assert cut_a.startswith("x" * 1000) and cut_a[-9] == "…"
    assert set(stored) == {cut_a, cut_b, *names[2:]}  # the short ones exactly as typed
    tags = stored["| a | b |"]["tags"]
    assert tags == {"big": bounded("v" * 40_000, 8192)}
    assert len(tags["big"].encode()) == 8192
    created = {c["modelregistry"]["model"]["name"] for c in _documents(es, namespace, "change")}
    assert created == set(stored)


def test_text_from_the_registry_is_valid_unicode_within_its_bound() -> None:
    assert valid_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert bounded("é" * 600) == bounded("é" * 600) and len(bounded("é" * 600).encode()) <= 1024
    assert bounded("é" * 600).encode().decode() == bounded("é" * 600)  # never a cut character
    assert bounded("short\x00\x1b") == "short\x00\x1b"  # kept as typed: escaped where shown, not here


def _snapshot(aliases: dict[str, str], versions: tuple[str, ...] = ("1", "2"), complete: bool = True) -> Snapshot:
    return Snapshot("reg", models={"m": ModelState("m", created=1, aliases=aliases)},
                    versions={("m", v): VersionState("m", v, status="READY", created=int(v)) for v in versions},
                    complete=complete)


def test_an_alias_that_moves_back_and_forth_makes_a_new_change_each_time() -> None:
    """1 -> 2 -> 1 -> 2: the second 1 -> 2 names the change before it, so it is not the first one's id."""
    heads: dict[str, str] = {}
    ids, before = [], None
    for step, target in enumerate(["1", "2", "1", "2"]):
        after = _snapshot({"champion": target})
        result = diff("reg", before, after, "ns", 1000 * (step + 10), 1000 * (step + 9) if before else None, heads)
        heads = result.heads
        ids += [doc_id for (doc_id, doc), change in zip(result.documents, result.changes, strict=True)
                if change.action == "alias-set"]
        before = after
    assert len(ids) == len(set(ids)) == 4


def test_a_listing_cut_short_infers_no_deletion() -> None:
    full, cut = _snapshot({}, ("1", "2")), _snapshot({}, ("1",), complete=False)
    assert diff("reg", full, cut, "ns", 2000, 1000, {}).changes == []
    gone = diff("reg", full, _snapshot({}, ("1",)), "ns", 2000, 1000, {}).changes
    assert [(c.action, c.version, c.at_ms, c.observed_after_ms) for c in gone] == [
        ("model-version-deleted", "2", 2000, 1000)]


@pytest.mark.slow
def test_the_request_budget_bounds_each_poll_and_lineage_is_read_over_the_next_ones(
        registry: str, es: Elasticsearch, namespace: str) -> None:
    """Three versions from three runs, a budget of 3 requests: the two listings and one run per
    poll, until every version's metrics are known; a budget the listings do not fit writes nothing."""
    mlflow.set_tracking_uri(registry)
    client = mlflow.MlflowClient(registry)
    client.create_registered_model("m")
    for accuracy in (0.7, 0.8, 0.9):
        run_id = _run(client, {"accuracy": accuracy}, {})
        client.create_model_version("m", f"runs:/{run_id}/model", run_id)
    starved = Collector(_settings(registry, max_requests_per_poll=2, page_size=1), es, namespace).cycle()[0]
    assert (starved.outcome, starved.requests, starved.documents) == ("incomplete", 2, 0)
    collector = Collector(_settings(registry, max_requests_per_poll=3), es, namespace)
    known = []
    for _ in range(4):
        report = collector.cycle()[0]
        assert (report.outcome, report.requests) == ("ok", 3 if len(known) < 3 else 2)
        versions = collector.pollers[0].previous.versions.values()  # type: ignore[union-attr]
        known.append(sorted(v.lineage.metrics["accuracy"] for v in versions if v.lineage is not None))
    assert [len(k) for k in known] == [1, 2, 3, 3] and known[-1] == [0.7, 0.8, 0.9]
    assert all(set(a) <= set(b) for a, b in zip(known, known[1:], strict=False))  # what was read stays known
    assert _documents(es, namespace, "inventory") != [] and _documents(es, namespace, "change") != []


@pytest.mark.slow
def test_the_daemon_polls_every_interval_serves_metrics_and_stops_on_sigterm(
        registry: str, es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path, daemons) -> None:
    """regwatch inventory as a daemon: each change written within a poll or two, /metrics, SIGTERM."""
    import os
    import sys
    import urllib.request

    import yaml

    port = free_port()
    config = tmp_path / "regwatch.yaml"
    config.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
        "inventory": {"interval_s": 0.5, "metrics_port": port,
                      "registries": [{"name": "reg", "url": registry}]}}))
    daemon = daemons.start([sys.executable, "-m", "regwatch.cli", "inventory", "-c", str(config)],
                           env={**os.environ, "ES_URL": es_url})
    client = mlflow.MlflowClient(registry)
    client.create_registered_model("m")

    def changes() -> list[str]:
        return [c["event"]["action"] for c in _documents(es, namespace, "change")]

    deadline = time.monotonic() + 60
    while "registered-model-created" not in changes() and time.monotonic() < deadline:
        time.sleep(0.5)
    client.set_registered_model_alias("m", "champion", client.create_model_version("m", "runs:/" + "b" * 32 + "/m",
                                                                                  "b" * 32).version)
    while "alias-set" not in changes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(changes()) == ["alias-set", "model-version-created", "registered-model-created"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'regwatch_inventory_models{registry="reg"} 1.0' in metrics
    assert 'regwatch_inventory_aliases{registry="reg"} 1.0' in metrics
    assert 'regwatch_inventory_registry_up{registry="reg"} 1.0' in metrics
    daemon.send_signal(15)
    assert daemon.wait(timeout=20) == 0


@pytest.mark.slow
def test_two_collector_daemons_running_side_by_side_write_each_change_once(
        registry: str, es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path, daemons) -> None:
    """Two `regwatch inventory` daemons at once (for availability), polling every 0.3 s while the
    registry changes: each change is one document, whichever collector wrote it first."""
    import os
    import sys

    import yaml

    client = mlflow.MlflowClient(registry)
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", "runs:/" + "c" * 32 + "/m", "c" * 32)
    config = tmp_path / "regwatch.yaml"
    config.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
        "inventory": {"interval_s": 0.3, "metrics_port": None, "registries": [{"name": "reg", "url": registry}]}}))
    for _ in range(2):
        daemons.start([sys.executable, "-m", "regwatch.cli", "inventory", "-c", str(config)],
                      env={**os.environ, "ES_URL": es_url})

    def observed() -> int:
        return sum(1 for d in _documents(es, namespace, "inventory")
                   if d["modelregistry"]["inventory"]["entity"] == "registry")

    def settle() -> None:
        """Until both collectors have polled twice since now (each poll writes registry-observed)."""
        start, deadline = observed(), time.monotonic() + 60
        while observed() < start + 4 and time.monotonic() < deadline:
            time.sleep(0.3)

    settle()
    for target in ("1", "2", "3", "1"):
        client.set_registered_model_alias("m", "champion", target)
        settle()
    client.delete_registered_model_alias("m", "champion")
    settle()
    daemons.stop_all()
    described = [(c["event"]["action"], c["modelregistry"]["model"].get("version"),
                  c["modelregistry"].get("change", {}).get("previous")) for c in _documents(es, namespace, "change")]
    assert sorted(described, key=str) == sorted([
        ("registered-model-created", None, None), ("model-version-created", "1", None),
        ("model-version-created", "2", None), ("model-version-created", "3", None),
        ("alias-set", "1", None), ("alias-set", "2", "1"), ("alias-set", "3", "2"), ("alias-set", "1", "3"),
        ("alias-removed", "1", "1")], key=str)
