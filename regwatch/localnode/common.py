"""What every part of the local node shares: versions, paths, errors, health."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Maven Central serves the integ-test-zip up to the 8.19 line (no 9.x is published there); the
# Python client is pinned to the same major. ES_URL or Docker can bring a 9.x node instead.
ES_VERSION = "8.19.21"
MAVEN_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DOCKER_IMAGE = os.environ.get(
    "REGWATCH_ES_IMAGE", f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}"
)
ES_USER = "regwatch-es"
DEFAULT_PORT = 9200
MAX_BASE_PORT = 65535 - 108  # node i of nine: HTTP on base + i, transport on base + 100 + i
HEAP = "1g"
READY_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


class NodeError(RuntimeError):
    """Something the local node needs is missing; the message says how to fix it."""


@dataclass(frozen=True)
class Node:
    url: str
    source: str  # "ES_URL", "docker" or "local"
    started: bool  # True when this call started it (so the caller may stop it)


def base_dir() -> Path:
    """Cache and work folder, outside the repository, traversable by the node's user."""
    if env := os.environ.get("REGWATCH_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/regwatch")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "regwatch"


def port() -> int:
    """``REGWATCH_ES_PORT`` (the local node's HTTP port), else 9200; NodeError naming the variable
    when it is not a port."""
    text = os.environ.get("REGWATCH_ES_PORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_BASE_PORT:
        raise NodeError(f"REGWATCH_ES_PORT={text[:20]!r}: not a port from 1 to {MAX_BASE_PORT} (a local "
                        "cluster's nodes also take the ports up to 108 above it)")
    return int(text)


def work_dir(base: int | None = None) -> Path:
    """The single node's folder (a cluster's nodes each have one under ``cluster-<port>/``)."""
    return base_dir() / f"node-{base or port()}"


def state_file(base: int | None = None) -> Path:
    """Beside the node's folder, not in it: that folder belongs to the node's user, and what root
    reads back (which process to kill) must not be writable by anyone else. One file for all the
    nodes started on one base port (a cluster's too)."""
    return base_dir() / f"node-{base or port()}.json"


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
    log.info("localnode", step=message)


# -- health ----------------------------------------------------------------------------------


def _get_json(url: str, path: str, timeout: float) -> object | None:
    """A GET answered by Elasticsearch (its product header), parsed; None otherwise."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url.rstrip('/')}{path}"), timeout=timeout) as response:
            if response.headers.get("X-elastic-product") != "Elasticsearch":
                return None
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def cluster_health(url: str, timeout: float = 2.0) -> dict | None:
    """The cluster health document, or None when nothing answers like Elasticsearch."""
    health = _get_json(url, "/_cluster/health", timeout)
    return health if isinstance(health, dict) else None


def cluster_nodes(url: str, timeout: float = 2.0) -> list[dict]:
    """Each node the cluster knows: name, roles, whether it is the elected master, its HTTP address."""
    rows = _get_json(url, "/_cat/nodes?format=json&h=name,node.role,master,http_address,heap.percent", timeout)
    if not isinstance(rows, list):
        return []
    return sorted(({"name": row.get("name"), "roles": row.get("node.role"), "master": row.get("master") == "*",
                    "http": row.get("http_address"), "heap_percent": row.get("heap.percent")} for row in rows),
                  key=lambda row: str(row["name"]))


def _is_ready(url: str, nodes: int = 1) -> bool:
    health = cluster_health(url)
    return (health is not None and health.get("status") in ("yellow", "green")
            and int(health.get("number_of_nodes", 0)) >= nodes)


def _port_in_use(p: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", p)) == 0


def wait_ready(url: str, progress: Progress | None, alive: Callable[[], bool], console: Path | None = None,
               nodes: int = 1) -> None:
    """Until the node at ``url`` answers yellow or green in a cluster of at least ``nodes``."""
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _is_ready(url, nodes):
            _say(progress, f"ready at {url} after {time.monotonic() - started:.1f}s")
            return
        if not alive():
            tail = ""
            if console is not None:
                try:
                    fd = os.open(console, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as handle:
                        lines = handle.read().decode(errors="replace").strip().splitlines()
                    tail = lines[-1] if lines else ""
                except OSError:
                    pass
            raise NodeError(f"Elasticsearch exited before it was ready: {tail[:400]}")
        time.sleep(0.5)
    raise NodeError(f"Elasticsearch at {url} not ready after {READY_TIMEOUT_S:.0f}s")
