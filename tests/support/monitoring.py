"""The real Prometheus and Alertmanager (Debian's packages) on 127.0.0.1, for the tests.

Each runs from its own temporary folder with a configuration written here, on a free port, and is
stopped at the end of the block. A missing binary fails the test with the one line naming the
Debian package (``make test`` installs them when run as root).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from regwatch import packages
from regwatch.demo import free_port
from support.shipping import wait_for as shipping_wait_for


def command(name: str) -> str:
    """The path of a real component's binary, or the test fails saying which package to install."""
    gap = packages.missing([name])
    if gap:
        pytest.fail(gap.message())
    path = packages.which(name)
    assert path is not None
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """:func:`support.shipping.wait_for`, with HTTP and socket errors (a server starting) as not yet."""
    return shipping_wait_for(predicate, timeout, what, ignore=(httpx.HTTPError, OSError))


@contextmanager
def _process(argv: list[str], log: Path, ready_url: str, what: str) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for(lambda: proc.poll() is None and httpx.get(ready_url, timeout=2).status_code == 200, 60, what)
        except AssertionError:
            raise AssertionError(f"{what} did not become ready: {log.read_text()[-2000:]}") from None
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (the API's ``data.result``); an error fails loudly."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query_range",
                             params={"query": expr, "start": start, "end": end, "step": step}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def targets_up(self) -> dict[str, str]:
        active = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}


@contextmanager
def prometheus(tmp: Path, jobs: dict[str, str], scrape_s: float = 1.0) -> Iterator[Prometheus]:
    """A real Prometheus scraping ``jobs`` (job name -> host:port) every ``scrape_s``."""
    binary = command("prometheus")
    tmp.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": f"{scrape_s:g}s", "evaluation_interval": f"{scrape_s:g}s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address]}]}
                                 for job, address in jobs.items()]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, tmp / "prometheus.log", f"{url}/-/ready", "prometheus"):
        yield Prometheus(url)


class Alertmanager:
    def __init__(self, url: str) -> None:
        self.url = url

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """What ``GET /api/v2/alerts`` shows (active, silenced and inhibited alerts)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=10)
        response.raise_for_status()
        return response.json()


@contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[Alertmanager]:
    """A real Alertmanager routing every alert to ``webhook_url`` at once, resolutions included."""
    binary = command("prometheus-alertmanager")
    tmp.mkdir(parents=True, exist_ok=True)
    config = {"route": {"receiver": "hook", "group_by": ["alertname", "target", "model"], "group_wait": "0s",
                        "group_interval": "1s", "repeat_interval": "1h"},
              "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}]}
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [binary, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, tmp / "alertmanager.log", f"{url}/-/ready", "alertmanager"):
        yield Alertmanager(url)
