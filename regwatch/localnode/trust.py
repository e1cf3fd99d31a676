"""Root trusts no file or link the node's user can write: state, modes and logs handled so.

The node runs as an unprivileged user that owns its folder; everything root does there goes
through descriptors opened without following links, and what root reads back (which process to
stop) lives beside that folder, in a file root owns.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import structlog

from regwatch.localnode.common import ES_USER, NodeError, base_dir, state_file

log = structlog.get_logger(__name__)


def open_path(path: Path, walk: bool = True) -> None:
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


def give_to(tree: Path, user: pwd.struct_passwd) -> None:
    """chown a tree of ours to the node's user, links changed themselves, never followed."""
    for root, dirs, files in os.walk(tree):
        os.chown(root, user.pw_uid, user.pw_gid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(Path(root) / name, user.pw_uid, user.pw_gid, follow_symlinks=False)


def node_user(create: bool = True) -> pwd.struct_passwd | None:
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


def open_console(work: Path):
    """The node's console log, opened by us in a folder its user owns: never through a link."""
    logs = os.open(work / "logs", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open("console.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                     dir_fd=logs)
    finally:
        os.close(logs)
    return os.fdopen(fd, "ab")


def read_state(base: int | None = None) -> dict | None:
    """The recorded node(s), from a regular file owned by us (never through a link)."""
    try:
        fd = os.open(state_file(base), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("state_file_untrusted", path=str(state_file(base)))
            return None
        state = json.loads(os.read(fd, 65536))
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def write_state(state: dict, base: int | None = None) -> None:
    """Atomically, through a new file of our own in our own folder (mkstemp: O_EXCL, no links)."""
    import tempfile

    path = state_file(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".node-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
