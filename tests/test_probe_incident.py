"""The outside view through a real incident: a real MLflow server behind a front that can make it
look stopped, slow or failing, the real probe and rule runner daemons, the real Alertmanager and
Prometheus.

The registry is up, then stopped, then slow, then answering 503, then up again. The availability
documents say exactly that, in order, with their reasons; registry-down fires once and resolves
once at the webhook and in Alertmanager; Prometheus sees platform_availability go 1 -> 0 -> 1; the
time from the stop to the notification is within interval x failures + 5 s.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from regwatch.demo import free_port, mlflow_server
from support.httpstub import StubHandler, serve
from support.monitoring import alertmanager, prometheus, wait_for
from support.registry_proxy import RegistryFront
from support.shipping import write_config

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "regwatch.cli"]
INTERVAL_S, FAILURES, SUCCESSES = 1.0, 3, 2
REGISTRY_DOWN = f"""
rules:
  - name: registry-down
    type: consecutive
    kinds: [availability]
    terms: {{modelregistry.probe.check: health}}
    group_by: modelregistry.probe.target
    failures: {FAILURES}
    successes: {SUCCESSES}
    window: 10m
    interval: {INTERVAL_S:g}s
    severity: critical
    notify: [hook, am]
"""


def _recorder() -> type[StubHandler]:
    class Recorder(StubHandler):
        received: list[tuple[float, dict]] = []

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            Recorder.received.append((time.time(), body))
            self._send(200, {})

    return Recorder


def _runs(values: list) -> list:
    """[a, a, b, b, a] -> [a, b, a]."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def _health(es: Elasticsearch, namespace: str) -> list[dict]:
    index = f"metrics-modelregistry.availability-{namespace}"
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, sort=[{"@timestamp": "asc"}],
                     query={"term": {"modelregistry.probe.check": "health"}})["hits"]["hits"]
    return [h["_source"] for h in hits]


