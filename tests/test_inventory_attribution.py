"""Every retrieval names what it retrieved, where the inventory can tell (#30 item 2), against a
real MLflow server whose access log the real client's downloads wrote: artifact downloads by
their run or logged model, alias lookups by the version in force at that moment."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipeline.attribution import (
    AMBIGUOUS,
    BY_ALIAS,
    BY_LOGGED_MODEL,
    BY_RUN,
    UNATTRIBUTED,
    Attribution,
    AttributionTable,
    Attributor,
    artifact_key,
    download_key,
    load_table,
)
from pipeline.inventory.collector import Collector
from pipeline.inventory.settings import InventorySettings
from regwatch.demo.ports import free_port
from support.mlflow_registry import mlflow_registry  # noqa: F401 - the real MLflow server fixture
from support.parsing import parse_file

mlflow = pytest.importorskip("mlflow")


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str]) -> list[str]:
        return model_input


def _files(client, run_id: str, path: str) -> int:
    count = 0
    for entry in client.list_artifacts(run_id, path):
        count += _files(client, run_id, entry.path) if entry.is_dir else 1
    return count


@pytest.mark.slow
def test_every_download_of_a_registered_version_and_every_alias_lookup_is_attributed(
        registry: tuple[str, Path], es: Elasticsearch, namespace: str, tmp_path: Path) -> None:
    url, access_log = registry
    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient(url)
    with mlflow.start_run():  # version 1: an MLflow 3 logged model
        logged = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), registered_model_name="churn")
    with mlflow.start_run() as run:  # version 2: files under a run's model/, and a file that is no version's
        mlflow.log_text("weights", "model/weights.txt")
        mlflow.log_text("{}", "model/conf/settings.json")
        mlflow.log_text("notes", "notes/readme.txt")
    client.create_model_version("churn", f"runs:/{run.info.run_id}/model", run.info.run_id)
    collector = Collector(InventorySettings.model_validate(
        {"registries": [{"name": "reg", "url": url}], "metrics_port": None}), es, namespace)
    stop = threading.Event()

    pulled: Counter[str] = Counter()  # the workload's own record: version -> models downloaded
    for target, pulls in (("1", 3), ("2", 2)):
        client.set_registered_model_alias("churn", "champion", target)
        assert collector.cycle(stop)[0].outcome == "ok"
        time.sleep(1.2)  # the access log's times are whole seconds: keep lookups clear of the poll
        for _ in range(pulls):
            mlflow.artifacts.download_artifacts("models:/churn@champion", dst_path=str(tmp_path / "dl"))
            pulled[target] += 1
        time.sleep(1.2)
        assert collector.cycle(stop)[0].outcome == "ok"
    mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/notes", dst_path=str(tmp_path / "dl"))

    # what the last poll wrote is searchable (the node refreshes every second; a busy one later):
    # the table's last look at the registry is that poll's, as the Attributor's next refresh sees it
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    table = load_table(es, namespace)
    docs = [d for d in parse_file("gunicorn", access_log) if d["event"]["action"] in
            ("artifact-download", "registered-model-alias-get") and d["event"]["outcome"] == "success"]
    for doc in docs:
        table.enrich(doc)
    downloads = [d for d in docs if d["event"]["action"] == "artifact-download"]
    lookups = [d for d in docs if d["event"]["action"] == "registered-model-alias-get"]

    def expected(path: str) -> tuple[str, str | None]:
        if f"/models/{logged.model_id}/" in path:
            return BY_LOGGED_MODEL, "1"
        if f"/{run.info.run_id}/artifacts/model/" in path:
            return BY_RUN, "2"
        return UNATTRIBUTED, None

    assert [(d["modelregistry"]["attribution"], d["modelregistry"].get("model", {}).get("version"))
            for d in downloads] == [expected(d["modelregistry"]["artifact"]["path"]) for d in downloads]
    per_version = Counter(d["modelregistry"]["model"]["version"] for d in downloads
                          if "model" in d["modelregistry"])
    files = {"1": _logged_model_files(tmp_path, logged.model_id), "2": _files(client, run.info.run_id, "model")}
    assert per_version == {v: pulled[v] * files[v] for v in pulled}
    assert sum(1 for d in downloads if d["modelregistry"]["attribution"] == UNATTRIBUTED) == 1
    # each lookup names the version champion pointed to when it was made
    assert [(d["modelregistry"]["attribution"], d["modelregistry"]["model"]) for d in lookups] == [
        (BY_ALIAS, {"name": "churn", "alias": "champion", "version": v}) for v in ["1"] * 3 + ["2"] * 2]


def _logged_model_files(tmp_path: Path, model_id: str) -> int:
    """How many files a download of the logged model fetches (its artifacts, recursively; the
    client writes registered_model_meta itself, it fetches no such file)."""
    root = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "count")))
    return sum(1 for p in root.rglob("*") if p.is_file() and p.name != "registered_model_meta")


def _state(name: str, version: str, source: str, run_id: str | None = None, model_id: str | None = None,
           status: str = "READY") -> dict[str, Any]:
    inventory = {"entity": "model_version", "source": source, "status": status, "run_id": run_id,
                 "model_id": model_id}
    return {"modelregistry": {"model": {"name": name, "version": version},
                              "inventory": {k: v for k, v in inventory.items() if v is not None}}}


RUN = "a" * 32


def test_a_download_is_attributed_to_the_longest_registered_path_that_holds_it() -> None:
    table = AttributionTable.from_documents([
        _state("a", "1", f"runs:/{RUN}/model"),
        _state("b", "4", f"runs:/{RUN}/model/inner"),  # a version registered from a folder within
        _state("c", "1", f"mlflow-artifacts:/3/{RUN}/artifacts/other"),  # a 2.x source: the artifact URI
        _state("d", "2", "models:/m-0123abcd", model_id="m-0123abcd"),
        _state("e", "1", f"runs:/{RUN}/shared"), _state("f", "9", f"runs:/{RUN}/shared"),
        _state("g", "1", f"runs:/{RUN}/gone", status="DELETED"),
    ], [])
    assert table.artifact(f"1/{RUN}/artifacts/model/MLmodel") == Attribution(BY_RUN, "a", "1")
    assert table.artifact(f"1/{RUN}/artifacts/model/inner/x.bin") == Attribution(BY_RUN, "b", "4")
    assert table.artifact(f"1/{RUN}/artifacts/modelX/MLmodel") == Attribution(UNATTRIBUTED)
    assert table.artifact(f"3/{RUN}/artifacts/other/w") == Attribution(BY_RUN, "c", "1")
    assert table.artifact("0/models/m-0123abcd/artifacts/MLmodel") == Attribution(BY_LOGGED_MODEL, "d", "2")
    assert table.artifact(f"1/{RUN}/artifacts/shared/w") == Attribution(AMBIGUOUS)
    assert table.artifact(f"1/{RUN}/artifacts/gone/w") == Attribution(UNATTRIBUTED)
    assert table.artifact("not/a/download") == Attribution(UNATTRIBUTED)
    assert download_key(f"1/{RUN}/artifacts/model/MLmodel") == (("run", RUN), "model/MLmodel")
    assert artifact_key(f"runs:/{RUN}/") == (("run", RUN), "")


def test_an_alias_lookup_is_named_by_the_version_then_in_force_and_is_ambiguous_within_a_window() -> None:
    change = {"@timestamp": "2026-12-05T00:00:10.000Z", "event": {"action": "alias-set"},
              "modelregistry": {"model": {"name": "m", "alias": "champion", "version": "2"},
                                "change": {"current": "2", "previous": "1",
                                           "observed_after": "2026-12-05T00:00:05.000Z"}}}
    first = {"@timestamp": "2026-12-05T00:00:00.000Z", "event": {"action": "alias-set"},
             "modelregistry": {"model": {"name": "m", "alias": "champion", "version": "1"},
                               "change": {"current": "1"}}}
    table = AttributionTable.from_documents([], [first, change], observed_until=1796428820.0)

    def lookup(at: str) -> dict[str, Any]:
        doc = {"@timestamp": at, "event": {"action": "registered-model-alias-get"},
               "modelregistry": {"model": {"name": "m", "alias": "champion"}}}
        table.enrich(doc)
        return doc["modelregistry"]

    assert lookup("2026-12-05T00:00:03.000Z") == {"model": {"name": "m", "alias": "champion", "version": "1"},
                                                  "attribution": BY_ALIAS}
    assert lookup("2026-12-05T00:00:07.000Z") == {"model": {"name": "m", "alias": "champion"},
                                                  "attribution": AMBIGUOUS}
    assert lookup("2026-12-05T00:00:30.000Z")["attribution"] == "alias-latest"  # after the inventory's last look
    named = {"event": {"action": "artifact-download"}, "modelregistry": {"model": {"name": "x", "version": "3"},
                                                                         "artifact": {"path": f"1/{RUN}/artifacts/m"}}}
    assert table.enrich(named) is None and named["modelregistry"] == {
        "model": {"name": "x", "version": "3"}, "artifact": {"path": f"1/{RUN}/artifacts/m"}}


def test_the_attributor_never_waits_for_an_elasticsearch_that_is_away() -> None:
    attributor = Attributor(Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0, request_timeout=2),
                            "ns", refresh_s=60)
    assert attributor.refresh() is False  # told, not raised
    doc = {"event": {"action": "artifact-download"}, "modelregistry": {"artifact": {"path": f"1/{RUN}/artifacts/m"}}}
    attributor.enrich(doc)  # by the table it has (empty): no request is made
    assert doc["modelregistry"]["attribution"] == UNATTRIBUTED and attributor.counts == {UNATTRIBUTED: 1}
