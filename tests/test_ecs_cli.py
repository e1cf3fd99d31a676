"""``regwatch parse --namespace`` checks the namespace as the shipper does (#28): a name the shipper
would refuse prints no documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LINE = b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /health HTTP/1.1" 200 2 "-" "curl"\n'


@pytest.mark.parametrize("namespace", ["Bad-NS", "x*y"])
def test_parse_refuses_a_namespace_the_shipper_refuses(tmp_path: Path, namespace: str) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(LINE)
    done = subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "nginx", "--namespace", namespace,
                           str(log)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: --namespace {namespace!r}: lowercase")


def test_parse_prints_the_documents_of_a_good_namespace(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(LINE)
    done = subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "nginx", "--namespace", "team_a",
                           str(log)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and '"namespace":"team_a"' in done.stdout


def test_parse_validate_prints_the_same_documents_each_checked(tmp_path: Path) -> None:
    """``--validate`` checks every document against the event model and prints exactly what the
    command prints without it (the usual nginx line written from fragments, the others parsed)."""
    sample = Path(__file__).parent / "samples" / "mlflow-nginx" / "nginx_access.log"
    lines = sample.read_bytes().splitlines(keepends=True)[:400]
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines) + LINE + b"not an access line\n")

    def parse(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "regwatch.cli", "parse", "-f", "nginx", *options, str(log)],
                              capture_output=True, timeout=120)

    plain, validated = parse(), parse("--validate")
    assert (plain.returncode, validated.returncode) == (0, 0), validated.stderr
    dead = b'"dataset":"modelregistry.deadletter"'
    # The dead letter's own time is when it was made: every other document byte for byte the same.
    assert ([d for d in plain.stdout.splitlines() if dead not in d]
            == [d for d in validated.stdout.splitlines() if dead not in d])
    assert len(validated.stdout.splitlines()) == len(lines) + 2
    assert sum(dead in d for d in validated.stdout.splitlines()) == 1
    assert plain.stderr == validated.stderr and plain.stderr.startswith(b"lines=")
