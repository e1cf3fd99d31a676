"""The rule runner killed with SIGKILL while a notification is on the wire, and again after it was
delivered: the one in flight is sent again (the same key) after the lease, nothing delivered is
sent again, and the dead runners are retired, not reported stale forever."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from elasticsearch import Elasticsearch

from support.monitoring import free_port
from support.rules import errors_now, index_events

LEASE_S = 3.0
RULE = errors_now("hook")


class Holding(BaseHTTPRequestHandler):
    """Answers 204, except the first POST, held open until ``release`` (the runner dies meanwhile)."""

    posts: list[tuple[float, dict]] = []
    first = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Holding.posts.append((time.time(), body))
        if len(Holding.posts) == 1:
            Holding.first.set()
            Holding.release.wait(60)
        try:
            self.send_response(204)
            self.end_headers()
        except OSError:
            pass  # the runner that asked is dead

    def log_message(self, *args) -> None:
        pass


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def test_kill_9_mid_send_resends_once_and_kill_9_after_sends_nothing(es: Elasticsearch, es_url: str,
                                                                      namespace: str, tmp_path: Path) -> None:
    Holding.posts, Holding.first, Holding.release = [], threading.Event(), threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Holding)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(RULE)
    metrics_port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "rules": {
        "folder": str(tmp_path / "rules"), "lease_s": LEASE_S, "metrics_port": metrics_port,
        "notifiers": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{server.server_address[1]}/"}}}}))
    index_events(es, namespace, "error", time.time() - 5, 3)
    command = [sys.executable, "-m", "regwatch.cli", "rules", "run", "-c", str(config)]
    runners: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        runners.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        return runners[-1]

    try:
        first = start()
        assert Holding.first.wait(60), "the firing notification never came"
        first.send_signal(signal.SIGKILL)  # while its POST waits for an answer
        first.wait(10)
        Holding.release.set()
        second = start()
        _wait(lambda: len(Holding.posts) >= 2, 60, "the notification in flight sent again")
        (t1, p1), (t2, p2) = Holding.posts[:2]
        assert p1["key"] == p2["key"] and p1["state"] == p2["state"] == "firing"
        assert t2 - t1 >= LEASE_S - 0.5  # not before the dead runner's lease ran out
        state = f"regwatch-alert-state-{namespace}"

        def delivered() -> bool:
            es.indices.refresh(index=state)
            return es.count(index=state, query={"exists": {"field": "outbox.key"}})["count"] == 0

        _wait(delivered, 30, "the outcome recorded")
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        count = float(re.search(r"^regwatch_notification_exposure_seconds_count (\S+)$", scrape, re.M).group(1))
        total = float(re.search(r"^regwatch_notification_exposure_seconds_sum (\S+)$", scrape, re.M).group(1))
        assert count == 1 and 0 < total < 1.0  # send to recorded: the only moment a crash duplicates
        print(f"resent {t2 - t1:.1f} s after the first send; exposure of the delivery {total * 1000:.1f} ms")
        second.send_signal(signal.SIGKILL)  # delivered and recorded: nothing may be sent again
        second.wait(10)
        third = start()
        time.sleep(LEASE_S + 4)
        assert len(Holding.posts) == 2, [p["state"] for _, p in Holding.posts]
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 0
        status = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "status", "-c", str(config)],
                                capture_output=True, text=True, timeout=60)
        lines = [line for line in status.stdout.splitlines() if line.startswith("runner ")]
        ids = {line.split()[1] for line in lines}
        # The first died in its first cycle, before any heartbeat; the second, killed, is retired
        # by the third (its process is gone); the third stopped cleanly.
        assert ids == {f"{os.uname().nodename}:{r.pid}" for r in runners[1:]}
        assert all(line.endswith(" stopped") for line in lines), status.stdout
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
                runner.wait(10)
        Holding.release.set()
        server.shutdown()
