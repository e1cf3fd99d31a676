"""The probe: reasons a registry is down, the synthetic transaction, documents written exactly once
through an Elasticsearch outage, the Prometheus series, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from elasticsearch import Elasticsearch
from prometheus_client.parser import text_string_to_metric_families

from pipeline.probe.runner import Probe, check_target, http_client
from pipeline.probe.settings import ProbeSettings, TargetSettings
from regwatch.demo import free_port
from support.registry_stub import TcpGate, registry_stub
from support.shipping import wait_for, write_config

CLI = [sys.executable, "-m", "regwatch.cli"]


def _target(url: str, **extra) -> TargetSettings:
    return TargetSettings.model_validate({"name": "reg", "url": url, "environment": "test", "timeout_s": 1.0,
                                          **extra})


def _check(target: TargetSettings):
    with http_client(target) as client:
        return check_target(client, target)


def test_up_health_check_then_a_timed_chained_mlflow_transaction() -> None:
    with registry_stub() as (url, stub):
        results = _check(_target(f"{url}/health", expect_body="OK", transaction={"model": "churn"}))
    assert [(r.step, r.up) for r in results] == [("health", True), ("search_registered_models", True),
                                                  ("get_latest_versions", True), ("get_download_uri", True)]
    assert all(r.duration_s > 0 and r.status == 200 for r in results)
    # the version the second step returned is the one the third asked for
    assert stub.requests[-1].endswith("name=churn&version=3")


@pytest.mark.parametrize("mode, reason", [("503", "http_5xx"), ("badbody", "unexpected_body"), ("slow", "timeout")])
def test_a_registry_that_answers_badly_is_down_with_its_reason(mode: str, reason: str) -> None:
    with registry_stub() as (url, stub):
        stub.mode = mode
        (result,) = _check(_target(f"{url}/health", expect_body="OK", transaction={"model": "churn"}))
    assert not result.up and result.reason == reason and result.step == "health"


def test_refused_dns_tls_and_wrong_status_each_have_their_reason() -> None:
    refused = _check(_target(f"http://127.0.0.1:{free_port()}/health"))[0]
    dns = _check(_target("http://registry.does-not-exist.invalid/health"))[0]
    with registry_stub() as (url, _):
        tls = _check(_target(url.replace("http://", "https://") + "/health"))[0]
        wrong = _check(_target(f"{url}/nowhere"))[0]
    assert (refused.up, refused.reason) == (False, "connection_refused")
    assert (dns.up, dns.reason) == (False, "dns")
    assert (tls.up, tls.reason) == (False, "tls")
    assert (wrong.up, wrong.reason, wrong.status) == (False, "unexpected_status", 404)


def test_a_failing_transaction_step_ends_the_transaction() -> None:
    with registry_stub() as (url, stub):
        stub.mode = "badbody"
        results = _check(_target(f"{url}/health", transaction={"model": "churn"}))
    assert [(r.step, r.up, r.reason) for r in results] == [
        ("health", True, None), ("search_registered_models", True, None),
        ("get_latest_versions", False, "unexpected_body")]


def test_secret_headers_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REG_TOKEN", "Bearer s3cret")
    target = _target("http://127.0.0.1:1/health", headers_from_env={"Authorization": "REG_TOKEN"})
    assert target.headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in target.model_dump_json()


def _availability(es: Elasticsearch, namespace: str) -> list[dict]:
    es.indices.refresh(index=f"metrics-modelregistry.availability-{namespace}")
    hits = es.search(index=f"metrics-modelregistry.availability-{namespace}", size=1000,
                     sort=[{"@timestamp": "asc"}], seq_no_primary_term=False)["hits"]["hits"]
    return [h["_source"] for h in hits]


def test_documents_wait_out_an_elasticsearch_outage_and_are_written_once(es: Elasticsearch, es_url: str,
                                                                         namespace: str) -> None:
    gate = TcpGate(es_url)
    gate.open = False
    settings = ProbeSettings.model_validate({"interval_s": 0.2, "buffer_documents": 100, "metrics_port": None})
    with registry_stub() as (url, stub):
        settings = settings.model_copy(update={"targets": [_target(f"{url}/health", transaction={"model": "churn"})]})
        client = Elasticsearch(gate.url, request_timeout=5, max_retries=0)
        probe = Probe(settings, client, namespace, "probe-host")
        try:
            for mode in ("up", "503", "up"):
                stub.mode = mode
                probe.cycle()
            time.sleep(1.0)
            assert len(probe.writer.buffer) == 4 + 1 + 4, "the checks are held while Elasticsearch is away"
            gate.open = True
            assert probe.writer.flush(60), "written once Elasticsearch answers"
        finally:
            probe.writer.close()
            gate.close()
    docs = _availability(es, namespace)
    assert len(docs) == 9
    health = [(d["modelregistry"]["probe"]["up"], d.get("error", {}).get("type")) for d in docs
              if d["modelregistry"]["probe"]["check"] == "health"]
    assert health == [(True, None), (False, "http_5xx"), (True, None)]
    down = next(d for d in docs if not d["modelregistry"]["probe"]["up"])
    assert down["http"]["response"]["status_code"] == 503 and down["service"]["environment"] == "test"
    assert all(d["event"]["duration"] > 0 and d["host"]["name"] == "probe-host" for d in docs)


def test_a_full_buffer_drops_the_oldest_and_counts_them(namespace: str) -> None:
    settings = ProbeSettings.model_validate({"buffer_documents": 10, "metrics_port": None,
                                             "targets": [{"name": "reg", "url": f"http://127.0.0.1:{free_port()}/"}]})
    probe = Probe(settings, Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0), namespace, None)
    try:
        for _ in range(15):
            probe.cycle()
        assert len(probe.writer.buffer) == 10 and probe.writer.dropped == 5
        assert probe.metrics.dropped._value.get() == 5
    finally:
        probe.writer.close()


def _series(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_daemon_serves_availability_going_1_0_1_and_writes_resources(es: Elasticsearch, es_url: str,
                                                                          namespace: str, tmp_path: Path) -> None:
    port = free_port()
    with registry_stub() as (url, stub):
        config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
        raw = yaml.safe_load(config.read_text())
        raw["probe"] = {"interval_s": 0.5, "metrics_port": port, "targets": [
            {"name": "reg", "url": f"{url}/health", "environment": "test", "timeout_s": 1}],
            "resources": {"enabled": True, "disk_paths": ["/"]}}
        config.write_text(json.dumps(raw))
        daemon = subprocess.Popen([*CLI, "probe", "-c", str(config)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        availability = ("platform_availability", (("environment", "test"), ("target", "reg")))
        seen = []
        try:
            for mode, value in (("up", 1.0), ("503", 0.0), ("up", 1.0)):
                stub.mode = mode

                def shows(value: float = value) -> bool:
                    try:
                        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                    except httpx.HTTPError:
                        return False
                    return _series(text).get(availability) == value
                wait_for(shows, timeout=20)
                seen.append(value)
        finally:
            daemon.terminate()
            _, stderr = daemon.communicate(timeout=20)
        assert daemon.returncode in (0, -15), stderr[-2000:]
    assert seen == [1.0, 0.0, 1.0]
    docs = _availability(es, namespace)
    resources = [d for d in docs if d["modelregistry"]["probe"]["check"] == "resources"]
    assert resources and 0 < resources[-1]["system"]["filesystem"]["used"]["pct"] < 1
    assert resources[-1]["system"]["memory"]["total"] > 0
    states = [d["modelregistry"]["probe"]["up"] for d in docs if d["modelregistry"]["probe"]["check"] == "health"]
    first_down, last_down = states.index(False), len(states) - 1 - states[::-1].index(False)
    assert all(states[:first_down]) and not any(states[first_down:last_down + 1]) and all(states[last_down + 1:])


def test_probe_once_exit_status_and_config_errors(es_url: str, namespace: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
    raw = yaml.safe_load(config.read_text())
    with registry_stub() as (url, stub):
        raw["probe"] = {"targets": [{"name": "reg", "url": f"{url}/health"}]}
        config.write_text(json.dumps(raw))
        up = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True, timeout=60)
        stub.mode = "503"
        down = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0 and "reg health: up" in up.stderr
    assert down.returncode == 1 and "DOWN (http_5xx)" in down.stderr
    raw["probe"] = {"targets": [{"name": "reg", "url": "ftp://registry"}]}
    config.write_text(json.dumps(raw))
    bad = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "probe.targets.0.url" in bad.stderr and "Traceback" not in bad.stderr


def test_a_check_that_crashes_is_recorded_and_the_probe_goes_on(namespace: str, monkeypatch) -> None:
    import pipeline.probe.runner as runner

    settings = ProbeSettings.model_validate({"metrics_port": None,
                                             "targets": [{"name": "a", "url": "http://127.0.0.1:1/"},
                                                         {"name": "b", "url": "http://127.0.0.1:1/"}]})
    calls = []

    def flaky(client, target, stop=None):
        calls.append(target.name)
        if target.name == "a":
            raise RuntimeError("bug")
        return []
    monkeypatch.setattr(runner, "check_target", flaky)
    probe = Probe(settings, Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0), namespace, None)
    try:
        report = probe.cycle()
    finally:
        probe.writer.close()
    assert sorted(calls) == ["a", "b"]  # checked side by side
    assert [(r.target, r.up, r.reason) for r in report.results] == [("a", False, "probe_error")]


def test_stop_ends_the_loop_promptly() -> None:
    settings = ProbeSettings.model_validate({"interval_s": 60, "metrics_port": None,
                                             "targets": [{"name": "a", "url": "http://127.0.0.1:1/"}]})
    probe = Probe(settings, Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0), "x", None)
    stop = threading.Event()
    thread = threading.Thread(target=probe.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - started < 15


def _probe_doc(namespace: str, at: float, up: bool, target: str = "reg") -> list[dict]:
    doc = {"@timestamp": int(at * 1000), "event": {"ingested": int(at * 1000), "duration": 1_000_000},
           "modelregistry": {"probe": {"up": up, "check": "health", "target": target}}}
    return [{"create": {"_index": f"metrics-modelregistry.availability-{namespace}"}}, doc]


def test_registry_down_fires_after_three_failed_checks_and_resolves_after_two_good_ones(
        es: Elasticsearch, namespace: str, webhook) -> None:
    from rules.model import load_rules
    from rules.runner import Runner
    from support.rules import T0, Receiver

    rule = next(r for r in load_rules(Path(__file__).parent.parent / "rules" / "builtin") if r.name == "registry-down")
    runner = Runner(es, [rule.model_copy(update={"notify": ["hook"]})], namespace, webhook, "a")
    transitions = []
    # up, up, down, up (one bad check amid good ones), down x3 (fires), up (not yet), up (resolves), up
    for n, up in enumerate([True, True, False, True, False, False, False, True, True, True]):
        at = T0 + 30 * n
        es.bulk(operations=_probe_doc(namespace, at, up), refresh=True)
        transitions += [(n, state) for _, _, state in runner.cycle(now=at + 2).transitions]
    assert transitions == [(6, "firing"), (8, "resolved")]
    states = [body["alerts"][0]["state"] if "alerts" in body else body.get("state") for body, _ in Receiver.received]
    assert len(Receiver.received) == 2, Receiver.received
    assert "firing" in json.dumps(Receiver.received[0][0]) and "resolved" in json.dumps(Receiver.received[1][0])
    assert states  # both payloads were read


def test_registry_process_resources_follow_the_pid_file_across_a_restart(tmp_path: Path) -> None:
    from pipeline.probe.resources import ResourceSampler
    from pipeline.probe.settings import ResourceSettings

    pid_file = tmp_path / "registry.pid"
    busy = [sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"]
    sampler = ResourceSampler(ResourceSettings(enabled=True, disk_paths=[str(tmp_path)], pid_file=pid_file))
    assert "process" not in sampler.sample()[0]  # no pid file yet: host fields only, no crash
    first = subprocess.Popen(busy)
    try:
        pid_file.write_text(f"{first.pid}\n")
        sampler.sample()
        time.sleep(0.5)
        process = sampler.sample()[0]["process"]
        assert process["pid"] == first.pid and process["cpu"]["pct"] > 0.3  # a busy loop: most of a core
        assert process["memory"]["rss"]["bytes"] > 1_000_000
        first.kill()
        first.wait()
        second = subprocess.Popen(busy)
        try:
            pid_file.write_text(f"{second.pid}\n")
            wait_for(lambda: sampler.sample()[0].get("process", {}).get("pid") == second.pid, timeout=10)
        finally:
            second.kill()
            second.wait()
    finally:
        if first.poll() is None:
            first.kill()
