"""Every daemon's /metrics (regwatch.metrics_server through regwatch.cli.common.serve_metrics):
stalled and slow clients cost neither a thread each nor a scrape, and are closed at their deadline;
GET /metrics is all it answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from regwatch.demo import free_port
from support.shipping import wait_for

# A daemon's /metrics exactly as `regwatch ship` starts it, alone in a process.
DAEMON = """
import sys, time
from pipeline.metrics import ShipperMetrics
from regwatch.cli.common import serve_metrics
metrics = ShipperMetrics()
metrics.lines_read.labels("0").inc(3)
serve_metrics(metrics, None, "metrics_port", int(sys.argv[1]), "127.0.0.1")
print("ready", flush=True)
time.sleep(600)
"""


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.fixture
def daemon() -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", DAEMON, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n", process.stderr.read()
        yield process, port
    finally:
        process.kill()
        process.communicate(timeout=10)  # reaped, its pipes closed


@pytest.fixture
def server() -> Iterator:
    from regwatch.metrics_server import serve

    registry = CollectorRegistry()
    Counter("regwatch_test_things", "Things", registry=registry).inc(2)
    running = serve(registry, 0, "127.0.0.1", timeout_s=1.0, max_connections=5)
    try:
        yield running
    finally:
        running.stop()


def test_fifty_stalled_connections_neither_delay_a_scrape_nor_cost_a_thread_each(daemon) -> None:
    process, port = daemon
    before = _threads(process.pid)
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]  # open, send nothing
    try:
        time.sleep(0.5)
        started = time.monotonic()
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        took = time.monotonic() - started
        assert response.status_code == 200 and took < 1.0, took
        assert 'regwatch_lines_read_total{input="0"} 3.0' in response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert _threads(process.pid) <= before + 2  # prometheus_client's server: one thread per connection
    finally:
        for sock in stalled:
            sock.close()


def test_a_slowloris_is_closed_at_its_deadline_and_a_silent_client_too(server) -> None:
    slow = socket.create_connection(("127.0.0.1", server.port))
    silent = socket.create_connection(("127.0.0.1", server.port))
    try:
        started = time.monotonic()
        closed_at = None
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            time.sleep(0.1)
        if closed_at is None:
            slow.settimeout(10)
            assert slow.recv(100) == b""
            closed_at = time.monotonic()
        assert closed_at - started < 5.0  # the head's deadline is 1 s; the drip would take 13 s
        silent.settimeout(10)
        assert silent.recv(100) == b""  # closed without an answer
        assert time.monotonic() - started < 10.0
    finally:
        slow.close()
        silent.close()
    assert httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).status_code == 200


def test_only_get_metrics_is_answered(server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    ok = httpx.get(f"{base}/metrics", timeout=5)
    assert ok.status_code == 200 and "regwatch_test_things_total 2.0" in ok.text
    assert httpx.get(f"{base}/", timeout=5).status_code == 404
    assert httpx.get(f"{base}/metrics/../etc", timeout=5).status_code == 404
    assert httpx.post(f"{base}/metrics", content=b"x", timeout=5).status_code == 405
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # a head over 8 KiB is not buffered
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000)
        sock.settimeout(5)
        assert sock.recv(100) == b""


def test_connections_beyond_the_cap_are_closed_at_once_and_the_cap_frees(server) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            extra.settimeout(0.9)  # well before the 1 s deadline the held ones have
            try:
                assert extra.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).status_code == 200, 5)


def test_a_port_in_use_is_an_os_error_for_the_caller(server) -> None:
    from regwatch.metrics_server import serve

    with pytest.raises(OSError):
        serve(CollectorRegistry(), server.port, "127.0.0.1")
    assert free_port()
