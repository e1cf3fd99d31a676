"""The probe against registries that hang: a drip-fed answer, a never-ending body, a server that
accepts and never answers, each beside a healthy target (issue 25). And the probe's secrets and
URLs, refused at load or start rather than failing (or leaking) later.

Every check ends by its target's ``timeout_s`` whatever the server does; a hanging target delays
no other; memory stays flat under an endless body; SIGTERM ends the daemon within seconds.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from elasticsearch import Elasticsearch

from pipeline.probe.check import USER_AGENT
from pipeline.probe.runner import Probe, check_target, http_client
from pipeline.probe.settings import ProbeSettings, TargetSettings
from regwatch.demo import free_port
from support.hostile_http import gzip_bomb, hostile_server
from support.registry_stub import registry_stub
from support.shipping import wait_for, write_config

CLI = [sys.executable, "-m", "regwatch.cli"]
TIMEOUT_S = 1.5
SLACK_S = 2.0  # a loaded 2-core machine: generous, still far below what an unbounded check takes


def _settings(*targets: dict, interval_s: float = 30.0) -> ProbeSettings:
    return ProbeSettings.model_validate({"interval_s": interval_s, "metrics_port": None, "targets": list(targets)})


def _dead_es() -> Elasticsearch:
    return Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0, request_timeout=2)


def _availability(es: Elasticsearch, namespace: str) -> list[dict]:
    index = f"metrics-modelregistry.availability-{namespace}"
    es.indices.refresh(index=index, ignore_unavailable=True)
    hits = es.search(index=index, size=1000, sort=[{"@timestamp": "asc"}], ignore_unavailable=True)["hits"]["hits"]
    return [h["_source"] for h in hits]


def _config(tmp_path: Path, es_url: str, namespace: str, probe: dict) -> Path:
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
    raw = yaml.safe_load(config.read_text())
    raw["probe"] = probe
    config.write_text(json.dumps(raw))
    return config


class Daemon:
    """``regwatch probe`` in a subprocess; killed in the finaliser whatever happened."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([*CLI, "probe", "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, env=env)

    def stop(self, timeout: float = 30) -> tuple[float, str]:
        """SIGTERM; the seconds until it exited, and its stderr."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=30)
        return time.monotonic() - sent, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


# --- every check ends by its deadline, and the healthy target beside it is not delayed ---------------

@pytest.mark.parametrize("mode, options, reason", [
    ("drip_body", {"pace_s": 0.2}, "timeout"),  # headers at once, then a byte every 0.2 s
    ("drip_headers", {"pace_s": 0.2}, "timeout"),  # the headers themselves a byte every 0.2 s
    ("silent", {}, "timeout"),  # accepts, never answers
    ("endless", {"chunk_bytes": 1024, "chunk_pace_s": 0.01}, "unexpected_body"),  # a body that never ends
    ("silent_tls", {}, "timeout"),  # https: accepts, never says a word of the TLS handshake
])
def test_a_hanging_target_ends_by_its_deadline_and_delays_not_the_healthy_one(mode, options, reason) -> None:
    tls = mode == "silent_tls"
    with hostile_server("silent" if tls else mode, **options) as hostile, registry_stub() as (url, _):
        hanging_url = f"{hostile.url.replace('http://', 'https://') if tls else hostile.url}/health"
        settings = _settings({"name": "hanging", "url": hanging_url, "timeout_s": TIMEOUT_S},
                             {"name": "good", "url": f"{url}/health", "timeout_s": TIMEOUT_S, "expect_body": "OK",
                              "transaction": {"model": "churn"}})
        probe = Probe(settings, _dead_es(), "x", None)
        reports = []
        began, clock = time.time(), time.monotonic()
        cycle = threading.Thread(target=lambda: reports.append(probe.cycle()), daemon=True)
        try:
            cycle.start()
            cycle.join(TIMEOUT_S + 20)
            elapsed = time.monotonic() - clock
        finally:
            probe.writer.close()
        assert reports, f"the cycle did not end within {TIMEOUT_S + 20} s"
    results = {(r.target, r.step): r for r in reports[0].results}
    hanging = results["hanging", "health"]
    assert (hanging.up, hanging.reason) == (False, reason)
    assert hanging.duration_s <= TIMEOUT_S + 0.5 and elapsed <= TIMEOUT_S + SLACK_S
    assert hanging.message == ("no complete answer within 1.5 s" if reason == "timeout"
                               else "the answer is longer than 65536 bytes (max_body_bytes)")
    good = [r for r in reports[0].results if r.target == "good"]
    assert [(r.step, r.up) for r in good] == [("health", True), ("search_registered_models", True),
                                              ("get_latest_versions", True), ("get_download_uri", True)]
    # checked side by side: the good target started with the hanging one, not after its timeout
    assert good[0].started - began < 1.0 and hanging.started - began < 1.0


def test_a_transaction_step_answer_past_max_body_bytes_is_unexpected_body_and_says_so() -> None:
    with hostile_server("endless") as hostile, registry_stub() as (url, _):
        # the health check is good; the transaction's steps go to the endless server
        target = TargetSettings.model_validate({"name": "reg", "url": f"{url}/health", "timeout_s": TIMEOUT_S,
                                                "max_body_bytes": 2048,
                                                "transaction": {"model": "churn", "base_url": hostile.url}})
        started = time.monotonic()
        with http_client(target) as client:
            results = check_target(client, target)
        elapsed = time.monotonic() - started
    assert [(r.step, r.up, r.reason, r.message) for r in results] == [
        ("health", True, None, None),
        ("search_registered_models", False, "unexpected_body", "the answer is longer than 2048 bytes (max_body_bytes)")]
    assert elapsed < TIMEOUT_S + SLACK_S


def test_a_compressed_answer_is_unpacked_no_further_than_the_cap() -> None:
    """256 KiB of gzip that would unpack to 256 MiB: read up to max_body_bytes, then dropped."""
    gzip_bomb()  # made before the memory is measured
    process = psutil.Process()
    with hostile_server("gzip_bomb") as server:
        target = TargetSettings.model_validate({"name": "reg", "url": f"{server.url}/health", "timeout_s": 5})
        before = process.memory_info().rss
        with http_client(target) as client:
            (result,) = check_target(client, target)
        grown = process.memory_info().rss - before
    assert (result.up, result.reason, result.message) == (
        False, "unexpected_body", "the answer is longer than 65536 bytes (max_body_bytes)")
    assert grown < 64 * 1024 * 1024, f"grew {grown / 2**20:.0f} MiB"


def test_check_target_plugin_ends_by_the_deadline_against_a_drip_feed(tmp_path: Path) -> None:
    """`regwatch check target` uses the same checks: CRITICAL timeout by timeout_s, not minutes later."""
    with hostile_server("drip_body", pace_s=0.2) as hostile:
        config = tmp_path / "c.yaml"
        config.write_text(json.dumps({"probe": {"targets": [
            {"name": "slow", "url": f"{hostile.url}/health", "timeout_s": TIMEOUT_S}]}}))
        started = time.monotonic()
        done = subprocess.run([*CLI, "check", "target", "slow", "--config", str(config)], capture_output=True,
                              text=True, timeout=120)
        elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    # the status line came at once (HTTP 200), the body never did
    assert done.stdout.startswith("REGWATCH CRITICAL - slow health down: timeout (HTTP 200) | health=1.5")
    assert elapsed < TIMEOUT_S + 8  # the interpreter's start included


# --- the daemon keeps its interval beside a hanging target -------------------------------------------

def test_the_daemon_keeps_its_interval_beside_a_target_that_never_answers(es: Elasticsearch, namespace: str) -> None:
    interval, hang_timeout, run_for = 0.5, 2.0, 5.0
    with hostile_server("silent") as hostile, registry_stub() as (url, stub):
        settings = _settings({"name": "hanging", "url": f"{hostile.url}/health", "timeout_s": hang_timeout},
                             {"name": "good", "url": f"{url}/health", "timeout_s": hang_timeout},
                             interval_s=interval)
        probe = Probe(settings, es, namespace, "probe-host")
        stop = threading.Event()
        runner = threading.Thread(target=probe.run, args=(stop,), daemon=True)
        runner.start()
        try:
            time.sleep(run_for)
            threads_while_running = threading.active_count()
            wait_for(lambda: hostile.open_now >= 1, timeout=5, what="a request hanging on the silent target")
        finally:
            stopped_at = time.monotonic()
            stop.set()
            runner.join(30)
        stop_took = time.monotonic() - stopped_at
        good_requests = stub.requests.count("/health")
        peak_open = hostile.peak_open
    assert not runner.is_alive() and stop_took < 5.0, f"run() took {stop_took:.1f} s to end after stop"
    # every 0.5 s for 5 s is 10 checks; a probe waiting on the hanging target would make 2 or 3
    assert good_requests >= 6, good_requests
    # the hanging target: one check at a time (each ends by 2 s), the ticks in between skipped
    assert peak_open <= 2 and hostile.connections <= run_for / hang_timeout + 2, (peak_open, hostile.connections)
    skipped = probe.metrics.skipped.labels("hanging")._value.get()
    assert skipped >= 3 and probe.metrics.skipped.labels("good")._value.get() == 0
    assert threads_while_running < 30
    docs = _availability(es, namespace)
    good_docs = [d for d in docs if d["service"]["name"] == "good"]
    hanging_docs = [d for d in docs if d["service"]["name"] == "hanging"]
    assert len(good_docs) >= 6 and all(d["modelregistry"]["probe"]["up"] for d in good_docs)
    assert hanging_docs and all(d["error"]["type"] == "timeout" and 1.9e9 < d["event"]["duration"] < 2.6e9
                                for d in hanging_docs)


# --- memory under a never-ending body ------------------------------------------------------------------

def test_memory_stays_flat_while_a_target_floods_an_endless_body(es: Elasticsearch, es_url: str, namespace: str,
                                                                  tmp_path: Path) -> None:
    limit = 200 * 1024 * 1024
    with hostile_server("endless", lifetime_s=30) as flood, registry_stub() as (url, _):
        config = _config(tmp_path, es_url, namespace, {"interval_s": 0.5, "metrics_port": None, "targets": [
            {"name": "flood", "url": f"{flood.url}/health", "timeout_s": 3},
            {"name": "good", "url": f"{url}/health", "timeout_s": 3}]})
        daemon = Daemon(config)
        peak = 0
        try:
            process = psutil.Process(daemon.process.pid)
            end = time.monotonic() + 6
            while time.monotonic() < end and daemon.process.poll() is None:
                peak = max(peak, process.memory_info().rss)
                if peak > limit:  # the old probe reads on: stop it before it takes the machine
                    break
                time.sleep(0.05)
            _, stderr = daemon.stop()
        finally:
            daemon.kill()
        connections = flood.connections
    print(f"peak RSS under the endless body: {peak / 1024 / 1024:.1f} MiB")
    assert peak < limit, f"peak RSS {peak / 1024 / 1024:.0f} MiB"
    assert connections >= 5, stderr[-2000:]  # a check every interval, each cut at the cap
    docs = _availability(es, namespace)
    flood_docs = [d for d in docs if d["service"]["name"] == "flood"]
    assert len(flood_docs) >= 5 and {d["error"]["type"] for d in flood_docs} == {"unexpected_body"}
    assert len([d for d in docs if d["service"]["name"] == "good"]) >= 5


# --- SIGTERM while a request hangs ---------------------------------------------------------------------

@pytest.mark.parametrize("elasticsearch_state", ["up", "down", "accepts and never answers"])
def test_sigterm_ends_the_daemon_within_seconds_while_a_request_hangs(elasticsearch_state, es: Elasticsearch,
                                                                       es_url: str, namespace: str,
                                                                       tmp_path: Path) -> None:
    with hostile_server("silent") as hanging, hostile_server("silent") as dead_es, registry_stub() as (url, stub):
        target_es = {"up": es_url, "down": f"http://127.0.0.1:{free_port()}"}.get(elasticsearch_state, dead_es.url)
        config = _config(tmp_path, target_es, namespace, {"interval_s": 0.5, "metrics_port": None, "targets": [
            {"name": "hanging", "url": f"{hanging.url}/health", "timeout_s": 60},
            {"name": "good", "url": f"{url}/health", "timeout_s": 60}]})
        daemon = Daemon(config)
        try:
            wait_for(lambda: hanging.open_now >= 1 and stub.requests.count("/health") >= 2, timeout=30,
                     what="a request hanging and the good target checked")
            if elasticsearch_state == "up":
                wait_for(lambda: any(d["service"]["name"] == "good" for d in _availability(es, namespace)),
                         timeout=30, what="a document written")
            elif elasticsearch_state != "down":
                wait_for(lambda: any(b"_bulk" in head for head in dead_es.requests), timeout=30,
                         what="a bulk request hanging on Elasticsearch")
            took, stderr = daemon.stop()
        finally:
            daemon.kill()
    print(f"SIGTERM to exit ({elasticsearch_state}): {took:.2f} s")
    assert daemon.process.returncode == 0, stderr[-2000:]
    assert took < 8.0, f"{took:.1f} s from SIGTERM to exit"
    assert "Traceback" not in stderr


def test_sigterm_ends_probe_once_while_a_request_hangs(es_url: str, namespace: str, tmp_path: Path) -> None:
    with hostile_server("silent") as hanging:
        config = _config(tmp_path, es_url, namespace, {"metrics_port": None, "targets": [
            {"name": "hanging", "url": f"{hanging.url}/health", "timeout_s": 60}]})
        once = subprocess.Popen([*CLI, "probe", "--once", "-c", str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: hanging.open_now >= 1, timeout=30, what="the request hanging")
            sent = time.monotonic()
            once.send_signal(signal.SIGTERM)
            _, stderr = once.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if once.poll() is None:
                once.kill()
                once.communicate(timeout=30)
    assert took < 8.0, f"{took:.1f} s from SIGTERM to exit"
    assert (once.returncode, stderr.strip().splitlines()[-1]) == (1, "error: stopped before every check had ended")
    assert "Traceback" not in stderr


# --- secrets -----------------------------------------------------------------------------------------

def test_a_header_secret_is_sent_stripped_of_its_trailing_newline(monkeypatch) -> None:
    """Kubernetes secret files and `echo >> EnvironmentFile` end in a newline: sent stripped."""
    monkeypatch.setenv("REG_TOKEN", "Bearer s3cret\n")
    with hostile_server("ok") as server:
        target = TargetSettings.model_validate({"name": "reg", "url": f"{server.url}/health", "timeout_s": 5,
                                                "headers_from_env": {"Authorization": "REG_TOKEN"}})
        with http_client(target) as client:
            (result,) = check_target(client, target)
        (head,) = server.requests
    assert (result.up, result.reason, result.message) == (True, None, None)
    assert b"\r\nAuthorization: Bearer s3cret\r\n" in head and b"s3cret\n" not in head


def test_a_secret_never_reaches_a_document_a_log_line_or_the_output(es: Elasticsearch, es_url: str,
                                                                     namespace: str, tmp_path: Path) -> None:
    """The server quotes the request's headers back in a 401; the secret's env value ends in a
    newline (which made the HTTP library raise, quoting it, before)."""
    env = {**os.environ, "REG_TOKEN": "Bearer s3cret\n"}
    basic = base64.b64encode(b"probe:pa55word").decode()
    with hostile_server("echo") as server:
        config = _config(tmp_path, es_url, namespace, {"metrics_port": None, "targets": [
            {"name": "reg", "url": f"{server.url}/health", "headers_from_env": {"Authorization": "REG_TOKEN"}},
            {"name": "basic", "url": f"http://probe:pa55word@{server.url.partition('://')[2]}/health"}]})
        once = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True,
                              timeout=120, env=env)
        plugin = subprocess.run([*CLI, "check", "target", "reg", "--config", str(config)], capture_output=True,
                                text=True, timeout=120, env=env)
        heads = list(server.requests)
    assert once.returncode == 1 and "reg health: DOWN (unexpected_status)" in once.stderr, once.stderr
    assert plugin.returncode == 2, plugin.stdout + plugin.stderr
    assert plugin.stdout.startswith("REGWATCH CRITICAL - reg health down: unexpected_status (HTTP 401)")
    assert len(heads) == 3, heads  # reg and basic by the daemon, reg by the plugin
    assert sum(b"\r\nAuthorization: Bearer s3cret\r\n" in head for head in heads) == 2
    assert sum(f"\r\nAuthorization: Basic {basic}\r\n".encode() in head for head in heads) == 1
    docs = {d["service"]["name"]: d for d in _availability(es, namespace)}
    assert set(docs) == {"reg", "basic"}, (docs, once.stderr)
    for doc in docs.values():
        assert doc["error"]["type"] == "unexpected_status" and doc["http"]["response"]["status_code"] == 401
        assert doc["error"]["message"].startswith("HTTP 401: GET /health HTTP/1.1 Host: 127.0.0.1:")
        assert doc["url"]["full"] == f"{server.url}/health"
    sent = f" Accept-Encoding: identity User-Agent: {USER_AGENT} Authorization:"  # the probe says who it is
    assert docs["reg"]["error"]["message"].endswith(f"{sent} ***")
    assert docs["basic"]["error"]["message"].endswith(f"{sent} Basic ***")
    assert "Authorization: Bearer" not in json.dumps(docs)  # the whole value is the secret, "Bearer" too
    for text in (json.dumps(docs), once.stdout, once.stderr, plugin.stdout, plugin.stderr):
        assert "s3cret" not in text and "pa55word" not in text and basic not in text


def test_a_secret_quoted_past_the_200_characters_kept_is_not_left_half_in_the_message(monkeypatch) -> None:
    """The 200 characters kept of a wrong status's answer end inside the quoted secret."""
    secret = "Bearer " + "k" * 300
    monkeypatch.setenv("REG_TOKEN", secret)
    with hostile_server("echo") as server:
        target = TargetSettings.model_validate({"name": "reg", "url": f"{server.url}/health", "timeout_s": 5,
                                                "headers_from_env": {"Authorization": "REG_TOKEN"}})
        with http_client(target) as client:
            (result,) = check_target(client, target)
    assert result.reason == "unexpected_status" and "kkkk" not in result.message
    assert result.message.endswith(f" Accept-Encoding: identity User-Agent: {USER_AGENT} Authorization: ***")


