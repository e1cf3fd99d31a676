"""Every shipper reports to Elasticsearch; ``regwatch status --all`` lists them from there, on a
real node: finished shippers, a running daemon catching up, and one killed (-9), reported stale."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from elasticsearch import Elasticsearch

from pipeline import heartbeat
from regwatch.config import load_config
from regwatch.ship import build_shipper, shipper_id
from support.shipping import line, wait_for, write_config

CLI = [sys.executable, "-m", "regwatch.cli"]


def status_all(config: Path) -> tuple[int, list[dict], str]:
    result = subprocess.run([*CLI, "status", "--all", "--json", "-c", str(config)], capture_output=True, text=True,
                            timeout=60)
    return result.returncode, [json.loads(row) for row in result.stdout.splitlines()], result.stderr


def test_status_all_lists_every_shipper_and_reports_a_killed_one_stale(es: Elasticsearch, es_url: str, namespace: str,
                                                                       tmp_path: Path) -> None:
    configs = {}
    for host, lines in (("registry-a", 5), ("registry-b", 7)):
        folder = tmp_path / host
        folder.mkdir()
        log = folder / "access.log"
        log.write_bytes(b"".join(line(i) for i in range(lines)))
        configs[host] = write_config(folder / "c.yaml", es_url, namespace, [str(log)], host_name=host,
                                     heartbeat_every_s=0.5)
        assert build_shipper(load_config(configs[host])).run(once=True).events == lines
    code, rows, _ = status_all(configs["registry-a"])
    assert code == 0
    by_host = {row["host"]["name"]: row for row in rows}
    assert set(by_host) == {"registry-a", "registry-b"}
    for host, lines in (("registry-a", 5), ("registry-b", 7)):
        row = by_host[host]
        assert row["shipper_id"] == shipper_id(load_config(configs[host]))
        assert (row["condition"], row["events"], row["behind_bytes"], row["files_count"]) == ("stopped", lines, 0, 1)
        assert row["files"][0]["offset"] == row["files"][0]["size"] == sum(len(line(i)) for i in range(lines))

    # A daemon: running, and its lag seen from Elasticsearch while it catches up.
    log = tmp_path / "registry-a" / "access.log"
    daemon = subprocess.Popen([*CLI, "ship", "-c", str(configs["registry-a"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: status_all(configs["registry-a"])[1][0]["condition"] == "running", timeout=30,
                 what="the daemon's heartbeat")
        with log.open("ab") as handle:
            handle.write(b"".join(line(i) for i in range(5, 105)))
        row = wait_for(lambda: next((r for r in status_all(configs["registry-a"])[1]
                                     if r["events"] == 100 and r["behind_bytes"] == 0), None),
                       timeout=30, what="the daemon's 100 new events, acknowledged, in its heartbeat")
        assert row["pid"] == daemon.pid and row["condition"] == "running"
        daemon.send_signal(signal.SIGKILL)  # no last heartbeat: silent, so stale after three periods
        daemon.wait(timeout=10)
        time.sleep(3 * 0.5 + 1)
        code, rows, _ = status_all(configs["registry-b"])
        assert code == 1
        assert {row["host"]["name"]: row["condition"] for row in rows} == {"registry-a": "stale",
                                                                           "registry-b": "stopped"}
        table = subprocess.run([*CLI, "status", "--all", "-c", str(configs["registry-b"])], capture_output=True,
                               text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
        assert table.returncode == 1 and "stale" in table.stdout and "registry-a" in table.stdout
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_status_all_with_no_shipper_says_so(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
    result = subprocess.run([*CLI, "status", "--all", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"no shipper has reported in namespace {namespace}" in result.stderr


def test_a_heartbeat_that_cannot_be_written_never_stops_shipping(es: Elasticsearch, namespace: str) -> None:
    """Elasticsearch away: the beat fails, is logged, and says so (False); nothing raises."""
    dead = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=1)
    beat = heartbeat.Heartbeat(dead, namespace, "x", "host", 1.0, lambda: {"events": 1})
    assert beat.beat("running") is False
    live = heartbeat.Heartbeat(es, namespace, "y", "host", 1.0, lambda: {"events": 3})
    assert live.beat("running") is True
    assert [doc["events"] for doc in heartbeat.shippers(es, namespace)] == [3]
