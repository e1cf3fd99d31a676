"""The demo's processes: started detached, remembered in pid files, stopped by ``demo down``.

Each process gets its own session (so a stop reaches its children: gunicorn's workers, nginx's),
its output in ``logs/<name>.log`` and a pid file ``pids/<name>.pid`` holding the pid and the
process' start time from ``/proc``. A stop checks that start time first: a pid the kernel gave to
another process since is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from regwatch.localnode.process import start_time as _start_time

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Spec:
    """What to run: a name (its log and pid file), the argument list, extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.pids = workdir / "pids"
        self.logs = workdir / "logs"

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, spec: Spec) -> int:
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        with self.log_of(spec.name).open("ab") as out:
            process = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        (self.pids / f"{spec.name}.pid").write_text(json.dumps({"pid": process.pid, "start": _start_time(process.pid)}))
        log.info("process_started", name=spec.name, pid=process.pid)
        return process.pid

    def running(self, name: str) -> int | None:
        """The pid of the named process if it is the one we started and still runs."""
        try:
            record = json.loads((self.pids / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        pid, start = record.get("pid"), record.get("start")
        if not isinstance(pid, int) or pid <= 1 or start is None:
            return None
        if _start_time(pid) != start:  # gone, another process now, or a zombie
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it is a child of ours
            except ChildProcessError:
                pass
            return None
        return pid

    def names(self) -> list[str]:
        """Names with a pid file, in the order they were started."""
        files = list(self.pids.glob("*.pid")) if self.pids.is_dir() else []
        return [p.stem for p in sorted(files, key=lambda p: p.stat().st_mtime_ns)]

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """SIGTERM to the process group, SIGKILL after ``timeout_s``; True if something was stopped."""
        pid = self.running(name)
        (self.pids / f"{name}.pid").unlink(missing_ok=True)
        if pid is None:
            return False
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:  # not our child: poll /proc instead
                    if _start_time(pid) is None:
                        break
                time.sleep(0.1)
            else:
                continue
            break
        with_group_left = True
        try:
            os.killpg(pid, signal.SIGKILL)  # workers the leader left behind
        except ProcessLookupError:
            with_group_left = False
        log.info("process_stopped", name=name, pid=pid, stragglers_killed=with_group_left)
        return True

    def stop_all(self) -> list[str]:
        """Everything still running, the last started first."""
        return [name for name in reversed(self.names()) if self.stop(name)]
