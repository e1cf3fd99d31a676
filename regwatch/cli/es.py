"""``regwatch es``: the local Elasticsearch node for tests and the demo."""

from __future__ import annotations

import json
import time

import typer

from regwatch import localnode
from regwatch.cli.common import err, fail
from regwatch.config import redact_url

app = typer.Typer(no_args_is_help=True, help="A local single-node Elasticsearch for tests and the demo.")

@app.command("up")
def es_up() -> None:
    """Start (or reuse) the node: ES_URL, else Docker, else the official zip from Maven Central."""
    started = time.monotonic()
    try:
        if err.is_terminal:
            with err.status("Elasticsearch") as status:
                node = localnode.up(progress=lambda msg: status.update(msg))
        else:
            node = localnode.up(progress=lambda msg: err.print(msg, highlight=False))
    except localnode.NodeError as exc:
        fail(str(exc))
    verb = "started" if node.started else "reused"
    err.print(f"{verb} ({node.source}) in {time.monotonic() - started:.1f}s")
    typer.echo(redact_url(node.url))


@app.command("down")
def es_down() -> None:
    """Stop the node that `regwatch es up` started (and nothing else)."""
    stopped = localnode.down(progress=lambda msg: err.print(msg))
    err.print("stopped" if stopped else "nothing to stop")


@app.command("status")
def es_status() -> None:
    """Where the node is and its cluster health; exit 1 when it does not answer."""
    info = localnode.status()
    info["url"] = redact_url(info["url"])
    typer.echo(json.dumps(info, indent=2))
    if not info.get("health"):
        raise typer.Exit(1)