def test_up_stopped_slow_503_up(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    mlflow_port = free_port()
    first_life = contextlib.ExitStack()
    url, _ = first_life.enter_context(mlflow_server(tmp_path / "mlflow", port=mlflow_port, gunicorn=False))
    client = MlflowClient(url, url)
    client.create_registered_model("churn")
    run = client.create_run("0")
    client.create_model_version("churn", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)

    front = RegistryFront(mlflow_port, delay_s=2.5)
    hook, am_hook = _recorder(), _recorder()
    probe_port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "registry.yaml").write_text(REGISTRY_DOWN)
    daemons: list[subprocess.Popen] = []
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(first_life.close)
        stack.callback(front.close)
        hook_url = stack.enter_context(serve(hook))
        am = stack.enter_context(alertmanager(tmp_path / "am", stack.enter_context(serve(am_hook))))
        config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
        raw = yaml.safe_load(config.read_text())
        raw["probe"] = {"interval_s": INTERVAL_S, "metrics_port": probe_port, "targets": [
            {"name": "mlflow", "url": f"{front.url}/health", "environment": "test", "timeout_s": 1,
             "transaction": {"model": "churn"}}]}
        raw["rules"] = {"folder": str(tmp_path / "rules"), "metrics_port": None, "runner_id": "incident",
                        "notifiers": {"hook": {"type": "webhook", "url": hook_url},
                                      "am": {"type": "alertmanager", "url": am.url, "resend_s": 5,
                                             "labels": {"environment": "test"}}}}
        config.write_text(yaml.safe_dump(raw))
        prom = stack.enter_context(prometheus(tmp_path / "prometheus", {"probe": f"127.0.0.1:{probe_port}"}))
        for name, args in (("probe", ["probe", "-c", str(config)]), ("rules", ["rules", "run", "-c", str(config)])):
            with (tmp_path / f"{name}.log").open("wb") as out:
                daemons.append(subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT))
        stack.callback(_stop, daemons)
        started = time.time()

        # Up: check-to-document latency, as a reader of Elasticsearch sees it (no forced refresh).
        index = f"metrics-modelregistry.availability-{namespace}"
        seen: dict[str, float] = {}
        while len(seen) < 8 and time.time() - started < 60:
            with contextlib.suppress(Exception):
                for hit in es.search(index=index, size=50, query={"term": {"modelregistry.probe.check": "health"}},
                                     sort=[{"@timestamp": "desc"}])["hits"]["hits"]:
                    seen.setdefault(hit["_id"], time.time() - (
                        _epoch(hit["_source"]["@timestamp"]) + hit["_source"]["event"]["duration"] / 1e9))
            time.sleep(0.05)
        latencies = sorted(seen.values())[1:]  # the first was written before we looked
        figures["check_to_document_p50_s"] = latencies[len(latencies) // 2]
        figures["check_to_document_max_s"] = latencies[-1]

        # Stopped: the process is gone and its port refuses connections.
        down_at = time.time()
        front.set("down")
        first_life.close()
        # A new MLflow starts behind the closed front while the outage is noticed (the webhook's
        # receipt times the notification, not this wait): the probe still finds the port closed.
        second_life = stack.enter_context(mlflow_server(tmp_path / "mlflow", port=mlflow_port, gunicorn=False))
        assert second_life[0] == url
        fired = wait_for(lambda: [t for t, b in hook.received if b["state"] == "firing"], 60, "registry-down firing")
        figures["down_to_notification_s"] = fired[0] - down_at
        active = wait_for(lambda: am.alerts(active="true"), 15, "the alert active in Alertmanager")
        assert active[0]["labels"]["target"] == "mlflow" and active[0]["labels"]["alertname"] == "registry-down"
        assert active[0]["labels"]["environment"] == "test"

        # Slow: the new MLflow, but every connection waits longer than the probe's timeout.
        front.set("slow")
        _wait_checks(es, namespace, "timeout", 3)
        front.set("503")
        _wait_checks(es, namespace, "http_5xx", 3)
        front.set("pass")
        wait_for(lambda: [b for _, b in hook.received if b["state"] == "resolved"], 60, "registry-down resolved")
        wait_for(lambda: [b for _, b in am_hook.received if b["status"] == "resolved"], 30,
                 "Alertmanager's resolution")
        assert not am.alerts(active="true")
        # A few scrapes of the recovered target: three seconds of 1 after the last 0.
        availability = wait_for(lambda: _recovered_for(
            prom.query_range('platform_availability{target="mlflow"}', started, time.time(), 1), 3), 15,
            "Prometheus's scrapes of the recovered target")
        _stop(daemons)  # before the registry and its front go away
    for daemon in daemons:
        assert daemon.returncode in (0, -15)

    health = _health(es, namespace)
    reasons = _runs([d["error"]["type"] if not d["modelregistry"]["probe"]["up"] else "up" for d in health])
    assert reasons == ["up", "connection_refused", "timeout", "http_5xx", "up"], reasons
    notified = [(b["rule"], b["group"], b["state"]) for _, b in hook.received]
    assert notified == [("registry-down", "mlflow", "firing"), ("registry-down", "mlflow", "resolved")]
    am_states = _runs([b["status"] for _, b in am_hook.received])
    assert am_states == ["firing", "resolved"], am_states
    assert len(availability) == 1
    assert _runs([float(v) for _, v in availability[0]["values"]]) == [1.0, 0.0, 1.0]
    assert figures["down_to_notification_s"] <= INTERVAL_S * FAILURES + 5, figures
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    print("probe incident figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))


def _recovered_for(availability: list[dict], points: int) -> list[dict] | None:
    """The range query's result once its series ends in ``points`` steps of 1 after a 0 (else None)."""
    if len(availability) != 1:
        return availability or None  # several series: returned as they are, for the assertion to show
    values = [float(v) for _, v in availability[0]["values"]]
    if 0.0 not in values:
        return None
    last_down = len(values) - 1 - values[::-1].index(0.0)
    after = values[last_down + 1:]
    return availability if len(after) >= points and set(after) == {1.0} else None


def _stop(daemons: list[subprocess.Popen]) -> None:
    for daemon in daemons:
        daemon.terminate()
    for daemon in daemons:
        daemon.wait(20)


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _wait_checks(es: Elasticsearch, namespace: str, reason: str, count: int) -> None:
    def enough() -> bool:
        docs = _health(es, namespace)
        return sum(d.get("error", {}).get("type") == reason for d in docs) >= count
    wait_for(enough, 60, f"{count} health checks down with {reason}")
