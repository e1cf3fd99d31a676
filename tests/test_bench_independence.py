"""bench/ and tests/ stand apart: a benchmark measures with its own helpers and a test asserts with
its own; neither reaches into the other's folder or bends sys.path to do so."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TESTS = ROOT / "tests"
BENCH_FILES = sorted(BENCH.glob("**/*.py"))
BENCH_MODULES = {"bench"} | {path.stem for path in BENCH_FILES}
TEST_MODULES = {"tests", "support", "conftest"} | {path.stem for path in TESTS.glob("test_*.py")}


def _imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _touches_sys_path(path: Path) -> bool:
    tree = ast.parse(path.read_text(), str(path))
    return any(isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
               and node.value.id == "sys" for node in ast.walk(tree))


def test_the_benches_are_found() -> None:
    assert {"capacity_bench", "parsers_bench", "probe_bench", "rules_bench", "shipper_bench"} <= BENCH_MODULES


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda path: path.name)
def test_no_bench_touches_sys_path_or_imports_test_code(path: Path) -> None:
    assert not _touches_sys_path(path), f"{path.name} changes sys.path"
    assert "PYTHONPATH" not in path.read_text(), f"{path.name} hands its children a path"
    reached = _imported(path) & TEST_MODULES
    assert not reached, f"{path.name} imports {sorted(reached)} from tests/"


def test_no_test_imports_a_bench() -> None:
    reached = {path.name: sorted(_imported(path) & BENCH_MODULES) for path in TESTS.glob("**/*.py")}
    assert not {name: modules for name, modules in reached.items() if modules}


@pytest.mark.parametrize("path", sorted(BENCH.glob("*_bench.py")), ids=lambda path: path.name)
def test_each_bench_starts_from_anywhere_with_only_the_installed_project(path: Path, tmp_path: Path) -> None:
    """``python bench/X.py --help`` from another folder, with no PYTHONPATH: every import resolves
    (the project as installed, the bench's own modules beside it), and nothing runs before the
    options are read."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