def test_a_token_quoted_alone_without_its_scheme_word_is_masked(monkeypatch) -> None:
    """Masking the header value (``Bearer T``) missed a server quoting ``T`` alone."""
    monkeypatch.setenv("REG_TOKEN", "Bearer s3cret-token-value")
    with hostile_server("echo_token") as server:
        target = TargetSettings.model_validate({"name": "reg", "url": f"{server.url}/health", "timeout_s": 5,
                                                "headers_from_env": {"Authorization": "REG_TOKEN"}})
        with http_client(target) as client:
            (result,) = check_target(client, target)
    assert (result.reason, result.status, result.message) == ("unexpected_status", 401, "HTTP 401: bad token: ***")


@pytest.mark.parametrize("value, problem", [
    (None, "environment variable REG_TOKEN is not set or empty"),
    ("", "environment variable REG_TOKEN is not set or empty"),
    ("  \n", "environment variable REG_TOKEN is not set or empty"),
    ("Bearer s3\x01cret", "environment variable REG_TOKEN holds a control character"),
    ("Bearer s3cret\r\nX-Injected: 1", "environment variable REG_TOKEN holds a control character"),
    ("Bearer s3crét", "environment variable REG_TOKEN holds a character outside ASCII"),
])
def test_probe_refuses_at_start_a_header_variable_unset_empty_or_unusable(value, problem, tmp_path: Path) -> None:
    with registry_stub() as (url, stub):
        config = tmp_path / "c.yaml"
        config.write_text(json.dumps({"elasticsearch": {"hosts": [f"http://127.0.0.1:{free_port()}"]},
                                      "probe": {"metrics_port": None, "targets": [
                                          {"name": "reg", "url": f"{url}/health",
                                           "headers_from_env": {"Authorization": "REG_TOKEN"}}]}}))
        env = {k: v for k, v in os.environ.items() if k != "REG_TOKEN"}
        if value is not None:
            env["REG_TOKEN"] = value
        done = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True,
                              timeout=60, env=env)
        requests = list(stub.requests)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"error: {config}: probe target reg: headers_from_env.Authorization: {problem}")
    assert requests == []  # nothing was sent, not even an empty header
    if value and value.strip():
        assert "s3" not in done.stderr and "s3" not in done.stdout


