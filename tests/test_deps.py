"""``regwatch deps``: which real components are missing, and what a non-root user is told."""

from __future__ import annotations

import subprocess

import pytest

from regwatch import packages


def test_missing_commands_name_their_debian_packages_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages, "which", lambda command: None if command in ("prometheus", "promtool") else "/x")
    gap = packages.missing()
    assert gap.commands == ("prometheus", "promtool") and gap.packages == ("prometheus",)
    assert gap.message().startswith("missing prometheus, promtool: install the Debian packages prometheus")
    assert "\n" not in gap.message()
    with pytest.raises(KeyError, match="no Debian package known for kubectl"):
        packages.missing(["kubectl"])


def test_a_non_root_user_gets_the_line_and_nothing_is_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages, "which", lambda command: None if command == "nginx" else "/x")
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)

    def no_subprocess(*args, **kwargs):
        raise AssertionError("apt-get must not run for a non-root user")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    gap = packages.install()
    assert gap.packages == ("nginx",)


def test_a_failed_install_says_what_apt_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages, "which", lambda command: None if command == "nginx" else "/x")
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    monkeypatch.setattr(packages.shutil, "which", lambda name, path=None: "/usr/bin/apt-get")
    calls: list[list[str]] = []

    def fake_apt(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 100, "", "E: Unable to locate package nginx")

    monkeypatch.setattr(packages.subprocess, "run", fake_apt)
    with pytest.raises(packages.InstallFailed, match="exited 100: E: Unable to locate package nginx"):
        packages.install()
    assert calls[0][:2] == ["apt-get", "install"] and calls[1] == ["apt-get", "update"]  # then one retry
    assert all(isinstance(arg, str) for argv in calls for arg in argv)  # an argument list, no shell


def test_every_command_the_tests_run_is_present_here() -> None:
    """`make test` ran `regwatch deps --install` before pytest: nothing is missing (else this says
    which packages to install)."""
    gap = packages.missing()
    assert not gap, gap.message()
