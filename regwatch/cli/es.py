"""``regwatch es``: the local Elasticsearch node for tests and the demo."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from contract.secrets import redact_userinfo
from regwatch import localnode
from regwatch.cli.common import err, fail
from regwatch.cli.terminal import printable

app = typer.Typer(no_args_is_help=True,
                  help="A local Elasticsearch (one node or a small cluster) for tests and the demo.")


@app.command("up")
def es_up(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=9, help="nodes of the local cluster on 127.0.0.1 "
                                       "(HTTP on REGWATCH_ES_PORT + i, transport + 100 + i)")] = 1,
) -> None:
    """Start (or reuse) the node: ES_URL, else Docker, else the official zip from Maven Central.

    With --nodes N, a cluster of N nodes; nodes of it that are not running (one was lost) are
    started again, the others reused.
    """
    started = time.monotonic()
    try:
        if err.is_terminal:
            with err.status("Elasticsearch") as status:
                node = localnode.up(progress=lambda msg: status.update(msg), nodes=nodes)
        else:
            node = localnode.up(progress=lambda msg: err.print(msg, highlight=False), nodes=nodes)
    except localnode.NodeError as exc:
        fail(str(exc))
    verb = "started" if node.started else "reused"
    err.print(f"{verb} ({node.source}) in {time.monotonic() - started:.1f}s")
    typer.echo(redact_userinfo(node.url, keep_user=True))


@app.command("down")
def es_down() -> None:
    """Stop the nodes that `regwatch es up` started (and nothing else)."""
    try:
        stopped = localnode.down(progress=lambda msg: err.print(msg))
    except localnode.NodeError as exc:
        fail(str(exc))
    err.print("stopped" if stopped else "nothing to stop")


@app.command("status")
def es_status(
    as_json: Annotated[bool, typer.Option("--json", help="the whole status as JSON")] = False,
) -> None:
    """Each node (name, roles, elected master, process) and the cluster's health; exit 1 when
    no node answers."""
    try:
        info = localnode.status()
    except localnode.NodeError as exc:
        fail(str(exc))
    info["url"] = redact_userinfo(info["url"], keep_user=True)
    health = info.get("health") or {}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        from rich.console import Console
        from rich.table import Column, Table
        from rich.text import Text

        title = Text(printable(f"{info['url']} ({info['source']}) cluster {health.get('cluster_name', '?')}: "
                     f"{health.get('status', 'not answering')}, {health.get('number_of_nodes', 0)} node(s), "
                     f"{health.get('active_shards', 0)} active shards, "
                     f"{health.get('unassigned_shards', 0)} unassigned"))
        table = Table(Column("node", no_wrap=True), "roles", "master", Column("http", no_wrap=True), "pid", "state",
                      title=title)
        for node in info["nodes"]:
            answering = node.get("roles") is not None
            state = "up" if answering else ("running, not in the cluster" if node.get("running") else "down")
            table.add_row(Text(printable(node.get("name"))), printable(node.get("roles") or "-"),
                          "*" if node.get("master") else "",
                          Text(printable(node.get("http") or node.get("url") or "-")),
                          str(node.get("pid") or "-"), state)
        Console().print(table)
    if not health:
        raise typer.Exit(1)
