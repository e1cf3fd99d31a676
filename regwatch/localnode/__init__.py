"""A local Elasticsearch on 127.0.0.1 for tests and the demo: one node, or a cluster of several.

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

from regwatch.localnode.common import (
    DOCKER_IMAGE,
    ES_VERSION,
    Node,
    NodeError,
    Progress,
    _say,
    base_dir,
    cluster_health,
    cluster_nodes,
    port,
    state_file,
    work_dir,
)
from regwatch.localnode.docker import docker_answers, docker_up
from regwatch.localnode.java import find_java_home
from regwatch.localnode.process import is_recorded_node, local_up, recorded_members, signal_group
from regwatch.localnode.trust import read_state

__all__ = ["DOCKER_IMAGE", "ES_VERSION", "Node", "NodeError", "base_dir", "cluster_health", "docker_answers", "down",
           "find_java_home", "port", "state_file", "status", "stop_node", "up", "work_dir"]

log = structlog.get_logger(__name__)


def up(progress: Progress | None = None, fresh: bool = False, nodes: int = 1, base: int | None = None) -> Node:
    """Give a ready node (or cluster of ``nodes``): ES_URL, else Docker, else the local zip;
    reuse what is already running, start what is missing.

    ``fresh``: when this call starts the local nodes, they start with empty data folders (the
    test suite does this: every run begins clean, whatever earlier runs left).
    """
    if nodes < 1:
        raise NodeError(f"--nodes {nodes}: at least 1")
    if url := os.environ.get("ES_URL"):
        _say(progress, f"using ES_URL={url}")
        return Node(url=url, source="ES_URL", started=False)
    if docker_answers():
        if nodes > 1:
            raise NodeError(f"--nodes {nodes} runs the local distribution, not Docker: set REGWATCH_NO_DOCKER=1 "
                            "(or run a cluster with docker compose and set ES_URL)")
        return docker_up(progress)
    return local_up(progress, fresh, nodes, base)


def down(progress: Progress | None = None, base: int | None = None) -> bool:
    """Stop exactly the nodes that :func:`up` started (pids and start times recorded in the state file)."""
    state = read_state(base)
    if state is None:
        _say(progress, "no local node recorded: nothing to stop")
        return False
    if state.get("source") == "docker":
        import docker

        try:
            docker.from_env().containers.get(state["container"]).remove(force=True)
        except Exception as exc:
            log.warning("docker_remove_failed", error=str(exc))
        state_file(base).unlink(missing_ok=True)
        return True
    running = [node for node in recorded_members(state) if is_recorded_node(node)]
    if not running:
        _say(progress, "recorded node is not running")
        state_file(base).unlink(missing_ok=True)
        return False
    for node in running:
        _say(progress, f"stopping {node.get('name', 'node')} pid={node['pid']}")
        signal_group(int(node["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(is_recorded_node(node) for node in running):
        time.sleep(0.2)
    for node in running:
        if is_recorded_node(node):
            signal_group(int(node["pid"]), signal.SIGKILL)
    state_file(base).unlink(missing_ok=True)
    return True


def stop_node(index: int, signum: int = signal.SIGKILL, base: int | None = None) -> int:
    """Signal one recorded node of the local cluster (``kill -9`` by default: a node lost, not
    stopped); its pid. ``up`` with the same size brings it back."""
    for node in recorded_members(read_state(base)):
        if int(node.get("index", 0)) == index and is_recorded_node(node):
            signal_group(int(node["pid"]), signum)
            return int(node["pid"])
    raise NodeError(f"node {index} of the local cluster is not running")


def status(base: int | None = None) -> dict:
    """What is known: where, the cluster's health, and each node (name, roles, master, process)."""
    if url := os.environ.get("ES_URL"):
        return {"source": "ES_URL", "url": url, "health": cluster_health(url), "nodes": cluster_nodes(url)}
    state = read_state(base)
    records = recorded_members(state)
    urls = [str(node.get("url")) for node in records if node.get("url")] or [f"http://127.0.0.1:{base or port()}"]
    health, url = None, urls[0]
    for candidate in urls:  # any live node speaks for the cluster
        if (health := cluster_health(candidate)) is not None:
            url = candidate
            break
    answering = {node["name"]: node for node in cluster_nodes(url)} if health else {}
    nodes = [{"name": node.get("name", "regwatch-local"), "url": node.get("url"), "pid": node.get("pid"),
              "running": is_recorded_node(node), **answering.pop(node.get("name", "regwatch-local"), {})}
             for node in records]
    nodes += list(answering.values())  # nodes of the cluster that we did not start
    return {"source": (state or {}).get("source", "local"), "url": url, "recorded": bool(state),
            "health": health, "nodes": nodes}
