"""What ``stale_usage`` and the download counts rest on, counted (#30 items 2-3): each retrieval the
inventory was asked to name is counted by result (``regwatch_retrievals_attributed_total``), and
``regwatch status`` says how many of the last day's could not be named; the registry's size is
gauged by the collector (models, versions by status, aliases)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from contract.timestamps import iso_from_epoch
from pipeline.attribution import AttributionTable, Attributor, unnamed_line
from pipeline.metrics import ShipperMetrics

RUN = "0123456789abcdef0123456789abcdef"


def _download(path: str) -> dict[str, Any]:
    return {"@timestamp": "2026-12-05T10:00:00Z", "event": {"action": "artifact-download"},
            "modelregistry": {"artifact": {"path": path}}}


def test_each_retrieval_the_inventory_is_asked_to_name_is_counted_by_result() -> None:
    table = AttributionTable.from_documents([{"modelregistry": {
        "model": {"name": "m", "version": "1"},
        "inventory": {"entity": "model_version", "source": f"runs:/{RUN}/model", "run_id": RUN}}}], [])
    metrics = ShipperMetrics()
    attributor = Attributor(Elasticsearch("http://127.0.0.1:1"), "default", metrics=metrics)
    attributor.table = table
    docs = [_download(f"1/{RUN}/artifacts/model/MLmodel"), _download(f"1/{RUN}/artifacts/model/model.pkl"),
            _download(f"1/{RUN}/artifacts/notes/readme.txt"),  # no version's files
            {"event": {"action": "model-version-get-download-uri"},  # names its version itself: not asked
             "modelregistry": {"model": {"name": "m", "version": "1"}}}]
    for doc in docs:
        attributor.enrich(doc)

    def counted(result: str) -> float | None:
        return metrics.registry.get_sample_value("regwatch_retrievals_attributed_total", {"result": result})

    assert (counted("attributed"), counted("unattributed")) == (2.0, 1.0)
    assert [d["modelregistry"].get("attribution") for d in docs] == ["artifact-run", "artifact-run",
                                                                       "unattributed", None]
    assert ShipperMetrics().registry.get_sample_value("regwatch_retrievals_attributed_total",
                                                      {"result": "unattributed"}) == 0.0  # a series from the start


def test_the_status_line_says_how_many_retrievals_could_not_be_named_and_why() -> None:
    assert unnamed_line({"artifact-run": 7, "alias": 2, "unattributed": 3, "ambiguous": 1}) == (
        "retrievals named by the inventory (last 24h): 9 of 13; 4 could not be named (1 ambiguous, 3 unattributed)")
    assert unnamed_line({"alias-latest": 2}) == (
        "retrievals named by the inventory (last 24h): 2 of 2; 0 could not be named")
    assert unnamed_line({}) == "retrievals named by the inventory (last 24h): none to name yet"


@pytest.mark.elasticsearch
def test_regwatch_status_shows_the_retrievals_that_could_not_be_named(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    now = time.time()
    operations: list[dict[str, Any]] = []
    for how, count, age in (("artifact-run", 4, 60), ("unattributed", 2, 60), ("ambiguous", 1, 60),
                            ("unattributed", 5, 3 * 86400)):  # older than a day: not counted
        for _ in range(count):
            operations += [{"create": {"_index": f"logs-modelregistry.retrieval-{namespace}"}},
                           {"@timestamp": iso_from_epoch(now - age), "event": {"action": "artifact-download"},
                            "modelregistry": {"attribution": how}}]
    es.bulk(operations=operations, refresh=True)
    config = tmp_path / "c.yaml"
    settings = {"elasticsearch": {"hosts": [es_url]}, "namespace": namespace,
                "checkpoint_file": str(tmp_path / "checkpoints.json"),
                "inventory": {"registries": [{"name": "reg", "url": "http://127.0.0.1:1"}]}}
    config.write_text(json.dumps(settings))
    run = subprocess.run([sys.executable, "-m", "regwatch.cli", "status", "-c", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1000:]
    assert run.stdout.splitlines()[-1] == ("retrievals named by the inventory (last 24h): 4 of 7; "
                                           "3 could not be named (1 ambiguous, 2 unattributed)")
    del settings["inventory"]  # no inventory: nothing to say about naming
    config.write_text(json.dumps(settings))
    run = subprocess.run([sys.executable, "-m", "regwatch.cli", "status", "-c", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "retrievals named" not in run.stdout


def test_the_registry_s_size_is_gauged_and_a_status_no_version_has_any_more_reads_zero() -> None:
    from pipeline.inventory.metrics import InventoryMetrics
    from pipeline.inventory.model import ModelState, Snapshot, VersionState

    metrics = InventoryMetrics()

    def gauges() -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("status", "")): s.value for family in metrics.registry.collect()
                if family.type == "gauge" and family.name != "regwatch_inventory_registry_up"
                for s in family.samples if s.labels["registry"] == "reg"}

    models = {"a": ModelState("a", aliases={"champion": "2", "challenger": "3"}), "b": ModelState("b")}
    versions = {("a", "1"): VersionState("a", "1", "READY"), ("a", "2"): VersionState("a", "2", "READY"),
                ("a", "3"): VersionState("a", "3", "PENDING_REGISTRATION"), ("b", "1"): VersionState("b", "1", "ODD")}
    metrics.observe(Snapshot("reg", models, versions))
    assert gauges() == {
        ("regwatch_inventory_models", ""): 2.0, ("regwatch_inventory_aliases", ""): 2.0,
        ("regwatch_inventory_model_versions", "READY"): 2.0,
        ("regwatch_inventory_model_versions", "PENDING_REGISTRATION"): 1.0,
        ("regwatch_inventory_model_versions", "FAILED_REGISTRATION"): 0.0,
        ("regwatch_inventory_model_versions", "ODD"): 1.0}
    del versions[("b", "1")]
    versions[("a", "3")] = VersionState("a", "3", "READY")
    metrics.observe(Snapshot("reg", {"a": models["a"]}, versions))
    assert gauges() == {
        ("regwatch_inventory_models", ""): 1.0, ("regwatch_inventory_aliases", ""): 2.0,
        ("regwatch_inventory_model_versions", "READY"): 3.0,
        ("regwatch_inventory_model_versions", "PENDING_REGISTRATION"): 0.0,
        ("regwatch_inventory_model_versions", "FAILED_REGISTRATION"): 0.0,
        ("regwatch_inventory_model_versions", "ODD"): 0.0}
