"""The shipper names what each retrieval retrieved (#30 item 2), from what ``regwatch inventory``
wrote: a real MLflow server, the real client's downloads in its gunicorn access log, the real
collector, then ``regwatch ship --once`` with the inventory configured. Without it configured, the
same lines ship as before, unnamed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline.attribution import BY_RUN, UNATTRIBUTED
from pipeline.inventory.collector import Collector
from pipeline.inventory.settings import InventorySettings
from support.mlflow_registry import mlflow_registry  # noqa: F401 - the real MLflow server fixture
from support.shipping import write_config

mlflow = pytest.importorskip("mlflow")
pytestmark = [pytest.mark.slow, pytest.mark.elasticsearch]
CLI = [sys.executable, "-m", "regwatch.cli"]


def _downloads(es: Elasticsearch, namespace: str) -> list[dict]:
    index = f"logs-modelregistry.retrieval-{namespace}"
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"term": {"event.action": "artifact-download"}})["hits"]["hits"]
    return [hit["_source"] for hit in hits]


def test_ship_names_each_download_by_the_version_its_files_belong_to(
        registry: tuple[str, Path], es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    url, access_log = registry
    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient(url)
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
        mlflow.log_text("notes", "notes/readme.txt")
    client.create_registered_model("churn")
    client.create_model_version("churn", f"runs:/{run.info.run_id}/model", run.info.run_id)
    collector = Collector(InventorySettings.model_validate(
        {"registries": [{"name": "reg", "url": url}], "metrics_port": None}), es, namespace)
    assert collector.cycle(threading.Event())[0].outcome == "ok"
    for _ in range(3):
        mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "dl"))
    mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/notes", dst_path=str(tmp_path / "dl"))
    time.sleep(0.5)  # gunicorn writes its line after the answer
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")  # what the collector wrote is searchable

    config = write_config(tmp_path / "ship.yaml", es_url, namespace, [str(access_log)],
                          inputs=[{"paths": [str(access_log)], "format": "gunicorn"}],
                          inventory={"metrics_port": None, "registries": [{"name": "reg", "url": url}]})
    shipped = subprocess.run([*CLI, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                             timeout=180)
    assert shipped.returncode == 0, shipped.stderr
    downloads = _downloads(es, namespace)
    named = Counter((d["modelregistry"]["attribution"], d["modelregistry"].get("model", {}).get("version"))
                    for d in downloads)
    assert named == {(BY_RUN, "1"): 3, (UNATTRIBUTED, None): 1}
    assert all(d["modelregistry"]["model"]["name"] == "churn" for d in downloads
               if d["modelregistry"]["attribution"] == BY_RUN)


def test_without_an_inventory_the_downloads_ship_unnamed(registry: tuple[str, Path], es: Elasticsearch,
                                                          es_url: str, namespace: str, tmp_path: Path) -> None:
    url, access_log = registry
    mlflow.set_tracking_uri(url)
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "dl"))
    time.sleep(0.5)
    config = write_config(tmp_path / "ship.yaml", es_url, namespace, [str(access_log)],
                          inputs=[{"paths": [str(access_log)], "format": "gunicorn"}])
    shipped = subprocess.run([*CLI, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                             timeout=180)
    assert shipped.returncode == 0, shipped.stderr
    downloads = _downloads(es, namespace)
    assert len(downloads) == 1 and "attribution" not in downloads[0]["modelregistry"]
