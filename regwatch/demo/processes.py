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
        return bool(self._stop_together([name], timeout_s))

    def stop_all(self, timeout_s: float = 20.0) -> list[str]:
        """Everything still running: SIGTERM to all at once (the last started first), then one
        shared deadline before SIGKILL, so a Ctrl-C never waits for each process in turn."""
        return self._stop_together(list(reversed(self.names())), timeout_s)

    def _stop_together(self, names: list[str], timeout_s: float) -> list[str]:
        pids: dict[str, int] = {}
        for name in names:
            pid = self.running(name)
            (self.pids / f"{name}.pid").unlink(missing_ok=True)
            if pid is not None:
                pids[name] = pid
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            waiting = {name: pid for name, pid in pids.items() if not _exited(pid)}
            for pid in waiting.values():
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while waiting and time.monotonic() < deadline:
                waiting = {name: pid for name, pid in waiting.items() if not _exited(pid)}
                time.sleep(0.1)
            if not waiting:
                break
        for name, pid in pids.items():
            try:
                os.killpg(pid, signal.SIGKILL)  # workers the leader left behind
                stragglers = True
            except ProcessLookupError:
                stragglers = False
            log.info("process_stopped", name=name, pid=pid, stragglers_killed=stragglers)
        return list(pids)


def _exited(pid: int) -> bool:
    """Reaped if it is a child of ours, else gone from /proc (or a zombie)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child: poll /proc instead
        return _start_time(pid) is None
