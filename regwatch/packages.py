"""The Debian packages of the real components regwatch runs beside it (Prometheus, Alertmanager,
the Zabbix agent, nginx, logrotate): which commands are missing, and installing them.

Installing runs ``apt-get`` with an argument list (never a shell string) and only as root; any
other user gets one line naming the packages to install. The package names come from
``packages.yaml`` beside this module, not from input.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

_TABLE = Path(__file__).with_name("packages.yaml")
# Debian installs daemons' binaries outside a plain user's PATH on some layouts.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin")


@dataclass(frozen=True)
class Missing:
    commands: tuple[str, ...]
    packages: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.commands)

    def message(self) -> str:
        return (f"missing {', '.join(self.commands)}: install the Debian packages {' '.join(self.packages)} "
                f"(as root: apt-get install -y {' '.join(self.packages)}, or run `regwatch deps --install` as root)")


def table() -> dict[str, str]:
    """Command -> Debian package."""
    return dict(yaml.safe_load(_TABLE.read_text())["commands"])


def which(command: str) -> str | None:
    """The command's path on PATH or in the system folders Debian puts daemons in."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(command, path=path)


def missing(commands: list[str] | None = None) -> Missing:
    known = table()
    wanted = commands or list(known)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise KeyError(f"no Debian package known for {', '.join(unknown)} (regwatch/packages.yaml)")
    absent = [c for c in wanted if which(c) is None]
    packages = tuple(dict.fromkeys(known[c] for c in absent))
    return Missing(tuple(absent), packages)


class InstallFailed(RuntimeError):
    pass


def install(commands: list[str] | None = None) -> Missing:
    """Install what is missing when root (returns what is still missing: nothing on success);
    as another user, install nothing and return what is missing."""
    gap = missing(commands)
    if not gap or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return gap
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *gap.packages]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, check=False)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        raise InstallFailed(f"apt-get install {' '.join(gap.packages)} exited {done.returncode}: {tail}")
    return missing(commands)
