"""The official ``integ-test-zip`` distribution, fetched from Maven Central with ``mvn``."""

from __future__ import annotations

import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

from regwatch.localnode.common import ES_VERSION, NodeError, Progress, _say, base_dir
from regwatch.localnode.trust import open_path

MAVEN_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def install_distribution(progress: Progress | None) -> Path:
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
    open_path(into / f"elasticsearch-{ES_VERSION}")