def test_the_availability_document_is_whole_and_its_url_carries_no_user_or_password(es: Elasticsearch,
                                                                                     namespace: str) -> None:
    with registry_stub() as (url, _):
        port = url.rsplit(":", 1)[1]
        settings = _settings({"name": "reg", "url": f"http://probe:pa55word@127.0.0.1:{port}/health?x=1",
                              "environment": "prod", "timeout_s": 5})
        probe = Probe(settings, es, namespace, "probe-host")
        try:
            (result,) = probe.cycle().results
            assert probe.writer.flush(30)
        finally:
            probe.writer.close()
    (doc,) = _availability(es, namespace)
    assert result.url == f"http://127.0.0.1:{port}/health?x=1"
    assert doc == {
        "@timestamp": doc["@timestamp"],
        "data_stream": {"type": "metrics", "dataset": "modelregistry.availability", "namespace": namespace},
        "event": {"kind": "metric", "dataset": "modelregistry.availability", "ingested": doc["event"]["ingested"],
                  "duration": int(result.duration_s * 1e9), "outcome": "success", "action": "health",
                  "category": ["web"], "type": ["info"]},
        "host": {"name": "probe-host"},
        "observer": {"hostname": "probe-host", "name": "probe-host", "type": "probe", "product": "regwatch"},
        "ecs": {"version": "9.4.0"},
        "message": f"reg health up 200 in {result.duration_s:.3f} s",
        "url": {"full": f"http://127.0.0.1:{port}/health?x=1"},
        "service": {"name": "reg", "environment": "prod"},
        "modelregistry": {"probe": {"up": True, "check": "health", "target": "reg"}},
        "http": {"response": {"status_code": 200}},
    }
    assert doc["@timestamp"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(result.started)))
    assert 0 < doc["event"]["duration"] < 5e9


