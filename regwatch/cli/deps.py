"""``regwatch deps``: the real components beside regwatch (Debian packages), checked or installed."""

from __future__ import annotations

from typing import Annotated

import typer

from regwatch.cli.common import fail, warn

app = typer.Typer()


@app.command()
def deps(
    install: Annotated[bool, typer.Option("--install",
                                          help="install what is missing with apt-get (root only)")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 when something is still missing")] = False,
) -> None:
    """Prometheus, promtool, Alertmanager, the Zabbix agent, nginx, logrotate: present, or how to get them."""
    from regwatch import packages

    try:
        gap = packages.install() if install else packages.missing()
    except packages.InstallFailed as exc:
        fail(str(exc))
    if not gap:
        typer.echo("all present: " + ", ".join(f"{c}={packages.which(c)}" for c in packages.table()))
        return
    if strict:
        fail(gap.message())
    warn(gap.message())
