"""A single-node Elasticsearch on 127.0.0.1 for tests and the demo.

The node is found, in order: ``ES_URL`` (used as it is, nothing started), a Docker engine that
answers (the official image), else the official ``integ-test-zip`` distribution from Maven
Central, fetched with ``mvn dependency:copy``, cached outside the repository and started with a
Java 17+ runtime as an unprivileged user (Elasticsearch refuses to run as root).

Everything that can be missing (Java, mvn, the port, the download) is reported as a
:class:`NodeError` whose message says what is missing and how to fix it.
"""

from __future__ import annotations

import os
import signal
import time

import structlog

from regwatch.localnode.common import (DOCKER_IMAGE, ES_VERSION, Node, NodeError, Progress, _say, base_dir,
                                       cluster_health, port, state_file, work_dir)
from regwatch.localnode.docker import docker_answers, docker_up
from regwatch.localnode.process import is_recorded_node, local_up, signal_group
from regwatch.localnode.java import find_java_home
from regwatch.localnode.trust import read_state

__all__ = ["DOCKER_IMAGE", "ES_VERSION", "Node", "NodeError", "base_dir", "cluster_health", "docker_answers", "down",
           "find_java_home", "port", "state_file", "status", "up", "work_dir"]

log = structlog.get_logger(__name__)


def up(progress: Progress | None = None, fresh: bool = False) -> Node:
    """Give a ready node: ES_URL, else Docker, else the local zip; reuse one already running.

    ``fresh``: when this call starts the local node, it starts with an empty data folder (the
    test suite does this: every run begins clean, whatever earlier runs left).
    """
    if url := os.environ.get("ES_URL"):
        _say(progress, f"using ES_URL={url}")
        return Node(url=url, source="ES_URL", started=False)
    if docker_answers():
        return docker_up(progress)
    return local_up(progress, fresh)


def down(progress: Progress | None = None) -> bool:
    """Stop exactly the node that :func:`up` started (pid recorded in the state file)."""
    state = read_state()
    if state is None:
        _say(progress, "no local node recorded: nothing to stop")
        return False
    if state.get("source") == "docker":
        import docker

        try:
            docker.from_env().containers.get(state["container"]).remove(force=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("docker_remove_failed", error=str(exc))
        state_file().unlink(missing_ok=True)
        return True
    pid = int(state["pid"])
    if not is_recorded_node(state):
        _say(progress, "recorded node is not running")
        state_file().unlink(missing_ok=True)
        return False
    _say(progress, f"stopping node pid={pid}")
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and is_recorded_node(state):
        time.sleep(0.2)
    if is_recorded_node(state):
        signal_group(pid, signal.SIGKILL)
    state_file().unlink(missing_ok=True)
    return True


def status() -> dict:
    """What is known about the node: where, whether it answers, its health."""
    if url := os.environ.get("ES_URL"):
        return {"source": "ES_URL", "url": url, "health": cluster_health(url)}
    state = read_state()
    url = f"http://127.0.0.1:{port()}"
    return {
        "source": (state or {}).get("source", "local"),
        "url": url,
        "recorded": state,
        "health": cluster_health(url),
    }