# --- URLs and statuses refused at load -------------------------------------------------------------------

@pytest.mark.parametrize("target, problem", [
    ({"url": "http://registry /health"},
     "probe.targets.0.url: 'http://registry /health' is not an http(s) URL: it holds white space "
     "or a control character"),
    ({"url": "http://[::1"},
     "probe.targets.0.url: 'http://[::1' is not an http(s) URL: it cannot be parsed"),
    ({"url": "http://registry:99999/health"},
     "probe.targets.0.url: 'http://registry:99999/health' is not an http(s) URL: port 99999 is outside "
     "1..65535"),
    ({"url": "https://user:pw@registry:0/"},
     "probe.targets.0.url: 'https://registry:0/' is not an http(s) URL: port 0 is outside 1..65535"),
    ({"url": "http:///health"}, "probe.targets.0.url: 'http:///health' is not an http(s) URL: no host"),
    ({"expected_status": []}, "probe.targets.0.expected_status: List should have at least 1 item after validation, "
                              "not 0"),
    ({"expected_status": [200, 99]}, "probe.targets.0.expected_status.1: Input should be greater than or equal to 100"),
    ({"expected_status": [600]}, "probe.targets.0.expected_status.0: Input should be less than or equal to 599"),
    ({"max_body_bytes": 10**12}, "probe.targets.0.max_body_bytes: Input should be less than or equal to 16777216"),
    ({"headers_from_env": {"Bad Header": "X"}},
     "probe.targets.0.headers_from_env: 'Bad Header' is not an HTTP header name"),
    ({"url": "http://probe:pw@registry/", "headers_from_env": {"Authorization": "X"}},
     "probe.targets.0: the url carries a user and password and headers_from_env sets Authorization "
     "too: use one of them"),
    ({"transaction": {"model": "m", "base_url": "http://[::1"}},
     "probe.targets.0.transaction.base_url: 'http://[::1' is not an http(s) URL: it cannot be parsed"),
])
def test_a_bad_url_or_status_is_refused_when_the_configuration_loads(target, problem, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"probe": {"metrics_port": None, "targets": [
        {"name": "reg", "url": "http://registry/health", **target}]}}))
    done = subprocess.run([*CLI, "probe", "--once", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {config}: {problem}"
    assert "pw" not in done.stderr
