"""Every command's --help labels values as a user reads them: TEXT, PATH, INTEGER, FLOAT or the
option's own name for its value (LEVEL), never Python's type names (<str>, <bool>, <path>)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog
import typer
from typer.testing import CliRunner

from regwatch.cli import app

ROOT = typer.main.get_command(app)


def _commands(command=ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """The root and every group and command below it, each with the words that reach it."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def _own_words(command) -> str:
    """What our help texts say themselves (a placeholder such as ``DIR/<service>.key`` is prose)."""
    texts = [command.help or "", command.short_help or "", command.epilog or ""]
    texts += [getattr(param, "help", None) or "" for param in command.params]
    texts += [sub.help or "" for sub in getattr(command, "commands", {}).values()]
    return "\n".join(texts)


def _help(path: tuple[str, ...]) -> str:
    """The help as printed, in this process. The root callback sets logging up on the runner's
    stderr, which is closed afterwards: the logging of the tests that follow is put back."""
    logging = structlog.get_config()
    try:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"},
                                    terminal_width=200)
    finally:
        structlog.configure(**logging)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_is_walked() -> None:
    """The walk reaches the groups' commands, not only the root (else the test below proves nothing)."""
    paths = {path for path, _ in COMMANDS}
    assert {("rules", "test"), ("es", "up"), ("check", "rule"), ("ship",), ("parse",)} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "regwatch" for p, _ in COMMANDS])
def test_no_help_shows_a_python_type_name(path: tuple[str, ...], command) -> None:
    text = _help(path)
    labels = set(re.findall(r"<[^<>\s]+>", text)) - set(re.findall(r"<[^<>\s]+>", _own_words(command)))
    assert not labels, f"regwatch {' '.join(path)} --help shows {sorted(labels)}:\n{text}"
    # typer writes a required argument as {name} in the usage line; click, and users, as NAME
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"\{\w+\}", usage), usage


def test_values_read_as_text_path_integer_and_an_explicit_metavar_wins() -> None:
    rows = {line.split()[1]: line for line in _help(("top",)).splitlines() if line.strip().startswith("│ --")}
    assert "INTEGER" in rows["--minutes"] and "FLOAT" in rows["--refresh"] and "TEXT" in rows["--namespace"]
    assert "FILENAME" in rows["--config"]
    assert not re.search(r"--once\s+[A-Z]", rows["--once"]), rows["--once"]  # a flag takes no value
    assert re.search(r"--log-level\s+LEVEL\s", _help(()))


def test_the_installed_command_shows_the_same_labels() -> None:
    """The real entry point (not only the app object the tests import) installs the labels."""
    result = subprocess.run([sys.executable, "-m", "regwatch.cli", "rules", "test", "--help"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "rules test [OPTIONS] RULE_NAME" in " ".join(result.stdout.split())
    assert re.search(r"rule_name\s+TEXT\s", result.stdout) and re.search(r"--config\s+-c\s+PATH\s", result.stdout)
    assert not re.search(r"<\w+>", result.stdout), result.stdout
