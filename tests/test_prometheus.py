"""Prometheus and Grafana: the real Prometheus (Debian's package) scrapes a real probe, shipper and
rule runner on 127.0.0.1; their /metrics pass ``promtool check metrics``; every panel of the
Grafana dashboard returns series from it; the per-model counters agree with Elasticsearch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from elasticsearch import Elasticsearch

from grafana import dashboard as grafana_dashboard
from regwatch.demo import free_port
from support.grafana_checker import grafana_variables, problems, queries
from support.monitoring import command, prometheus, wait_for
from support.registry_stub import registry_stub
from support.shipping import write_config

CLI = [sys.executable, "-m", "regwatch.cli"]
SAMPLE = Path(__file__).parent / "samples" / "mlflow-nginx" / "nginx_access.log"
QUICK_RULE = """
rules:
  - name: any-registry-error
    type: threshold
    kinds: [error]
    window: 1h
    interval: 2s
    condition: {op: ">", value: 0}
    notify: []
    severity: warning
"""


def test_the_dashboard_file_is_generated_and_follows_grafanas_rules() -> None:
    on_disk = json.loads(grafana_dashboard.PATH.read_text())
    assert on_disk == grafana_dashboard.dashboard(), "run `python -m grafana.dashboard`"
    assert problems(on_disk) == []
    titles = {p["title"] for p in on_disk["panels"]}
    for wanted in ("Availability", "Probe latency p95 per step", "Registry operations per kind", "Error ratio",
                   "Shipper lag", "Alerts firing"):
        assert wanted in titles


def test_every_panel_asks_for_the_datasource_variable_so_file_provisioning_works() -> None:
    """``${DS_PROMETHEUS}`` (an import input) stayed a uid that does not exist when the file was
    provisioned from a folder: a ``datasource`` variable resolves under import and provisioning."""
    on_disk = json.loads(grafana_dashboard.PATH.read_text())
    assert "__inputs" not in on_disk and "DS_PROMETHEUS" not in grafana_dashboard.PATH.read_text()
    [variable] = [v for v in on_disk["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    refs = [p["datasource"] for p in on_disk["panels"]] + [t["datasource"] for p in on_disk["panels"]
                                                           for t in p.get("targets", [])]
    refs += [v["datasource"] for v in on_disk["templating"]["list"] if "datasource" in v]
    assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)
    [grafana] = [r for r in on_disk["__requires"] if r["id"] == "grafana"]
    assert grafana["version"] == grafana_dashboard.MIN_GRAFANA


def test_the_checker_refuses_an_import_input_that_provisioning_would_leave_unresolved() -> None:
    old = json.loads(json.dumps(grafana_dashboard.dashboard()))
    old["__inputs"] = [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                        "pluginId": "prometheus", "pluginName": "Prometheus"}]
    old["panels"][0]["datasource"] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert any("${DS_PROMETHEUS} is an import input" in problem for problem in problems(old))


def test_the_checker_refuses_what_grafana_would_change_or_break() -> None:
    good = grafana_dashboard.dashboard()
    bad = json.loads(json.dumps(good))
    bad["schemaVersion"] = 20
    bad["refresh"] = False
    bad["timepicker"] = {"time_options": ["5m"]}
    bad["panels"][0]["datasource"] = {"type": "prometheus", "uid": "${DS_OTHER}"}
    bad["panels"][1]["gridPos"]["x"] = 20
    bad["panels"][2]["id"] = bad["panels"][3]["id"]
    bad["panels"][4]["targets"].append(dict(bad["panels"][4]["targets"][0]))
    bad["panels"][5]["transformations"] = [{"id": "timeSeriesTable", "options": {"refIdToStat": {"A": "mean"}}}]
    found = " | ".join(problems(bad))
    for expected in ("schemaVersion 20", "refresh is not a string", "time_options", "${DS_OTHER}", "> 24 columns",
                     "used twice", "refIds", "timeSeriesTable transformation"):
        assert expected in found


def _daemon(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_prometheus_scrapes_probe_shipper_and_runner_and_every_panel_has_series(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    promtool = command("promtool")
    ports = {"probe": free_port(), "shipper": free_port(), "rules": free_port()}
    log = tmp_path / "access.log"
    log.write_bytes(SAMPLE.read_bytes() + b"this is not an nginx line\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "quick.yaml").write_text(QUICK_RULE)
    daemons: list[subprocess.Popen] = []
    with registry_stub() as (url, _stub):
        config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)], metrics_port=ports["shipper"])
        raw = yaml.safe_load(config.read_text())
        raw["probe"] = {"interval_s": 1, "metrics_port": ports["probe"], "targets": [
            {"name": "mlflow", "url": f"{url}/health", "environment": "test", "timeout_s": 2,
             "transaction": {"model": "churn"}}]}
        raw["rules"] = {"folder": str(tmp_path / "rules"), "metrics_port": ports["rules"], "runner_id": "prom-test"}
        config.write_text(yaml.safe_dump(raw))
        try:
            for name, args in (("shipper", ["ship", "-c", str(config), "--log-console"]),
                               ("probe", ["probe", "-c", str(config), "--log-console"]),
                               ("rules", ["rules", "run", "-c", str(config)])):
                daemons.append(_daemon(args, tmp_path / f"{name}.log"))
            jobs = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
            with prometheus(tmp_path / "prometheus", jobs) as prom:
                wait_for(lambda: prom.targets_up() == {name: "up" for name in jobs}, 60, "every scrape target up")

                # Each live /metrics passes promtool's lint.
                for name, port in ports.items():
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                                          text=True, check=False)
                    assert lint.returncode == 0, f"{name}: {lint.stdout}{lint.stderr}"

                up = wait_for(lambda: prom.query('platform_availability{target="mlflow",environment="test"}'), 30,
                              "platform_availability")
                assert up[0]["value"][1] == "1"

                # Every panel query returns series (numbers, not only NaN).
                def has_series(expr: str) -> bool:
                    result = prom.query(grafana_variables(expr))
                    return any(sample["value"][1] not in ("NaN", "+Inf", "-Inf") for sample in result)

                for title, ref_id, expr in queries(grafana_dashboard.dashboard()):
                    wait_for(lambda expr=expr: has_series(expr), 90, f"series for {title} {ref_id}: {expr}")

                # Counted once: Prometheus' per-kind totals are Elasticsearch's counts.
                es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
                for kind in ("registration", "retrieval", "version", "error"):
                    in_es = es.count(index=f"logs-modelregistry.{kind}-{namespace}",
                                     query={"exists": {"field": "modelregistry.model.name"}})["count"]
                    result = prom.query(f'sum(regwatch_registry_events_total{{kind="{kind}"}})')
                    in_prom = float(result[0]["value"][1]) if result else 0.0
                    assert in_prom == in_es, kind
                    # every user's call of the kind, once (one source here: max over sources is its count)
                    users = {"bool": {"must_not": [{"term": {"modelregistry.synthetic": True}}]}}
                    calls = es.count(index=f"logs-modelregistry.{kind}-{namespace}", query=users)["count"]
                    result = prom.query(f'max(sum by (source) (regwatch_registry_calls_total{{kind="{kind}"}}))')
                    assert (float(result[0]["value"][1]) if result else 0.0) == calls, kind
                failed = es.count(index=f"logs-modelregistry.*-{namespace}", query={"bool": {
                    "filter": [{"terms": {"modelregistry.failure": ["server", "auth", "throttled"]}}],
                    "must_not": [{"term": {"modelregistry.synthetic": True}}]}})["count"]
                result = prom.query('sum(regwatch_registry_calls_total{failure=~"server|auth|throttled"})')
                assert (float(result[0]["value"][1]) if result else 0.0) == failed > 0
                steps = {s["metric"]["step"] for s in prom.query("regwatch_probe_duration_seconds_count")}
                assert steps == {"health", "search_registered_models", "get_latest_versions", "get_download_uri"}
                firing = prom.query('regwatch_alerts_firing{rule="any-registry-error"}')
                assert firing and firing[0]["value"][1] == "1"
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                daemon.wait(20)
    for daemon, name in zip(daemons, ("shipper", "probe", "rules"), strict=True):
        assert daemon.returncode in (0, -15), (tmp_path / f"{name}.log").read_text()[-2000:]


def test_hostile_model_names_stay_bounded_and_the_exposition_stays_valid() -> None:
    """Model names come from log lines: NUL bytes, quotes, line breaks, non-ASCII and a megabyte
    name become label values promtool accepts; the count and the length of names are capped."""
    from collections import Counter

    from prometheus_client import generate_latest

    from pipeline.metrics import MODEL_LABEL_CHARS, OTHER_MODELS, ShipperMetrics

    metrics = ShipperMetrics(max_models=5)
    hostile = ["a\x00b", 'q"uote\\', "line\nbreak", "modèle-π-\U0001f600", "x" * 1_000_000, "sixth", "seventh"]
    metrics.count_models(Counter({("registration", name): 2 for name in hostile}))
    text = generate_latest(metrics.registry).decode()
    lint = subprocess.run([command("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                          check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    samples = {s.labels["model"]: s.value for family in metrics.registry.collect() for s in family.samples
               if s.name == "regwatch_registry_events_total"}
    assert len(samples) == 6 and samples[OTHER_MODELS] == 4  # five names, the rest counted under _other
    assert max(len(name) for name in samples) == MODEL_LABEL_CHARS
    assert sum(samples.values()) == 2 * len(hostile)  # none lost
    assert len(text) < 10_000
