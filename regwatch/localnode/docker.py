"""The node as the official Docker image, when a Docker engine answers."""

from __future__ import annotations

import os

from regwatch.localnode.common import DOCKER_IMAGE, HEAP, Node, Progress, _is_ready, _say, port, wait_ready
from regwatch.localnode.trust import read_state, write_state


def docker_answers() -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    if os.environ.get("REGWATCH_NO_DOCKER"):
        return False
    try:
        import docker  # installed with testcontainers

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # any failure means "no engine"
        return False


def docker_up(progress: Progress | None) -> Node:
    import docker

    url = f"http://127.0.0.1:{port()}"
    if _is_ready(url) and (read_state() or {}).get("source") == "docker":
        return Node(url=url, source="docker", started=False)
    _say(progress, f"starting {DOCKER_IMAGE} with Docker")
    container = docker.from_env().containers.run(
        DOCKER_IMAGE,
        detach=True,
        ports={"9200/tcp": ("127.0.0.1", port())},
        environment={
            "discovery.type": "single-node",
            "xpack.security.enabled": "false",
            "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        },
    )
    write_state({"source": "docker", "container": container.id, "port": port()})
    wait_ready(url, progress, alive=lambda: True)
    return Node(url=url, source="docker", started=True)
